"""Which handler answers a request: the local Hub's route table, by method and path.

Each route has a stable key (`bot.localhub.faults.ROUTES`, used to count requests and
inject faults), a pattern over the raw (still quoted) path, and a handler per method.
Handlers live in one module per resource: repos, trees, lfs, commits, refs, resolve,
cards, collections, browse.

Example:
    >>> key, handler, params = match_route("GET", "/api/models/me/tiny/tree/main")
    >>> key, handler.__name__, params["rev"]
    ('tree', 'tree', 'main')
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import unquote

from bot.localhub import browse, cards, collections, commits, lfs, refs, repos, resolve, trees
from bot.localhub.access import Access
from bot.localhub.faults import ROUTES
from bot.localhub.http import Reply, Request

Handler = Callable[[Access, Request], Reply]

_SEG = r"[^/]+"
_REPO = rf"(?P<ns>{_SEG})/(?P<name>{_SEG})"
_API = rf"/api/models/{_REPO}"
_SLUG = rf"/api/collections/(?P<ns>{_SEG})/(?P<slug>{_SEG})"
_LFS = rf"/{_REPO}\.git/info/lfs/objects"

# Route key, path pattern, handler per method.
_ROUTE_TABLE: list[tuple[str, str, dict[str, Handler]]] = [
    ("whoami", r"/api/whoami-v2", {"GET": repos.whoami}),
    ("create_repo", r"/api/repos/create", {"POST": repos.create_repo}),
    ("delete_repo", r"/api/repos/delete", {"DELETE": repos.delete_repo}),
    ("list_models", r"/api/models", {"GET": repos.list_models}),
    ("repo_settings", rf"{_API}/settings", {"PUT": repos.repo_settings}),
    ("repo_info", rf"{_API}(?:/revision/(?P<rev>{_SEG}))?", {"GET": repos.repo_info}),
    ("tree", rf"{_API}/tree/(?P<rev>{_SEG})(?:/(?P<path>.*))?", {"GET": trees.tree}),
    ("paths_info", rf"{_API}/paths-info/(?P<rev>{_SEG})", {"POST": trees.paths_info}),
    ("refs", rf"{_API}/refs", {"GET": refs.refs}),
    ("commits", rf"{_API}/commits/(?P<rev>{_SEG})", {"GET": commits.commits}),
    (
        "branch",
        rf"{_API}/branch/(?P<rev>{_SEG})",
        {"POST": refs.create_branch, "DELETE": refs.delete_branch},
    ),
    (
        "tag",
        rf"{_API}/tag/(?P<rev>{_SEG})",
        {"POST": refs.create_tag, "DELETE": refs.delete_tag},
    ),
    ("preupload", rf"{_API}/preupload/(?P<rev>{_SEG})", {"POST": lfs.preupload}),
    ("commit", rf"{_API}/commit/(?P<rev>{_SEG})", {"POST": commits.commit}),
    ("lfs_batch", rf"{_LFS}/batch", {"POST": lfs.lfs_batch}),
    ("lfs_verify", rf"{_LFS}/verify", {"POST": lfs.lfs_verify}),
    ("lfs_upload", rf"{_LFS}/(?P<oid>{lfs.OID})", {"PUT": lfs.lfs_upload}),
    (
        "resolve",
        rf"/{_REPO}/resolve/(?P<rev>{_SEG})/(?P<path>.+)",
        {"GET": resolve.resolve, "HEAD": resolve.resolve},
    ),
    ("validate_yaml", r"/api/validate-yaml", {"POST": cards.validate_yaml}),
    (
        "collections",
        r"/api/collections",
        {"GET": collections.list_collections, "POST": collections.create_collection},
    ),
    (
        "collections",
        _SLUG,
        {
            "GET": collections.get_collection,
            "PATCH": collections.update_collection,
            "DELETE": collections.delete_collection,
        },
    ),
    ("collections", rf"{_SLUG}/items", {"POST": collections.add_collection_item}),
    (
        "collections",
        rf"{_SLUG}/items/(?P<item>{_SEG})",
        {
            "PATCH": collections.update_collection_item,
            "DELETE": collections.delete_collection_item,
        },
    ),
    ("html", r"/", {"GET": browse.html_index}),
    ("html", rf"/{_REPO}", {"GET": browse.html_repo}),
]
_ROUTES = [(key, re.compile(pattern), methods) for key, pattern, methods in _ROUTE_TABLE]
assert {key for key, _, _ in _ROUTE_TABLE} | {"unknown"} == set(ROUTES)


def match_route(method: str, path: str) -> tuple[str, Handler | None, dict[str, str]]:
    """(route key, handler or None if the method is not allowed, unquoted parameters)."""
    for key, pattern, methods in _ROUTES:
        match = pattern.fullmatch(path)
        if match:
            params = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
            return key, methods.get(method), params
    return "unknown", None, {}
