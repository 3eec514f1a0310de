"""On-disk store of the local Hub: repos, commits, refs and collections, over the blobs.

Layout under the root folder (a restart reads it back; nothing is kept only in memory):

    blobs/ab/cdef...                    file contents, named by their sha256 (`Blobs`)
    tmp/                                partial writes, renamed into place when complete
    repos/NS/NAME/repo.json             {"id", "private", "createdAt"}
    repos/NS/NAME/refs.json             {"branches": {name: commit}, "tags": {name: commit}}
    repos/NS/NAME/commits/ID.json       {"parents", "tree", "title", "message", "author", "date"}
    repos/NS/NAME/lfs/SHA256            empty marker: this LFS object was uploaded to this repo
    collections/ID.json                 one collection

The store knows nothing of HTTP: what it refuses raises a `StoreError`
(`bot.localhub.errors`). Every change of refs, repos and collections happens under one lock.

Example:
    >>> store = Store(tmp_path / "hub")                               # doctest: +SKIP
    >>> repo, created = store.create_repo("me/tiny", private=False, author="me")  # doctest: +SKIP
    >>> store.resolve("me/tiny", "main").title                        # doctest: +SKIP
    'initial commit'
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bot.localhub.blobs import Blobs
from bot.localhub.errors import (
    ProtectedRef,
    RefExists,
    RepoNotFound,
    RevisionNotFound,
    StaleParent,
)
from bot.localhub.records import (
    Collection,
    CollectionItem,
    Commit,
    Entry,
    Refs,
    Repo,
    now_iso,
)
from bot.localhub.rules import (
    DEFAULT_BRANCH,
    DEFAULT_GITATTRIBUTES,
    check_path,
    check_repo_id,
    check_tree,
)


def _write_json(path: Path, data: Any, tmp_dir: Path) -> None:
    tmp = tmp_dir / f"{uuid.uuid4().hex}.json"
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


class Store:
    """The local Hub's data under `root`. Thread-safe; one process per root."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        for sub in ("tmp", "repos", "collections"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.blobs = Blobs(self.root, self.tmp)
        for leftover in self.tmp.iterdir():  # partial writes of a server that was killed
            if leftover.is_dir():
                shutil.rmtree(leftover)
            else:
                leftover.unlink()
        self._lock = threading.RLock()
        self._commits: dict[tuple[str, str], Commit] = {}
        self._refs: dict[str, Refs] = {}
        self._repos: dict[str, Repo] = {}
        for meta in sorted(self.root.glob("repos/*/*/repo.json")):
            data = json.loads(meta.read_text(encoding="utf-8"))
            self._repos[data["id"]] = Repo(data["id"], data["private"], data["createdAt"])
        self._collections: dict[str, Collection] = {}
        for path in sorted(self.root.glob("collections/*.json")):
            data = json.loads(path.read_text(encoding="utf-8"))
            items = [CollectionItem(**item) for item in data.pop("items")]
            self._collections[data["id"]] = Collection(**data, items=items)

    # -- repos -------------------------------------------------------------------------

    def _dir(self, repo_id: str) -> Path:
        return self.root / "repos" / repo_id

    def repo(self, repo_id: str) -> Repo | None:
        return self._repos.get(repo_id)

    def repos(self) -> list[Repo]:
        return sorted(self._repos.values(), key=lambda r: r.id)

    def create_repo(self, repo_id: str, *, private: bool, author: str) -> tuple[Repo, bool]:
        """Create a repo with the Hub's initial commit (a `.gitattributes`).
        Returns the repo and whether it was created (False: it existed already)."""
        check_repo_id(repo_id)
        with self._lock:
            if repo_id in self._repos:
                return self._repos[repo_id], False
            folder = self._dir(repo_id)
            (folder / "commits").mkdir(parents=True, exist_ok=True)
            (folder / "lfs").mkdir(exist_ok=True)
            repo = Repo(repo_id, private, now_iso())
            self._refs[repo_id] = Refs()
            data = DEFAULT_GITATTRIBUTES.encode()
            tree = {".gitattributes": Entry.regular(data, self.blobs.write(data))}
            commit = self._new_commit(repo_id, (), tree, "initial commit", "", "system")
            self._save_refs(repo_id, Refs(branches={DEFAULT_BRANCH: commit.id}))
            meta = {"id": repo.id, "private": private, "createdAt": repo.created_at}
            _write_json(folder / "repo.json", meta, self.tmp)
            self._repos[repo_id] = repo
            return repo, True

    def delete_repo(self, repo_id: str) -> None:
        with self._lock:
            if self._repos.pop(repo_id, None) is None:
                raise RepoNotFound(f"Repository not found: {repo_id}")
            self._refs.pop(repo_id, None)
            for key in [k for k in self._commits if k[0] == repo_id]:
                del self._commits[key]
            trash = self.tmp / uuid.uuid4().hex
            os.replace(self._dir(repo_id), trash)
        shutil.rmtree(trash, ignore_errors=True)

    def set_private(self, repo_id: str, private: bool) -> Repo:
        with self._lock:
            repo = self._repos[repo_id]
            repo = Repo(repo.id, private, repo.created_at)
            meta = {"id": repo.id, "private": private, "createdAt": repo.created_at}
            _write_json(self._dir(repo_id) / "repo.json", meta, self.tmp)
            self._repos[repo_id] = repo
            return repo

    def has_lfs(self, repo_id: str, sha256: str) -> bool:
        return (self._dir(repo_id) / "lfs" / sha256).is_file() and self.blobs.has(sha256)

    def add_lfs(self, repo_id: str, sha256: str) -> None:
        (self._dir(repo_id) / "lfs" / sha256).touch()

    # -- refs and commits --------------------------------------------------------------

    def refs(self, repo_id: str) -> Refs:
        with self._lock:
            if repo_id not in self._refs:
                data = json.loads((self._dir(repo_id) / "refs.json").read_text(encoding="utf-8"))
                self._refs[repo_id] = Refs(data["branches"], data["tags"])
            refs = self._refs[repo_id]
            return Refs(dict(refs.branches), dict(refs.tags))

    def _save_refs(self, repo_id: str, refs: Refs) -> None:
        _write_json(self._dir(repo_id) / "refs.json", asdict(refs), self.tmp)
        self._refs[repo_id] = refs

    def commit_by_id(self, repo_id: str, commit_id: str) -> Commit | None:
        key = (repo_id, commit_id)
        if key not in self._commits:
            path = self._dir(repo_id) / "commits" / f"{commit_id}.json"
            if not re.fullmatch(r"[0-9a-f]{40}", commit_id) or not path.is_file():
                return None
            data = json.loads(path.read_text(encoding="utf-8"))
            tree = {p: Entry(**e) for p, e in data["tree"].items()}
            self._commits[key] = Commit(
                commit_id,
                tuple(data["parents"]),
                tree,
                data["title"],
                data["message"],
                data["author"],
                data["date"],
            )
        return self._commits[key]

    def resolve(self, repo_id: str, revision: str) -> Commit:
        """The commit a branch, tag, `refs/heads/..`, `refs/tags/..` or commit id names."""
        refs = self.refs(repo_id)
        name = revision.removeprefix("refs/heads/").removeprefix("refs/tags/")
        commit_id = refs.branches.get(name) or refs.tags.get(name) or revision
        commit = self.commit_by_id(repo_id, commit_id)
        if commit is None:
            raise RevisionNotFound(f"Invalid rev id: {revision}")
        return commit

    def history(self, repo_id: str, commit: Commit) -> Iterator[Commit]:
        """`commit` and its first-parent ancestors, newest first."""
        current: Commit | None = commit
        while current is not None:
            yield current
            current = self.commit_by_id(repo_id, current.parents[0]) if current.parents else None

    def _new_commit(
        self,
        repo_id: str,
        parents: tuple[str, ...],
        tree: dict[str, Entry],
        title: str,
        message: str,
        author: str,
    ) -> Commit:
        record = {
            "parents": list(parents),
            "tree": {path: asdict(entry) for path, entry in sorted(tree.items())},
            "title": title,
            "message": message,
            "author": author,
            "date": now_iso(),
        }
        text = json.dumps(record, sort_keys=True)
        commit_id = hashlib.sha1(f"{repo_id}\n{text}".encode()).hexdigest()
        _write_json(self._dir(repo_id) / "commits" / f"{commit_id}.json", record, self.tmp)
        commit = Commit(commit_id, parents, dict(tree), title, message, author, str(record["date"]))
        self._commits[(repo_id, commit_id)] = commit
        return commit

    def commit(
        self,
        repo_id: str,
        branch: str,
        *,
        parent: str | None,
        change: Callable[[dict[str, Entry]], dict[str, Entry]],
        title: str,
        message: str,
        author: str,
    ) -> Commit:
        """Commit `change(head tree)` on top of `branch`, atomically.

        `parent`, when given, must be the branch's head (else `StaleParent`)."""
        with self._lock:
            refs = self.refs(repo_id)
            head_id = refs.branches.get(branch)
            if head_id is None:
                raise RevisionNotFound(f"Invalid rev id: {branch} is not a branch")
            if parent is not None and parent != head_id:
                raise StaleParent("A commit has happened since. Please refresh and try again.")
            head = self.commit_by_id(repo_id, head_id)
            assert head is not None
            tree = change(dict(head.tree))
            check_tree(tree)
            commit = self._new_commit(repo_id, (head_id,), tree, title, message, author)
            refs.branches[branch] = commit.id
            self._save_refs(repo_id, refs)
            return commit

    def create_ref(self, repo_id: str, kind: str, name: str, revision: str) -> None:
        """Create branch or tag (`kind`) `name` at `revision`; `RefExists` if it exists."""
        check_path(name)
        with self._lock:
            refs = self.refs(repo_id)
            target = self.resolve(repo_id, revision)
            names = refs.branches if kind == "branch" else refs.tags
            if name in names:
                raise RefExists(f"Reference already exists: {name}")
            names[name] = target.id
            self._save_refs(repo_id, refs)

    def delete_ref(self, repo_id: str, kind: str, name: str) -> None:
        with self._lock:
            refs = self.refs(repo_id)
            names = refs.branches if kind == "branch" else refs.tags
            if name not in names:
                raise RevisionNotFound(f"Invalid rev id: {name}")
            if kind == "branch" and name == DEFAULT_BRANCH:
                raise ProtectedRef(f"Cannot delete the default branch {DEFAULT_BRANCH!r}")
            del names[name]
            self._save_refs(repo_id, refs)

    # -- collections -------------------------------------------------------------------

    def collections(self) -> list[Collection]:
        return sorted(self._collections.values(), key=lambda c: (c.namespace, c.created_at, c.id))

    def collection(self, collection_id: str) -> Collection | None:
        return self._collections.get(collection_id)

    def update_collection(
        self, collection_id: str, change: Callable[[Collection], None]
    ) -> Collection:
        """Apply `change` to a copy of the collection and save it (under the lock)."""
        with self._lock:
            current = self._collections[collection_id]
            updated = Collection(
                **{**asdict(current), "items": [CollectionItem(**asdict(i)) for i in current.items]}
            )
            change(updated)
            updated.updated_at = now_iso()
            self.save_collection(updated)
            return updated

    def save_collection(self, collection: Collection) -> None:
        with self._lock:
            path = self.root / "collections" / f"{collection.id}.json"
            _write_json(path, asdict(collection), self.tmp)
            self._collections[collection.id] = collection

    def delete_collection(self, collection_id: str) -> None:
        with self._lock:
            self._collections.pop(collection_id)
            (self.root / "collections" / f"{collection_id}.json").unlink()
