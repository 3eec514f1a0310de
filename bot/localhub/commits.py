"""Commits on the local Hub: the NDJSON commit endpoint, and the history listing.

A commit payload is a header line (summary, description, `parentCommit`) and one line per
operation: `file` (base64 content), `lfsFile` (an uploaded LFS object), `deletedFile`,
`deletedFolder`. Every operation is checked and its content stored before the branch
moves; the branch moves under the store's lock, so a stale `parentCommit` gets 412 and a
bad line leaves the repo as it was. Pull requests are not served.

Example:
    >>> api.create_commit("me/tiny", operations=[...], commit_message="v2")  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from html import escape
from typing import Any

from bot.localhub.access import Access
from bot.localhub.http import Reply, Request, StatusError, json_reply, paginate
from bot.localhub.lfs import OID
from bot.localhub.records import Entry, Repo
from bot.localhub.rules import check_path
from bot.localhub.store import Store

COMMITS_PAGE = 50


def commit(access: Access, req: Request) -> Reply:
    repo = access.writable(req)
    user = access.writer(req)
    if req.flag("create_pr"):
        raise StatusError(400, "Pull requests are not supported by the local Hub")
    try:
        items = [json.loads(line) for line in req.body.splitlines() if line.strip()]
    except ValueError:
        raise StatusError(400, "The commit payload is not valid NDJSON") from None
    if not items or items[0].get("key") != "header":
        raise StatusError(400, "The commit payload must start with a header line")
    header = items[0].get("value", {})
    if not header.get("summary"):
        raise StatusError(400, "A commit needs a summary (commit message)")
    ops = [_operation(access.store, repo, i.get("key"), i.get("value", {})) for i in items[1:]]

    def change(tree: dict[str, Entry]) -> dict[str, Entry]:
        for op in ops:
            op(tree)
        return tree

    made = access.store.commit(
        repo.id,
        req.params["rev"].removeprefix("refs/heads/"),
        parent=header.get("parentCommit"),
        change=change,
        title=header["summary"],
        message=header.get("description") or "",
        author=user,
    )
    return json_reply(
        {
            "success": True,
            "commitOid": made.id,
            "hookOutput": "",
            "commitUrl": f"{req.base}/{repo.id}/commit/{made.id}",
            "pullRequestUrl": None,
        }
    )


def _operation(
    store: Store, repo: Repo, key: str, value: dict[str, Any]
) -> Callable[[dict[str, Entry]], None]:
    """One commit line as a change of the tree; file contents are stored right away."""
    path = check_path(str(value.get("path", "")).rstrip("/"))
    if key == "file":
        content = str(value.get("content", ""))
        if value.get("encoding", "base64") == "base64":
            try:
                data = base64.b64decode(content, validate=True)
            except (binascii.Error, ValueError):
                raise StatusError(400, f"Invalid base64 content for {path}") from None
        else:
            data = content.encode()
        entry = Entry.regular(data, store.blobs.write(data))
        return lambda tree: tree.__setitem__(path, entry)
    if key == "lfsFile":
        oid = str(value.get("oid", ""))
        if not re.fullmatch(OID, oid) or not store.has_lfs(repo.id, oid):
            raise StatusError(400, f"LFS file {path} ({oid}) is referenced but was never uploaded")
        size = store.blobs.path(oid).stat().st_size
        if value.get("size") not in (None, size):
            raise StatusError(400, f"LFS file {path}: size {value['size']} but {size} uploaded")
        entry = Entry.large(oid, size)
        return lambda tree: tree.__setitem__(path, entry)
    if key in ("deletedFile", "deletedFolder"):

        def delete(tree: dict[str, Entry]) -> None:
            doomed = [p for p in tree if p == path or p.startswith(path + "/")]
            if key == "deletedFile":
                doomed = [path] if path in tree else []
            if not doomed:
                raise StatusError(
                    404, f"A file with this name doesn't exist: {path}", "EntryNotFound"
                )
            for p in doomed:
                del tree[p]

        return delete
    raise StatusError(400, f"Unknown commit operation {key!r}")


def commits(access: Access, req: Request) -> Reply:
    """`list_repo_commits`: the first-parent history, newest first, paginated."""
    repo = access.readable(req)
    head = access.store.resolve(repo.id, req.params["rev"])
    formatted = "formatted" in req.query.get("expand[]", [])
    rows = []
    for c in access.store.history(repo.id, head):
        row: dict[str, Any] = {
            "id": c.id,
            "title": c.title,
            "message": c.message,
            "authors": [{"user": c.author}],
            "date": c.date,
        }
        if formatted:
            row["formatted"] = {"title": escape(c.title), "message": escape(c.message)}
        rows.append(row)
    return paginate(req, rows, COMMITS_PAGE)
