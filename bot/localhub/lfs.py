"""How files reach the local Hub before a commit: preupload, and LFS batch/upload/verify.

`preupload` tells the client which files go to LFS (by `.gitattributes`, size or binary
content, as the Hub decides: `bot.localhub.rules.wants_lfs`). LFS uses the basic
transfer: `lfs_batch` hands out upload URLs signed by this server (`Access.sign`), so the
PUT needs no token; an object the repo holds already gets no upload action.

Example:
    >>> api.upload_file(path_or_fileobj=b"\\0" * 10, path_in_repo="w.bin", repo_id="me/tiny")
    ...                                                               # doctest: +SKIP
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from urllib.parse import urlencode

from bot.localhub.access import Access, repo_not_found
from bot.localhub.http import Reply, Request, StatusError, json_reply
from bot.localhub.rules import check_path, lfs_patterns, wants_lfs

OID = r"[0-9a-f]{64}"


def preupload(access: Access, req: Request) -> Reply:
    repo = access.writable(req)
    store = access.store
    commit = store.resolve(repo.id, req.params["rev"])
    attributes = commit.tree.get(".gitattributes")
    text = store.blobs.read(attributes.sha256).decode("utf-8", "replace") if attributes else ""
    patterns = lfs_patterns(text)
    files = []
    for item in req.json().get("files", []):
        path, size = check_path(str(item.get("path", ""))), int(item.get("size", 0))
        try:
            sample = base64.b64decode(item.get("sample", ""), validate=True)
        except (binascii.Error, ValueError):
            raise StatusError(400, f"Invalid base64 sample for {path}") from None
        lfs = wants_lfs(path, size, sample, patterns)
        current = commit.tree.get(path)
        oid = None if current is None else current.sha256 if current.lfs else current.oid
        files.append(
            {
                "path": path,
                "uploadMode": "lfs" if lfs else "regular",
                "shouldIgnore": False,
                "oid": oid,
            }
        )
    return json_reply({"files": files, "commitOid": commit.id})


def lfs_batch(access: Access, req: Request) -> Reply:
    repo = access.writable(req)
    body = req.json()
    if body.get("operation") != "upload":
        raise StatusError(400, "Only LFS uploads go through batch here; download with resolve")
    objects = []
    for obj in body.get("objects", []):
        oid, size = obj.get("oid"), obj.get("size")
        if not isinstance(oid, str) or not re.fullmatch(OID, oid) or not isinstance(size, int):
            raise StatusError(400, "Each object needs a sha256 `oid` and an integer `size`")
        if access.store.has_lfs(repo.id, oid):
            objects.append({"oid": oid, "size": size})
            continue
        query = urlencode({"size": size, "sig": access.sign(repo.id, oid, size)})
        lfs_url = f"{req.base}/{repo.id}.git/info/lfs/objects"
        actions = {
            "upload": {"href": f"{lfs_url}/{oid}?{query}"},
            "verify": {"href": f"{lfs_url}/verify"},
        }
        objects.append({"oid": oid, "size": size, "authenticated": True, "actions": actions})
    reply = {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}
    return json_reply(reply, content_type="application/vnd.git-lfs+json")


def lfs_upload(access: Access, req: Request) -> Reply:
    oid, size = req.params["oid"], req.number("size", -1)
    expected = access.sign(req.repo_id, oid, size)
    if not hmac.compare_digest(req.arg("sig") or "", expected):
        raise StatusError(403, "Invalid or expired upload URL")
    if access.store.repo(req.repo_id) is None:
        raise repo_not_found(req.repo_id)
    access.store.blobs.write_chunks(req.chunks, expect=(oid, size))
    access.store.add_lfs(req.repo_id, oid)
    return Reply(200)


def lfs_verify(access: Access, req: Request) -> Reply:
    repo = access.writable(req)
    body = req.json()
    oid, size = str(body.get("oid", "")), body.get("size")
    if not re.fullmatch(OID, oid) or not access.store.has_lfs(repo.id, oid):
        raise StatusError(404, f"LFS object {oid} was not uploaded")
    if access.store.blobs.path(oid).stat().st_size != size:
        raise StatusError(422, f"LFS object {oid} does not have size {size}")
    return json_reply({"success": True})
