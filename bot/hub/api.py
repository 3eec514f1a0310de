"""What the local Hub answers: the part of the Hub's HTTP API that `HfApi` uses for model repos.

`HubApi` has one method per endpoint, taking a parsed `Request` and returning a `Reply`;
`match_route` maps a method and path to the endpoint. The HTTP side (connections, bodies,
faults, admin endpoints) is `bot.hub.server`; the repos on disk are `bot.hub.storage`.

Endpoints: create_repo, delete_repo, update_repo_settings, repo_info/model_info (with
`files_metadata`), list_models, list_repo_files/list_repo_tree, get_paths_info,
preupload, LFS batch + upload + verify (basic transfer), the NDJSON commit (files, LFS
files, deletions; a stale `parentCommit` gets 412), resolve (GET/HEAD, Range),
validate-yaml, branches, tags, refs, commits, whoami, collections, and two HTML pages.

Auth: with tokens configured, a request carrying any other token gets 401 (`Invalid
credentials in Authorization header`); without tokens, any token is accepted. Anonymous
requests may read public repos; writes and private repos need a token. Every valid token
acts as the one user (`user`, default "hubbot") and may write to any namespace.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import mimetypes
import re
import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode

from bot.errors import InputError
from bot.hub.faults import ROUTES
from bot.hub.pages import (
    CollectionLink,
    FileRow,
    RepoLink,
    index_page,
    repo_page,
    split_front_matter,
)
from bot.hub.storage import (
    DEFAULT_BRANCH,
    Collection,
    CollectionItem,
    Commit,
    Entry,
    HubError,
    Repo,
    Storage,
    check_path,
    check_repo_id,
    lfs_patterns,
    now_iso,
    repo_not_found,
    wants_lfs,
)
from bot.yamlsrc import load_yaml_text

MAX_BODY = 1 << 30  # bodies read into memory (commits carry regular files, base64)
CHUNK = 1 << 20
TREE_PAGE = 1000
COMMITS_PAGE = 50
EMPTY_CARD_WARNING = (
    "empty or missing yaml metadata in repo card "
    "(https://huggingface.co/docs/hub/model-cards#model-card-metadata)"
)
_OID = r"[0-9a-f]{64}"
_SEG = r"[^/]+"
_REPO = rf"(?P<ns>{_SEG})/(?P<name>{_SEG})"
_API = rf"/api/models/{_REPO}"
_SLUG = rf"/api/collections/(?P<ns>{_SEG})/(?P<slug>{_SEG})"


@dataclass
class Reply:
    """An answer: status, headers, and a body in memory or a byte range of a file."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    file: tuple[Path, int, int] | None = None  # path, offset, length


@dataclass
class Request:
    """One parsed request, as the route handlers see it."""

    method: str
    params: dict[str, str]
    query: dict[str, list[str]]
    headers: Message
    user: str | None
    base: str
    url: str
    chunks: Iterator[bytes]
    _body: bytes | None = None

    @property
    def body(self) -> bytes:
        if self._body is None:
            data = bytearray()
            for chunk in self.chunks:
                data += chunk
                if len(data) > MAX_BODY:
                    raise HubError(413, "Request body too large")
            self._body = bytes(data)
        return self._body

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"{}")
        except ValueError:
            raise HubError(400, "The request body is not valid JSON") from None

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None

    def flag(self, name: str) -> bool:
        return (self.arg(name) or "").lower() in ("1", "true")

    def number(self, name: str, default: int) -> int:
        value = self.arg(name)
        if value is None:
            return default
        if not value.isdigit():
            raise HubError(400, f"Query parameter {name} must be a number, not {value!r}")
        return int(value)

    @property
    def repo_id(self) -> str:
        return f"{self.params['ns']}/{self.params['name']}"


def json_reply(data: Any, status: int = 200, content_type: str = "application/json") -> Reply:
    return Reply(status, json.dumps(data).encode(), {"Content-Type": content_type})


def error_reply(status: int, message: str, code: str | None = None, **headers: str) -> Reply:
    safe = message.encode("ascii", "replace").decode().replace("\n", " ")
    out = {"Content-Type": "application/json", "X-Error-Message": safe, **headers}
    if code:
        out["X-Error-Code"] = code
    return Reply(status, json.dumps({"error": message}).encode(), out)


def _sha256(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def _paginate(req: Request, items: list[Any], size: int) -> Reply:
    """A page of `items` with a GitHub-style `Link: <...>; rel="next"` to the next one."""
    start = req.number("cursor", 0)
    reply = json_reply(items[start : start + size])
    if start + size < len(items):
        query = {k: v for k, v in req.query.items() if k != "cursor"}
        query["cursor"] = [str(start + size)]
        reply.headers["Link"] = f'<{req.url}?{urlencode(query, doseq=True)}>; rel="next"'
    return reply


def _entry_json(path: str, entry: Entry) -> dict[str, Any]:
    data: dict[str, Any] = {"type": "file", "oid": entry.oid, "size": entry.size, "path": path}
    if entry.lfs:
        data["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": entry.pointer_size}
    return data


def _subtree(commit: Commit, folder: str) -> dict[str, Entry]:
    return {p: e for p, e in commit.tree.items() if p.startswith(folder + "/")}


def _folder_json(path: str, commit: Commit) -> dict[str, Any]:
    listing = "\n".join(f"{p} {e.oid}" for p, e in sorted(_subtree(commit, path).items()))
    oid = hashlib.sha1(listing.encode()).hexdigest()
    return {"type": "directory", "oid": oid, "size": 0, "path": path}


def _card_metadata(text: str) -> tuple[dict[str, Any] | None, list[str]]:
    """A card's YAML metadata as JSON data, or None and what the Hub would refuse in it."""
    try:
        data = load_yaml_text(text, "README.md").data
    except InputError as exc:  # lines are counted in the README, after its first `---`
        where = [f"line {p.line + 1}, column {p.column}: {p.message}" for p in exc.problems]
        return None, where or [str(exc)]
    problems = []
    for key in ("license", "license_name", "license_link", "library_name", "pipeline_tag"):
        if key in data and not isinstance(data[key], str):
            problems.append(f'"{key}" must be a string')
    for key in ("language", "tags", "datasets", "metrics", "base_model"):
        value = data.get(key)
        strings = isinstance(value, list) and all(isinstance(v, str) for v in value)
        if key in data and not (isinstance(value, str) or strings):
            problems.append(f'"{key}" must be a string or a list of strings')
    if "model-index" in data and not isinstance(data["model-index"], list):
        problems.append('"model-index" must be an array')
    if problems:
        return None, problems
    return json.loads(json.dumps(data, default=str)), []


def _card_data(storage: Storage, commit: Commit) -> dict[str, Any] | None:
    """The `cardData` of a commit's README.md (None: no README or no valid metadata)."""
    entry = commit.tree.get("README.md")
    if entry is None:
        return None
    metadata, _ = split_front_matter(storage.read_blob(entry.sha256).decode("utf-8", "replace"))
    return _card_metadata(metadata)[0] if metadata else None


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
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
        raise HubError(
            416, "Requested range not satisfiable", headers={"Content-Range": f"bytes */{size}"}
        )
    return start, end - start + 1


class HubApi:
    """The route handlers, over one `Storage`. Each takes a `Request` and returns a `Reply`."""

    def __init__(self, storage: Storage, tokens: list[str], user: str) -> None:
        self.storage = storage
        self.user = user
        self._token_digests = {_sha256(t) for t in tokens}
        self._secret = secrets.token_bytes(32)

    # -- auth ----------------------------------------------------------------------------

    def authenticate(self, header: str | None) -> str | None:
        """The user a request acts as (None: anonymous); 401 for a bad token."""
        if header is None:
            return None
        scheme, _, token = header.partition(" ")
        token = token.strip()
        valid = scheme.lower() == "bearer" and token
        if not valid or (self._token_digests and _sha256(token) not in self._token_digests):
            raise HubError(401, "Invalid credentials in Authorization header")
        return self.user

    def _can_read(self, repo: Repo, user: str | None) -> bool:
        return not repo.private or user is not None

    def _readable(self, req: Request) -> Repo:
        repo = self.storage.repo(req.repo_id)
        if repo is None or not self._can_read(repo, req.user):
            raise repo_not_found(req.repo_id, anonymous=req.user is None)
        return repo

    def _writer(self, req: Request) -> str:
        if req.user is None:
            raise HubError(401, "You must be authenticated (send a token) to do this")
        return req.user

    def _writable(self, req: Request) -> Repo:
        self._writer(req)
        repo = self.storage.repo(req.repo_id)
        if repo is None:
            raise repo_not_found(req.repo_id)
        return repo

    # -- account and repos ---------------------------------------------------------------

    def whoami(self, req: Request) -> Reply:
        name = self._writer(req)
        auth = {"type": "access_token", "accessToken": {"displayName": "local", "role": "write"}}
        return json_reply(
            {
                "type": "user",
                "id": name,
                "name": name,
                "fullname": name,
                "orgs": [],
                "isPro": False,
                "canPay": False,
                "auth": auth,
            }
        )

    def create_repo(self, req: Request) -> Reply:
        user = self._writer(req)
        body = req.json()
        if body.get("type", "model") not in (None, "model"):
            raise HubError(400, "The local Hub serves model repos only")
        repo_id = check_repo_id(f"{body.get('organization') or user}/{body.get('name', '')}")
        private = body.get("visibility", "public") == "private" or bool(body.get("private"))
        _, created = self.storage.create_repo(repo_id, private=private, author=user)
        url = f"{req.base}/{repo_id}"
        if not created:
            return json_reply({"error": "You already created this model repo", "url": url}, 409)
        return json_reply({"url": url, "name": repo_id, "id": repo_id})

    def delete_repo(self, req: Request) -> Reply:
        user = self._writer(req)
        body = req.json()
        self.storage.delete_repo(f"{body.get('organization') or user}/{body.get('name', '')}")
        return json_reply({})

    def repo_settings(self, req: Request) -> Reply:
        repo = self._writable(req)
        visibility = req.json().get("visibility")
        if visibility in ("private", "public"):
            self.storage.set_private(repo.id, visibility == "private")
        return json_reply({})

    def _model_json(self, repo: Repo, commit: Commit) -> dict[str, Any]:
        ns = repo.id.split("/")[0]
        return {
            "_id": hashlib.sha1(repo.id.encode()).hexdigest()[:24],
            "id": repo.id,
            "modelId": repo.id,
            "author": ns,
            "sha": commit.id,
            "lastModified": commit.date,
            "createdAt": repo.created_at,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
        }

    def repo_info(self, req: Request) -> Reply:
        repo = self._readable(req)
        commit = self.storage.resolve(repo.id, req.params.get("rev") or DEFAULT_BRANCH)
        data = self._model_json(repo, commit)
        card = _card_data(self.storage, commit)
        tags = card.get("tags") if card else None
        data["tags"] = [tags] if isinstance(tags, str) else list(tags or [])
        if card is not None:
            data["cardData"] = card
            data.update({k: card[k] for k in ("library_name", "pipeline_tag") if k in card})
        siblings = []
        for path, entry in sorted(commit.tree.items()):
            sibling: dict[str, Any] = {"rfilename": path}
            if req.flag("blobs"):
                sibling.update(size=entry.size, blobId=entry.oid)
                if entry.lfs:
                    sibling["lfs"] = {
                        "size": entry.size,
                        "sha256": entry.sha256,
                        "pointerSize": entry.pointer_size,
                    }
            siblings.append(sibling)
        data["siblings"] = siblings
        data["usedStorage"] = sum(e.size for e in commit.tree.values())
        return json_reply(data)

    def list_models(self, req: Request) -> Reply:
        author, search = req.arg("author"), (req.arg("search") or "").lower()
        rows = []
        for repo in self.storage.repos():
            if not self._can_read(repo, req.user) or search not in repo.id.lower():
                continue
            if author is None or repo.id.split("/")[0] == author:
                rows.append(self._model_json(repo, self.storage.resolve(repo.id, DEFAULT_BRANCH)))
        limit = req.number("limit", 0)
        return _paginate(req, rows[:limit] if limit else rows, TREE_PAGE)

    # -- reading files -------------------------------------------------------------------

    def _last_commits(self, repo: Repo, commit: Commit, paths: list[str]) -> dict[str, Commit]:
        """For each path (file or folder), the newest commit that changed it."""
        history = list(self.storage.history(repo.id, commit))
        found: dict[str, Commit] = {}
        for newer, older in zip(history, [*history[1:], None], strict=True):
            for path in paths:
                if path in found:
                    continue
                if path in newer.tree or (older is not None and path in older.tree):
                    changed = older is None or newer.tree.get(path) != older.tree.get(path)
                else:
                    changed = older is None or _subtree(newer, path) != _subtree(older, path)
                if changed:
                    found[path] = newer
            if len(found) == len(paths):
                break
        return found

    def _describe(self, repo: Repo, commit: Commit, paths: list[str], expand: bool) -> list[Any]:
        out = [
            _entry_json(p, commit.tree[p]) if p in commit.tree else _folder_json(p, commit)
            for p in paths
        ]
        if expand:
            last = self._last_commits(repo, commit, paths)
            for item in out:
                c = last[item["path"]]
                item["lastCommit"] = {"id": c.id, "title": c.title, "date": c.date}
        return out

    def tree(self, req: Request) -> Reply:
        repo = self._readable(req)
        commit = self.storage.resolve(repo.id, req.params["rev"])
        folder = (req.params.get("path") or "").strip("/")
        folders = commit.directories()
        if folder and folder not in folders:
            raise HubError(404, f"Folder not found: {folder}", "EntryNotFound")
        prefix = f"{folder}/" if folder else ""
        recursive = req.flag("recursive")
        paths = sorted(
            p
            for p in [*commit.tree, *folders]
            if p.startswith(prefix) and (recursive or "/" not in p[len(prefix) :])
        )
        return _paginate(req, self._describe(repo, commit, paths, req.flag("expand")), TREE_PAGE)

    def paths_info(self, req: Request) -> Reply:
        repo = self._readable(req)
        commit = self.storage.resolve(repo.id, req.params["rev"])
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
        return json_reply(self._describe(repo, commit, found, expand))

    def resolve(self, req: Request) -> Reply:
        repo = self._readable(req)
        commit = self.storage.resolve(repo.id, req.params["rev"])
        path = req.params["path"]
        entry = commit.tree.get(path)
        if entry is None:
            headers = {"X-Repo-Commit": commit.id}
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", headers)
        etag = entry.sha256 if entry.lfs else entry.oid
        headers = {
            "X-Repo-Commit": commit.id,
            "ETag": f'"{etag}"',
            "Accept-Ranges": "bytes",
            "Content-Type": mimetypes.guess_type(path)[0] or "application/octet-stream",
        }
        if entry.lfs:
            headers.update({"X-Linked-Etag": f'"{entry.sha256}"', "X-Linked-Size": str(entry.size)})
        span = _byte_range(req.headers.get("Range"), entry.size)
        if span is None:
            return Reply(
                200, headers=headers, file=(self.storage.blob_path(entry.sha256), 0, entry.size)
            )
        start, length = span
        headers["Content-Range"] = f"bytes {start}-{start + length - 1}/{entry.size}"
        return Reply(
            206, headers=headers, file=(self.storage.blob_path(entry.sha256), start, length)
        )

    # -- refs and history ----------------------------------------------------------------

    def refs(self, req: Request) -> Reply:
        repo = self._readable(req)
        refs = self.storage.refs(repo.id)

        def rows(names: dict[str, str], kind: str) -> list[dict[str, str]]:
            return [
                {"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": c}
                for n, c in sorted(names.items())
            ]

        return json_reply(
            {
                "branches": rows(refs.branches, "heads"),
                "converts": [],
                "tags": rows(refs.tags, "tags"),
                "pullRequests": [],
            }
        )

    def commits(self, req: Request) -> Reply:
        repo = self._readable(req)
        commit = self.storage.resolve(repo.id, req.params["rev"])
        formatted = "formatted" in req.query.get("expand[]", [])
        rows = []
        for c in self.storage.history(repo.id, commit):
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
        return _paginate(req, rows, COMMITS_PAGE)

    def create_branch(self, req: Request) -> Reply:
        repo = self._writable(req)
        start = req.json().get("startingPoint") or DEFAULT_BRANCH
        self.storage.create_ref(repo.id, "branch", req.params["rev"], start)
        return json_reply({})

    def delete_branch(self, req: Request) -> Reply:
        repo = self._writable(req)
        self.storage.delete_ref(repo.id, "branch", req.params["rev"])
        return json_reply({})

    def create_tag(self, req: Request) -> Reply:
        repo = self._writable(req)
        tag = req.json().get("tag")
        if not isinstance(tag, str) or not tag:
            raise HubError(400, "A tag name is required")
        self.storage.create_ref(repo.id, "tag", tag, req.params["rev"])
        return json_reply({})

    def delete_tag(self, req: Request) -> Reply:
        repo = self._writable(req)
        self.storage.delete_ref(repo.id, "tag", req.params["rev"])
        return json_reply({})

    # -- writing -------------------------------------------------------------------------

    def preupload(self, req: Request) -> Reply:
        repo = self._writable(req)
        commit = self.storage.resolve(repo.id, req.params["rev"])
        attributes = commit.tree.get(".gitattributes")
        text = (
            self.storage.read_blob(attributes.sha256).decode("utf-8", "replace")
            if attributes
            else ""
        )
        patterns = lfs_patterns(text)
        files = []
        for item in req.json().get("files", []):
            path, size = check_path(str(item.get("path", ""))), int(item.get("size", 0))
            try:
                sample = base64.b64decode(item.get("sample", ""), validate=True)
            except (binascii.Error, ValueError):
                raise HubError(400, f"Invalid base64 sample for {path}") from None
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

    def _sign(self, repo_id: str, oid: str, size: int) -> str:
        return hmac.new(self._secret, f"{repo_id}\n{oid}\n{size}".encode(), "sha256").hexdigest()

    def lfs_batch(self, req: Request) -> Reply:
        repo = self._writable(req)
        body = req.json()
        if body.get("operation") != "upload":
            raise HubError(400, "Only LFS uploads go through batch here; download with resolve")
        objects = []
        for obj in body.get("objects", []):
            oid, size = obj.get("oid"), obj.get("size")
            if not isinstance(oid, str) or not re.fullmatch(_OID, oid) or not isinstance(size, int):
                raise HubError(400, "Each object needs a sha256 `oid` and an integer `size`")
            if self.storage.has_lfs(repo.id, oid):
                objects.append({"oid": oid, "size": size})
                continue
            query = urlencode({"size": size, "sig": self._sign(repo.id, oid, size)})
            lfs_url = f"{req.base}/{repo.id}.git/info/lfs/objects"
            actions = {
                "upload": {"href": f"{lfs_url}/{oid}?{query}"},
                "verify": {"href": f"{lfs_url}/verify"},
            }
            objects.append({"oid": oid, "size": size, "authenticated": True, "actions": actions})
        reply = {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}
        return json_reply(reply, content_type="application/vnd.git-lfs+json")

    def lfs_upload(self, req: Request) -> Reply:
        oid, size = req.params["oid"], req.number("size", -1)
        expected = self._sign(req.repo_id, oid, size)
        if not hmac.compare_digest(req.arg("sig") or "", expected):
            raise HubError(403, "Invalid or expired upload URL")
        if self.storage.repo(req.repo_id) is None:
            raise repo_not_found(req.repo_id)
        self.storage.write_chunks(req.chunks, expect=(oid, size))
        self.storage.add_lfs(req.repo_id, oid)
        return Reply(200)

    def lfs_verify(self, req: Request) -> Reply:
        repo = self._writable(req)
        body = req.json()
        oid, size = str(body.get("oid", "")), body.get("size")
        if not re.fullmatch(_OID, oid) or not self.storage.has_lfs(repo.id, oid):
            raise HubError(404, f"LFS object {oid} was not uploaded")
        if self.storage.blob_path(oid).stat().st_size != size:
            raise HubError(422, f"LFS object {oid} does not have size {size}")
        return json_reply({"success": True})

    def commit(self, req: Request) -> Reply:
        repo = self._writable(req)
        user = self._writer(req)
        if req.flag("create_pr"):
            raise HubError(400, "Pull requests are not supported by the local Hub")
        try:
            items = [json.loads(line) for line in req.body.splitlines() if line.strip()]
        except ValueError:
            raise HubError(400, "The commit payload is not valid NDJSON") from None
        if not items or items[0].get("key") != "header":
            raise HubError(400, "The commit payload must start with a header line")
        header = items[0].get("value", {})
        if not header.get("summary"):
            raise HubError(400, "A commit needs a summary (commit message)")
        ops = [self._operation(repo, item.get("key"), item.get("value", {})) for item in items[1:]]

        def change(tree: dict[str, Entry]) -> dict[str, Entry]:
            for op in ops:
                op(tree)
            return tree

        commit = self.storage.commit(
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
                "commitOid": commit.id,
                "hookOutput": "",
                "commitUrl": f"{req.base}/{repo.id}/commit/{commit.id}",
                "pullRequestUrl": None,
            }
        )

    def _operation(self, repo: Repo, key: str, value: dict[str, Any]) -> Callable[[dict], None]:
        """One commit line as a change of the tree; file contents are stored right away."""
        path = check_path(str(value.get("path", "")).rstrip("/"))
        if key == "file":
            content = str(value.get("content", ""))
            if value.get("encoding", "base64") == "base64":
                try:
                    data = base64.b64decode(content, validate=True)
                except (binascii.Error, ValueError):
                    raise HubError(400, f"Invalid base64 content for {path}") from None
            else:
                data = content.encode()
            entry = Entry.regular(data, self.storage.write_blob(data))
            return lambda tree: tree.__setitem__(path, entry)
        if key == "lfsFile":
            oid = str(value.get("oid", ""))
            if not re.fullmatch(_OID, oid) or not self.storage.has_lfs(repo.id, oid):
                raise HubError(400, f"LFS file {path} ({oid}) is referenced but was never uploaded")
            size = self.storage.blob_path(oid).stat().st_size
            if value.get("size") not in (None, size):
                raise HubError(400, f"LFS file {path}: size {value['size']} but {size} uploaded")
            entry = Entry.large(oid, size)
            return lambda tree: tree.__setitem__(path, entry)
        if key in ("deletedFile", "deletedFolder"):

            def delete(tree: dict[str, Entry]) -> None:
                doomed = [p for p in tree if p == path or p.startswith(path + "/")]
                if key == "deletedFile":
                    doomed = [path] if path in tree else []
                if not doomed:
                    raise HubError(
                        404, f"A file with this name doesn't exist: {path}", "EntryNotFound"
                    )
                for p in doomed:
                    del tree[p]

            return delete
        raise HubError(400, f"Unknown commit operation {key!r}")

    # -- cards ---------------------------------------------------------------------------

    def validate_yaml(self, req: Request) -> Reply:
        metadata, _ = split_front_matter(str(req.json().get("content", "")))
        if metadata is None or not metadata.strip():
            return json_reply({"errors": [], "warnings": [{"message": EMPTY_CARD_WARNING}]})
        _, problems = _card_metadata(metadata)
        if not problems:
            return json_reply({"errors": [], "warnings": []})
        if "text/plain" in req.headers.get("Accept", ""):
            text = "Invalid metadata in README.md.\n" + "\n".join(f"- {p}" for p in problems)
            return Reply(400, text.encode(), {"Content-Type": "text/plain; charset=utf-8"})
        errors = [{"message": p} for p in problems]
        return json_reply({"error": "Invalid metadata in README.md.", "errors": errors}, 400)

    # -- collections ---------------------------------------------------------------------

    def _collection_json(self, c: Collection, *, listing: bool = False) -> dict[str, Any]:
        items = []
        for position, item in enumerate(c.items[:4] if listing else c.items):
            row: dict[str, Any] = {
                "_id": item.object_id,
                "id": item.item_id,
                "type": item.item_type,
                "position": position,
            }
            if item.note:
                row["note"] = {"text": item.note, "html": escape(item.note)}
            items.append(row)
        kind = "user" if c.namespace == self.user else "org"
        data = {
            "id": c.id,
            "slug": c.slug,
            "title": c.title,
            "description": c.description,
            "owner": {"name": c.namespace, "fullname": c.namespace, "type": kind},
            "items": items,
            "lastUpdated": c.updated_at,
            "private": c.private,
            "theme": c.theme,
            "upvotes": 0,
            "isUpvotedByUser": False,
        }
        if not listing:
            same = [x.id for x in self.storage.collections() if x.namespace == c.namespace]
            data["position"] = same.index(c.id)
        return data

    def _collection(self, req: Request) -> Collection:
        collection_id = req.params["slug"].rsplit("-", 1)[-1]
        c = self.storage.collection(collection_id)
        if c is None or c.namespace != req.params["ns"] or (c.private and req.user is None):
            raise HubError(404, f"Collection not found: {req.params['ns']}/{req.params['slug']}")
        return c

    def list_collections(self, req: Request) -> Reply:
        owners = req.query.get("owner")
        items = [i for i in req.query.get("item", [])]
        rows = []
        for c in self.storage.collections():
            if (owners and c.namespace not in owners) or (c.private and req.user is None):
                continue
            if items and not any(f"{i.item_type}s/{i.item_id}" in items for i in c.items):
                continue
            rows.append(self._collection_json(c, listing=True))
        limit = req.number("limit", 0)
        return _paginate(req, rows[:limit] if limit else rows, 100)

    def create_collection(self, req: Request) -> Reply:
        user = self._writer(req)
        body = req.json()
        title, namespace = str(body.get("title") or "").strip(), body.get("namespace") or user
        if not title:
            raise HubError(400, "A collection needs a title")
        for c in self.storage.collections():
            if c.namespace == namespace and c.title == title:
                return json_reply({"error": "Collection already exists", "slug": c.slug}, 409)
        now = now_iso()
        c = Collection(
            secrets.token_hex(12),
            namespace,
            title,
            body.get("description"),
            bool(body.get("private")),
            "indigo",
            now,
            now,
        )
        self.storage.save_collection(c)
        return json_reply(self._collection_json(c))

    def get_collection(self, req: Request) -> Reply:
        return json_reply(self._collection_json(self._collection(req)))

    def update_collection(self, req: Request) -> Reply:
        self._writer(req)
        body = req.json()

        def change(c: Collection) -> None:
            for key in ("title", "description", "private", "theme"):
                if key in body:
                    setattr(c, key, body[key])

        c = self.storage.update_collection(self._collection(req).id, change)
        return json_reply({"data": self._collection_json(c)})

    def delete_collection(self, req: Request) -> Reply:
        self._writer(req)
        self.storage.delete_collection(self._collection(req).id)
        return json_reply({})

    def add_collection_item(self, req: Request) -> Reply:
        self._writer(req)
        collection = self._collection(req)
        body = req.json()
        item = body.get("item") or {}
        item_id, item_type = str(item.get("id", "")), str(item.get("type", ""))
        if item_type not in ("model", "dataset", "space", "paper", "collection"):
            raise HubError(400, f"Unknown item type {item_type!r}")
        if item_type == "model":
            repo = self.storage.repo(item_id)
            if repo is None or not self._can_read(repo, req.user):
                raise repo_not_found(item_id)
        if any((i.item_id, i.item_type) == (item_id, item_type) for i in collection.items):
            return json_reply({"error": "Item already exists in this collection"}, 409)
        new = CollectionItem(uuid.uuid4().hex[:24], item_id, item_type, body.get("note"))
        c = self.storage.update_collection(collection.id, lambda c: c.items.append(new))
        return json_reply(self._collection_json(c))

    def _item_index(self, collection: Collection, object_id: str) -> int:
        for index, item in enumerate(collection.items):
            if item.object_id == object_id:
                return index
        raise HubError(404, f"Item not found in collection: {object_id}")

    def update_collection_item(self, req: Request) -> Reply:
        self._writer(req)
        collection = self._collection(req)
        index = self._item_index(collection, req.params["item"])
        body = req.json()

        def change(c: Collection) -> None:
            item = c.items.pop(index)
            if "note" in body:
                item.note = body["note"]
            c.items.insert(int(body.get("position", index)), item)

        self.storage.update_collection(collection.id, change)
        return json_reply({})

    def delete_collection_item(self, req: Request) -> Reply:
        self._writer(req)
        collection = self._collection(req)
        index = self._item_index(collection, req.params["item"])
        self.storage.update_collection(collection.id, lambda c: c.items.pop(index) and None)
        return json_reply({})

    # -- HTML ----------------------------------------------------------------------------

    def html_index(self, req: Request) -> Reply:
        links = [
            RepoLink(r.id, r.private, self.storage.resolve(r.id, DEFAULT_BRANCH).date)
            for r in self.storage.repos()
            if self._can_read(r, req.user)
        ]
        readable = {link.repo_id for link in links}
        collections = [
            CollectionLink(
                title=c.title,
                slug=c.slug,
                private=c.private,
                description=c.description,
                items=tuple(
                    i.item_id for i in c.items if i.item_type == "model" and i.item_id in readable
                ),
            )
            for c in self.storage.collections()
            if not c.private or req.user is not None
        ]
        page = index_page(links, collections)
        return Reply(200, page.encode(), {"Content-Type": "text/html; charset=utf-8"})

    def html_repo(self, req: Request) -> Reply:
        try:
            repo = self._readable(req)
        except HubError:
            page = f"<!DOCTYPE html><p>No repo {escape(req.repo_id)} here.</p>"
            return Reply(404, page.encode(), {"Content-Type": "text/html; charset=utf-8"})
        commit = self.storage.resolve(repo.id, DEFAULT_BRANCH)
        entry = commit.tree.get("README.md")
        readme = None
        if entry is not None:
            readme = self.storage.read_blob(entry.sha256).decode("utf-8", "replace")
        files = [FileRow(p, e.size, e.lfs) for p, e in sorted(commit.tree.items())]
        page = repo_page(repo.id, commit.id, readme, files)
        return Reply(200, page.encode(), {"Content-Type": "text/html; charset=utf-8"})


# Route key, path pattern (on the raw, still quoted path), handler per method.
_ROUTE_TABLE: list[tuple[str, str, dict[str, str]]] = [
    ("whoami", r"/api/whoami-v2", {"GET": "whoami"}),
    ("create_repo", r"/api/repos/create", {"POST": "create_repo"}),
    ("delete_repo", r"/api/repos/delete", {"DELETE": "delete_repo"}),
    ("list_models", r"/api/models", {"GET": "list_models"}),
    ("repo_settings", rf"{_API}/settings", {"PUT": "repo_settings"}),
    ("repo_info", rf"{_API}(?:/revision/(?P<rev>{_SEG}))?", {"GET": "repo_info"}),
    ("tree", rf"{_API}/tree/(?P<rev>{_SEG})(?:/(?P<path>.*))?", {"GET": "tree"}),
    ("paths_info", rf"{_API}/paths-info/(?P<rev>{_SEG})", {"POST": "paths_info"}),
    ("refs", rf"{_API}/refs", {"GET": "refs"}),
    ("commits", rf"{_API}/commits/(?P<rev>{_SEG})", {"GET": "commits"}),
    (
        "branch",
        rf"{_API}/branch/(?P<rev>{_SEG})",
        {"POST": "create_branch", "DELETE": "delete_branch"},
    ),
    ("tag", rf"{_API}/tag/(?P<rev>{_SEG})", {"POST": "create_tag", "DELETE": "delete_tag"}),
    ("preupload", rf"{_API}/preupload/(?P<rev>{_SEG})", {"POST": "preupload"}),
    ("commit", rf"{_API}/commit/(?P<rev>{_SEG})", {"POST": "commit"}),
    ("lfs_batch", rf"/{_REPO}\.git/info/lfs/objects/batch", {"POST": "lfs_batch"}),
    ("lfs_verify", rf"/{_REPO}\.git/info/lfs/objects/verify", {"POST": "lfs_verify"}),
    ("lfs_upload", rf"/{_REPO}\.git/info/lfs/objects/(?P<oid>{_OID})", {"PUT": "lfs_upload"}),
    (
        "resolve",
        rf"/{_REPO}/resolve/(?P<rev>{_SEG})/(?P<path>.+)",
        {"GET": "resolve", "HEAD": "resolve"},
    ),
    ("validate_yaml", r"/api/validate-yaml", {"POST": "validate_yaml"}),
    ("collections", r"/api/collections", {"GET": "list_collections", "POST": "create_collection"}),
    (
        "collections",
        _SLUG,
        {"GET": "get_collection", "PATCH": "update_collection", "DELETE": "delete_collection"},
    ),
    ("collections", rf"{_SLUG}/items", {"POST": "add_collection_item"}),
    (
        "collections",
        rf"{_SLUG}/items/(?P<item>{_SEG})",
        {"PATCH": "update_collection_item", "DELETE": "delete_collection_item"},
    ),
    ("html", r"/", {"GET": "html_index"}),
    ("html", rf"/{_REPO}", {"GET": "html_repo"}),
]
_ROUTES = [(key, re.compile(pattern), methods) for key, pattern, methods in _ROUTE_TABLE]
assert {key for key, _, _ in _ROUTE_TABLE} | {"unknown"} == set(ROUTES)


def match_route(method: str, path: str) -> tuple[str, str | None, dict[str, str]]:
    """(route key, handler name or None if the method is not allowed, unquoted parameters)."""
    for key, pattern, methods in _ROUTES:
        match = pattern.fullmatch(path)
        if match:
            params = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
            return key, methods.get(method), params
    return "unknown", None, {}
