"""Account and repo endpoints of the local Hub: whoami, create/delete, settings, info, list.

`repo_info` answers `model_info` and `repo_info` (with `files_metadata`: `?blobs=1`),
including `cardData` and `tags` from the card's metadata, like the Hub.

Example:
    >>> HfApi(endpoint=hub.endpoint, token=hub.token).model_info("me/tiny").sha  # doctest: +SKIP
    '3f0c...'
"""

from __future__ import annotations

import hashlib
from typing import Any

from bot.localhub.access import Access
from bot.localhub.cards import card_data
from bot.localhub.http import Reply, Request, StatusError, json_reply, paginate
from bot.localhub.records import Commit, Repo
from bot.localhub.rules import DEFAULT_BRANCH, check_repo_id

MODELS_PAGE = 1000


def whoami(access: Access, req: Request) -> Reply:
    name = access.writer(req)
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


def create_repo(access: Access, req: Request) -> Reply:
    user = access.writer(req)
    body = req.json()
    if body.get("type", "model") not in (None, "model"):
        raise StatusError(400, "The local Hub serves model repos only")
    repo_id = check_repo_id(f"{body.get('organization') or user}/{body.get('name', '')}")
    private = body.get("visibility", "public") == "private" or bool(body.get("private"))
    _, created = access.store.create_repo(repo_id, private=private, author=user)
    url = f"{req.base}/{repo_id}"
    if not created:
        return json_reply({"error": "You already created this model repo", "url": url}, 409)
    return json_reply({"url": url, "name": repo_id, "id": repo_id})


def delete_repo(access: Access, req: Request) -> Reply:
    user = access.writer(req)
    body = req.json()
    access.store.delete_repo(f"{body.get('organization') or user}/{body.get('name', '')}")
    return json_reply({})


def repo_settings(access: Access, req: Request) -> Reply:
    repo = access.writable(req)
    visibility = req.json().get("visibility")
    if visibility in ("private", "public"):
        access.store.set_private(repo.id, visibility == "private")
    return json_reply({})


def model_json(repo: Repo, commit: Commit) -> dict[str, Any]:
    """What the Hub says of a model in listings and at the top of `model_info`."""
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


def repo_info(access: Access, req: Request) -> Reply:
    repo = access.readable(req)
    commit = access.store.resolve(repo.id, req.params.get("rev") or DEFAULT_BRANCH)
    data = model_json(repo, commit)
    card = card_data(access.store, commit)
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


def list_models(access: Access, req: Request) -> Reply:
    author, search = req.arg("author"), (req.arg("search") or "").lower()
    rows = []
    for repo in access.store.repos():
        if not access.can_read(repo, req.user) or search not in repo.id.lower():
            continue
        if author is None or repo.id.split("/")[0] == author:
            rows.append(model_json(repo, access.store.resolve(repo.id, DEFAULT_BRANCH)))
    limit = req.number("limit", 0)
    return paginate(req, rows[:limit] if limit else rows, MODELS_PAGE)
