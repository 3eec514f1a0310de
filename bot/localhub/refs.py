"""Branches and tags on the local Hub: `list_repo_refs`, create/delete branch and tag.

Example:
    >>> api.create_tag("me/tiny", tag="v1")                           # doctest: +SKIP
    >>> [t.name for t in api.list_repo_refs("me/tiny").tags]          # doctest: +SKIP
    ['v1']
"""

from __future__ import annotations

from bot.localhub.access import Access
from bot.localhub.http import Reply, Request, StatusError, json_reply
from bot.localhub.rules import DEFAULT_BRANCH


def refs(access: Access, req: Request) -> Reply:
    repo = access.readable(req)
    names = access.store.refs(repo.id)

    def rows(named: dict[str, str], kind: str) -> list[dict[str, str]]:
        return [
            {"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": c}
            for n, c in sorted(named.items())
        ]

    return json_reply(
        {
            "branches": rows(names.branches, "heads"),
            "converts": [],
            "tags": rows(names.tags, "tags"),
            "pullRequests": [],
        }
    )


def create_branch(access: Access, req: Request) -> Reply:
    repo = access.writable(req)
    start = req.json().get("startingPoint") or DEFAULT_BRANCH
    access.store.create_ref(repo.id, "branch", req.params["rev"], start)
    return json_reply({})


def delete_branch(access: Access, req: Request) -> Reply:
    repo = access.writable(req)
    access.store.delete_ref(repo.id, "branch", req.params["rev"])
    return json_reply({})


def create_tag(access: Access, req: Request) -> Reply:
    repo = access.writable(req)
    tag = req.json().get("tag")
    if not isinstance(tag, str) or not tag:
        raise StatusError(400, "A tag name is required")
    access.store.create_ref(repo.id, "tag", tag, req.params["rev"])
    return json_reply({})


def delete_tag(access: Access, req: Request) -> Reply:
    repo = access.writable(req)
    access.store.delete_ref(repo.id, "tag", req.params["rev"])
    return json_reply({})
