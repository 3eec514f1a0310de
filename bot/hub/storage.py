"""On-disk store of the local Hub: content-addressed blobs, repos, commits, refs, collections.

Layout under the root folder (a restart reads it back; nothing is kept only in memory):

    blobs/ab/cdef...                    file contents, named by their sha256
    tmp/                                partial writes, renamed into place when complete
    repos/NS/NAME/repo.json             {"id", "private", "createdAt"}
    repos/NS/NAME/refs.json             {"branches": {name: commit}, "tags": {name: commit}}
    repos/NS/NAME/commits/ID.json       {"parents", "tree", "title", "message", "author", "date"}
    repos/NS/NAME/lfs/SHA256            empty marker: this LFS object was uploaded to this repo
    collections/ID.json                 one collection

Ids follow git where the Hub's clients compare them: a regular file's id is the git blob
sha1 of its content, an LFS file's id is the git blob sha1 of its pointer (its content
sha256 is in `Entry.sha256`), a commit id is 40 hex digits (sha1 of the commit record).
Every change of refs, repos and collections happens under one lock.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shutil
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

LFS_SIZE_THRESHOLD = 10 * 1000 * 1000  # the Hub stores any file above 10 MB with LFS
DEFAULT_BRANCH = "main"
_NAME = re.compile(r"^(?!.*(--|\.\.))[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")
_LFS_EXTENSIONS = [
    "7z", "arrow", "bin", "bz2", "ckpt", "ftz", "gz", "h5", "joblib", "lfs.*", "mlmodel", "model",
    "msgpack", "npy", "npz", "onnx", "ot", "parquet", "pb", "pickle", "pkl", "pt", "pth", "rar",
    "safetensors", "tar.*", "tar", "tflite", "tgz", "wasm", "xz", "zip", "zst",
]  # fmt: skip
DEFAULT_GITATTRIBUTES = (
    "".join(f"*.{ext} filter=lfs diff=lfs merge=lfs -text\n" for ext in _LFS_EXTENSIONS)
    + "saved_model/**/* filter=lfs diff=lfs merge=lfs -text\n"
    + "*tfevents* filter=lfs diff=lfs merge=lfs -text\n"
)


class HubError(Exception):
    """An answer the server gives instead of a result: HTTP status, Hub error code, message."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}


def repo_not_found(repo_id: str, *, anonymous: bool = False) -> HubError:
    """The Hub's answer for a missing repo, or a private one asked for without a token."""
    return HubError(401 if anonymous else 404, f"Repository not found: {repo_id}", "RepoNotFound")


def now_iso() -> str:
    """The current time in the Hub's format, e.g. `2024-05-01T12:00:00.000Z`."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob with this content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer file that git stores in place of an LFS file."""
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
    )


def check_repo_id(repo_id: str) -> str:
    """`repo_id` if it is `namespace/name` with Hub-valid parts, else a 400 `HubError`."""
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(_NAME.match(p) for p in parts) or parts[1].endswith(".git"):
        raise HubError(400, f"Invalid repo id {repo_id!r}: expected 'namespace/name'")
    return repo_id


def check_path(path: str) -> str:
    """A file path inside a repo, or a 400 `HubError` (absolute, `..`, empty parts, `.git`)."""
    parts = path.split("/")
    if not path or any(p in ("", ".", "..") for p in parts) or parts[0] == ".git":
        raise HubError(400, f"Invalid path in repo: {path!r}")
    return path


def lfs_patterns(gitattributes: str) -> list[str]:
    """The path patterns that a `.gitattributes` text stores with LFS (`filter=lfs`)."""
    patterns = []
    for line in gitattributes.splitlines():
        fields = line.split()
        if len(fields) >= 2 and not fields[0].startswith("#") and "filter=lfs" in fields[1:]:
            patterns.append(fields[0])
    return patterns


def wants_lfs(path: str, size: int, sample: bytes, patterns: list[str]) -> bool:
    """Whether the Hub would store this file with LFS: matched by `.gitattributes`,
    larger than 10 MB, or binary (a NUL byte or invalid UTF-8 in its first 512 bytes)."""
    if size > LFS_SIZE_THRESHOLD or b"\0" in sample:
        return True
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(sample) - 3:  # not just a character cut at the sample's end
            return True
    name = path.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(path if "/" in p else name, p) for p in patterns)


@dataclass(frozen=True)
class Entry:
    """One file of a commit's tree."""

    sha256: str
    size: int
    lfs: bool
    oid: str

    @classmethod
    def regular(cls, data: bytes, sha256: str) -> Entry:
        return cls(sha256, len(data), False, git_blob_sha1(data))

    @classmethod
    def large(cls, sha256: str, size: int) -> Entry:
        return cls(sha256, size, True, git_blob_sha1(lfs_pointer(sha256, size)))

    @property
    def pointer_size(self) -> int:
        return len(lfs_pointer(self.sha256, self.size))


@dataclass(frozen=True)
class Commit:
    """A snapshot of a repo: the whole tree (path -> entry), its parents and message."""

    id: str
    parents: tuple[str, ...]
    tree: dict[str, Entry]
    title: str
    message: str
    author: str
    date: str

    def directories(self) -> set[str]:
        """Every folder that holds a file of the tree."""
        out: set[str] = set()
        for path in self.tree:
            parts = path.split("/")[:-1]
            out.update("/".join(parts[: i + 1]) for i in range(len(parts)))
        return out


@dataclass(frozen=True)
class Repo:
    """A model repo's settings (its content is in its commits and refs)."""

    id: str
    private: bool
    created_at: str


@dataclass
class Refs:
    """Branch and tag names of a repo, each naming a commit id."""

    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class CollectionItem:
    """One entry of a collection: a repo id (or paper id, ...) and its type."""

    object_id: str
    item_id: str
    item_type: str
    note: str | None = None


@dataclass
class Collection:
    """A titled list of Hub items owned by a namespace; `slug` is how clients name it."""

    id: str
    namespace: str
    title: str
    description: str | None
    private: bool
    theme: str
    created_at: str
    updated_at: str
    items: list[CollectionItem] = field(default_factory=list)

    @property
    def slug(self) -> str:
        words = re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-") or "collection"
        return f"{self.namespace}/{words}-{self.id}"


def _write_json(path: Path, data: Any, tmp_dir: Path) -> None:
    tmp = tmp_dir / f"{uuid.uuid4().hex}.json"
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


class Storage:
    """The local Hub's data under `root`. Thread-safe; one process per root."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        for sub in ("blobs", "tmp", "repos", "collections"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
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

    # -- blobs -------------------------------------------------------------------------

    def blob_path(self, sha256: str) -> Path:
        return self.root / "blobs" / sha256[:2] / sha256[2:]

    def has_blob(self, sha256: str) -> bool:
        return self.blob_path(sha256).is_file()

    def write_blob(self, data: bytes) -> str:
        """Store `data`; return its sha256."""
        return self.write_chunks([data])

    def write_chunks(self, chunks: Iterable[bytes], expect: tuple[str, int] | None = None) -> str:
        """Store a stream of bytes; return its sha256. With `expect` (sha256, size), a
        stream that does not match is refused (400) and nothing is stored."""
        digest, size = hashlib.sha256(), 0
        tmp = self.tmp / uuid.uuid4().hex
        try:
            with tmp.open("wb") as out:
                for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            sha256 = digest.hexdigest()
            if expect is not None and expect != (sha256, size):
                raise HubError(
                    400, f"Uploaded content does not match oid {expect[0]} / size {expect[1]}"
                )
            final = self.blob_path(sha256)
            if final.is_file():
                tmp.unlink()
            else:
                final.parent.mkdir(exist_ok=True)
                os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        return sha256

    def read_blob(self, sha256: str) -> bytes:
        return self.blob_path(sha256).read_bytes()

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
            tree = {".gitattributes": Entry.regular(data, self.write_blob(data))}
            commit = self._new_commit(repo_id, (), tree, "initial commit", "", "system")
            self._save_refs(repo_id, Refs(branches={DEFAULT_BRANCH: commit.id}))
            meta = {"id": repo.id, "private": private, "createdAt": repo.created_at}
            _write_json(folder / "repo.json", meta, self.tmp)
            self._repos[repo_id] = repo
            return repo, True

    def delete_repo(self, repo_id: str) -> None:
        with self._lock:
            if self._repos.pop(repo_id, None) is None:
                raise repo_not_found(repo_id)
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
        return (self._dir(repo_id) / "lfs" / sha256).is_file() and self.has_blob(sha256)

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
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
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

        `parent`, when given, must be the branch's head (else 412, as the Hub answers)."""
        with self._lock:
            refs = self.refs(repo_id)
            head_id = refs.branches.get(branch)
            if head_id is None:
                raise HubError(404, f"Invalid rev id: {branch} is not a branch", "RevisionNotFound")
            if parent is not None and parent != head_id:
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            head = self.commit_by_id(repo_id, head_id)
            assert head is not None
            tree = change(dict(head.tree))
            _check_tree(tree)
            commit = self._new_commit(repo_id, (head_id,), tree, title, message, author)
            refs.branches[branch] = commit.id
            self._save_refs(repo_id, refs)
            return commit

    def create_ref(self, repo_id: str, kind: str, name: str, revision: str) -> None:
        """Create branch or tag (`kind`) `name` at `revision`; 409 if it exists."""
        check_path(name)
        with self._lock:
            refs = self.refs(repo_id)
            target = self.resolve(repo_id, revision)
            names = refs.branches if kind == "branch" else refs.tags
            if name in names:
                raise HubError(409, f"Reference already exists: {name}")
            names[name] = target.id
            self._save_refs(repo_id, refs)

    def delete_ref(self, repo_id: str, kind: str, name: str) -> None:
        with self._lock:
            refs = self.refs(repo_id)
            names = refs.branches if kind == "branch" else refs.tags
            if name not in names:
                raise HubError(404, f"Invalid rev id: {name}", "RevisionNotFound")
            if kind == "branch" and name == DEFAULT_BRANCH:
                raise HubError(403, f"Cannot delete the default branch {DEFAULT_BRANCH!r}")
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


def _check_tree(tree: dict[str, Entry]) -> None:
    """No path may be both a file and a folder."""
    files = set(tree)
    for path in tree:
        parts = path.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in files:
                raise HubError(400, f"{'/'.join(parts[:i])!r} is a file, cannot hold {path!r}")
