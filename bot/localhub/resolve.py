"""Downloading a file from the local Hub: `GET|HEAD /{repo}/resolve/{rev}/{path}`.

Answers what `hf_hub_download` and transformers' `from_pretrained` expect: the commit in
`X-Repo-Commit`, the ETag (an LFS file's sha256, else its git blob id, as the Hub sends
them), `X-Linked-Etag`/`X-Linked-Size` for LFS files, and single byte ranges (206, or 416
for a range past the end). The body is streamed from the blob file by the server.

Example:
    >>> hf_hub_download("me/tiny", "config.json")                     # doctest: +SKIP
    '.../snapshots/3f0c.../config.json'
"""

from __future__ import annotations

import mimetypes
import re

from bot.localhub.access import Access
from bot.localhub.http import Reply, Request, StatusError


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(offset, length) asked by a single-range `Range` header; None: the whole file."""
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", (header or "").strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.groups()
    if first == "":
        start = max(size - int(last), 0)
        end = size - 1
    else:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        raise StatusError(
            416, "Requested range not satisfiable", headers={"Content-Range": f"bytes */{size}"}
        )
    return start, end - start + 1


def resolve(access: Access, req: Request) -> Reply:
    repo = access.readable(req)
    commit = access.store.resolve(repo.id, req.params["rev"])
    path = req.params["path"]
    entry = commit.tree.get(path)
    if entry is None:
        headers = {"X-Repo-Commit": commit.id}
        raise StatusError(404, f"Entry not found: {path}", "EntryNotFound", headers)
    etag = entry.sha256 if entry.lfs else entry.oid
    headers = {
        "X-Repo-Commit": commit.id,
        "ETag": f'"{etag}"',
        "Accept-Ranges": "bytes",
        "Content-Type": mimetypes.guess_type(path)[0] or "application/octet-stream",
    }
    if entry.lfs:
        headers.update({"X-Linked-Etag": f'"{entry.sha256}"', "X-Linked-Size": str(entry.size)})
    blob = access.store.blobs.path(entry.sha256)
    span = byte_range(req.headers.get("Range"), entry.size)
    if span is None:
        return Reply(200, headers=headers, file=(blob, 0, entry.size))
    start, length = span
    headers["Content-Range"] = f"bytes {start}-{start + length - 1}/{entry.size}"
    return Reply(206, headers=headers, file=(blob, start, length))
