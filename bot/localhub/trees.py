"""Listing a repo's files on the local Hub: the tree endpoint and paths-info.

`tree` answers `list_repo_tree` and `list_repo_files` (one folder, or `recursive`),
paginated by `TREE_PAGE` entries with a `Link: rel="next"` header; `paths_info` answers
`get_paths_info`. With `expand`, each entry carries its last commit, found by walking the
first-parent history.

Example:
    >>> [f.path for f in api.list_repo_tree("me/tiny")]             # doctest: +SKIP
    ['.gitattributes', 'README.md', 'model.safetensors']
"""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import parse_qs

from bot.localhub.access import Access
from bot.localhub.http import Reply, Request, StatusError, json_reply, paginate
from bot.localhub.records import Commit, Entry, Repo
from bot.localhub.store import Store

TREE_PAGE = 1000


def _entry_json(path: str, entry: Entry) -> dict[str, Any]:
    data: dict[str, Any] = {"type": "file", "oid": entry.oid, "size": entry.size, "path": path}
    if entry.lfs:
        data["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": entry.pointer_size}
    return data


def _folder_json(path: str, commit: Commit) -> dict[str, Any]:
    listing = "\n".join(f"{p} {e.oid}" for p, e in sorted(commit.subtree(path).items()))
    oid = hashlib.sha1(listing.encode()).hexdigest()
    return {"type": "directory", "oid": oid, "size": 0, "path": path}


def _last_commits(store: Store, repo: Repo, commit: Commit, paths: list[str]) -> dict[str, Commit]:
    """For each path (file or folder), the newest commit that changed it."""
    history = list(store.history(repo.id, commit))
    found: dict[str, Commit] = {}
    for newer, older in zip(history, [*history[1:], None], strict=True):
        for path in paths:
            if path in found:
                continue
            if path in newer.tree or (older is not None and path in older.tree):
                changed = older is None or newer.tree.get(path) != older.tree.get(path)
            else:
                changed = older is None or newer.subtree(path) != older.subtree(path)
            if changed:
                found[path] = newer
        if len(found) == len(paths):
            break
    return found


def _describe(
    store: Store, repo: Repo, commit: Commit, paths: list[str], expand: bool
) -> list[Any]:
    out = [
        _entry_json(p, commit.tree[p]) if p in commit.tree else _folder_json(p, commit)
        for p in paths
    ]
    if expand:
        last = _last_commits(store, repo, commit, paths)
        for item in out:
            c = last[item["path"]]
            item["lastCommit"] = {"id": c.id, "title": c.title, "date": c.date}
    return out


def tree(access: Access, req: Request) -> Reply:
    repo = access.readable(req)
    commit = access.store.resolve(repo.id, req.params["rev"])
    folder = (req.params.get("path") or "").strip("/")
    folders = commit.directories()
    if folder and folder not in folders:
        raise StatusError(404, f"Folder not found: {folder}", "EntryNotFound")
    prefix = f"{folder}/" if folder else ""
    recursive = req.flag("recursive")
    paths = sorted(
        p
        for p in [*commit.tree, *folders]
        if p.startswith(prefix) and (recursive or "/" not in p[len(prefix) :])
    )
    listing = _describe(access.store, repo, commit, paths, req.flag("expand"))
    return paginate(req, listing, TREE_PAGE)


def paths_info(access: Access, req: Request) -> Reply:
    repo = access.readable(req)
    commit = access.store.resolve(repo.id, req.params["rev"])
    if "json" in req.headers.get("Content-Type", ""):
        body = req.json()
        asked, expand = list(body.get("paths", [])), bool(body.get("expand"))
    else:
        form = parse_qs(req.body.decode(), keep_blank_values=True)
        asked = form.get("paths", [])
        expand = form.get("expand", ["false"])[-1].lower() in ("1", "true")
    folders = commit.directories()
    paths = [p.strip("/") for p in dict.fromkeys(asked)]
    found = [p for p in paths if p in commit.tree or p in folders]
    return json_reply(_describe(access.store, repo, commit, found, expand))
