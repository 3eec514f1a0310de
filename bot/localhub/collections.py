"""Collections on the local Hub: list, create, get, update, delete, and their items.

A collection is named by its slug, `namespace/words-of-the-title-ID`; only the id at its
end matters, as on the Hub. Private collections are hidden from anonymous requests.

Example:
    >>> c = api.create_collection("Tiny MoE release", namespace="me")  # doctest: +SKIP
    >>> api.add_collection_item(c.slug, "me/tiny", "model")           # doctest: +SKIP
"""

from __future__ import annotations

import secrets
import uuid
from html import escape
from typing import Any

from bot.localhub.access import Access, repo_not_found
from bot.localhub.http import Reply, Request, StatusError, json_reply, paginate
from bot.localhub.records import Collection, CollectionItem, now_iso

ITEM_TYPES = ("model", "dataset", "space", "paper", "collection")


def _collection_json(access: Access, c: Collection, *, listing: bool = False) -> dict[str, Any]:
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
    kind = "user" if c.namespace == access.user else "org"
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
        same = [x.id for x in access.store.collections() if x.namespace == c.namespace]
        data["position"] = same.index(c.id)
    return data


def _collection(access: Access, req: Request) -> Collection:
    collection_id = req.params["slug"].rsplit("-", 1)[-1]
    c = access.store.collection(collection_id)
    if c is None or c.namespace != req.params["ns"] or (c.private and req.user is None):
        raise StatusError(404, f"Collection not found: {req.params['ns']}/{req.params['slug']}")
    return c


def list_collections(access: Access, req: Request) -> Reply:
    owners = req.query.get("owner")
    items = list(req.query.get("item", []))
    rows = []
    for c in access.store.collections():
        if (owners and c.namespace not in owners) or (c.private and req.user is None):
            continue
        if items and not any(f"{i.item_type}s/{i.item_id}" in items for i in c.items):
            continue
        rows.append(_collection_json(access, c, listing=True))
    limit = req.number("limit", 0)
    return paginate(req, rows[:limit] if limit else rows, 100)


def create_collection(access: Access, req: Request) -> Reply:
    user = access.writer(req)
    body = req.json()
    title, namespace = str(body.get("title") or "").strip(), body.get("namespace") or user
    if not title:
        raise StatusError(400, "A collection needs a title")
    for c in access.store.collections():
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
    access.store.save_collection(c)
    return json_reply(_collection_json(access, c))


def get_collection(access: Access, req: Request) -> Reply:
    return json_reply(_collection_json(access, _collection(access, req)))


def update_collection(access: Access, req: Request) -> Reply:
    access.writer(req)
    body = req.json()

    def change(c: Collection) -> None:
        for key in ("title", "description", "private", "theme"):
            if key in body:
                setattr(c, key, body[key])

    c = access.store.update_collection(_collection(access, req).id, change)
    return json_reply({"data": _collection_json(access, c)})


def delete_collection(access: Access, req: Request) -> Reply:
    access.writer(req)
    access.store.delete_collection(_collection(access, req).id)
    return json_reply({})


def add_collection_item(access: Access, req: Request) -> Reply:
    access.writer(req)
    collection = _collection(access, req)
    body = req.json()
    item = body.get("item") or {}
    item_id, item_type = str(item.get("id", "")), str(item.get("type", ""))
    if item_type not in ITEM_TYPES:
        raise StatusError(400, f"Unknown item type {item_type!r}")
    if item_type == "model":
        repo = access.store.repo(item_id)
        if repo is None or not access.can_read(repo, req.user):
            raise repo_not_found(item_id)
    if any((i.item_id, i.item_type) == (item_id, item_type) for i in collection.items):
        return json_reply({"error": "Item already exists in this collection"}, 409)
    new = CollectionItem(uuid.uuid4().hex[:24], item_id, item_type, body.get("note"))
    c = access.store.update_collection(collection.id, lambda c: c.items.append(new))
    return json_reply(_collection_json(access, c))


def _item_index(collection: Collection, object_id: str) -> int:
    for index, item in enumerate(collection.items):
        if item.object_id == object_id:
            return index
    raise StatusError(404, f"Item not found in collection: {object_id}")


def update_collection_item(access: Access, req: Request) -> Reply:
    access.writer(req)
    collection = _collection(access, req)
    index = _item_index(collection, req.params["item"])
    body = req.json()

    def change(c: Collection) -> None:
        item = c.items.pop(index)
        if "note" in body:
            item.note = body["note"]
        c.items.insert(int(body.get("position", index)), item)

    access.store.update_collection(collection.id, change)
    return json_reply({})


def delete_collection_item(access: Access, req: Request) -> Reply:
    access.writer(req)
    collection = _collection(access, req)
    index = _item_index(collection, req.params["item"])
    access.store.update_collection(collection.id, lambda c: c.items.pop(index) and None)
    return json_reply({})
