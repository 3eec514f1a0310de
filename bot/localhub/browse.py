"""The local Hub's two HTML routes: the front page and a repo's page, for a browser.

What they show is rendered by `bot.localhub.pages`; this module picks what a request may
see (private repos and collections need a token) and answers it as HTML.

Example:
    >>> httpx.get(hub.endpoint + "/me/tiny").status_code              # doctest: +SKIP
    200
"""

from __future__ import annotations

from html import escape

from bot.localhub.access import Access
from bot.localhub.http import Reply, Request, StatusError, html_reply
from bot.localhub.pages import CollectionLink, FileRow, RepoLink, index_page, repo_page
from bot.localhub.rules import DEFAULT_BRANCH


def html_index(access: Access, req: Request) -> Reply:
    store = access.store
    links = [
        RepoLink(r.id, r.private, store.resolve(r.id, DEFAULT_BRANCH).date)
        for r in store.repos()
        if access.can_read(r, req.user)
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
        for c in store.collections()
        if not c.private or req.user is not None
    ]
    return html_reply(index_page(links, collections))


def html_repo(access: Access, req: Request) -> Reply:
    try:
        repo = access.readable(req)
    except StatusError:
        return html_reply(f"<!DOCTYPE html><p>No repo {escape(req.repo_id)} here.</p>", 404)
    commit = access.store.resolve(repo.id, DEFAULT_BRANCH)
    entry = commit.tree.get("README.md")
    readme = None
    if entry is not None:
        readme = access.store.blobs.read(entry.sha256).decode("utf-8", "replace")
    files = [FileRow(p, e.size, e.lfs) for p, e in sorted(commit.tree.items())]
    return html_reply(repo_page(repo.id, commit.id, readme, files))
