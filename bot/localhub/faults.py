"""Fault injection and request counting for the local Hub server.

Every request the server answers is named by a stable route key (`ROUTES`). A `Fault`
applies to the next `times` requests of its route: it waits `delay` seconds, then
answers `status` (with `Retry-After` when `retry_after` is set), closes the connection
without an answer (`drop`), or, with neither, answers normally (a slow answer).

Example:
    >>> faults = Faults()
    >>> _ = faults.add("commit", status=503, times=2, retry_after=1)
    >>> faults.take("commit").status, faults.take("commit").status, faults.take("commit")
    (503, 503, None)
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

ROUTES: dict[str, str] = {
    "whoami": "GET /api/whoami-v2",
    "create_repo": "POST /api/repos/create",
    "delete_repo": "DELETE /api/repos/delete",
    "repo_settings": "PUT /api/models/{repo}/settings",
    "list_models": "GET /api/models",
    "repo_info": "GET /api/models/{repo}[/revision/{rev}] (model_info, repo_info)",
    "tree": "GET /api/models/{repo}/tree/{rev}[/{path}] (list_repo_tree, list_repo_files)",
    "paths_info": "POST /api/models/{repo}/paths-info/{rev}",
    "refs": "GET /api/models/{repo}/refs",
    "commits": "GET /api/models/{repo}/commits/{rev}",
    "branch": "POST|DELETE /api/models/{repo}/branch/{branch}",
    "tag": "POST|DELETE /api/models/{repo}/tag/{rev_or_tag}",
    "preupload": "POST /api/models/{repo}/preupload/{rev}",
    "lfs_batch": "POST /{repo}.git/info/lfs/objects/batch",
    "lfs_upload": "PUT /{repo}.git/info/lfs/objects/{oid} (signed upload URL)",
    "lfs_verify": "POST /{repo}.git/info/lfs/objects/verify",
    "commit": "POST /api/models/{repo}/commit/{rev}",
    "resolve": "GET|HEAD /{repo}/resolve/{rev}/{path}",
    "validate_yaml": "POST /api/validate-yaml",
    "collections": "GET|POST|PATCH|DELETE /api/collections[/...]",
    "html": "GET / and GET /{repo} (HTML pages)",
    "unknown": "anything else (answered 404)",
}


@dataclass
class Fault:
    """What to do to the next `times` requests of `route` (see the module docstring)."""

    route: str
    status: int | None = None
    times: int = 1
    retry_after: int | None = None
    delay: float = 0.0
    drop: bool = False

    def __post_init__(self) -> None:
        if self.route not in ROUTES:
            raise ValueError(f"unknown route {self.route!r}; known: {', '.join(ROUTES)}")
        if self.times < 1:
            raise ValueError("times must be at least 1")
        if self.status is not None and not 400 <= self.status <= 599:
            raise ValueError("status must be an HTTP error code (400-599)")
        if self.status is not None and self.drop:
            raise ValueError("a fault either answers a status or drops the connection, not both")
        if self.retry_after is not None and (self.status is None or self.retry_after < 0):
            raise ValueError("retry_after needs a status and must be >= 0")
        if self.delay < 0:
            raise ValueError("delay must be >= 0")
        if self.status is None and not self.drop and self.delay == 0:
            raise ValueError("a fault needs a status, drop=True or a delay")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Faults:
    """The pending faults of one server; safe to use from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[Fault] = []

    def add(
        self,
        route: str,
        *,
        status: int | None = None,
        times: int = 1,
        retry_after: int | None = None,
        delay: float = 0.0,
        drop: bool = False,
    ) -> Fault:
        """Apply a fault to the next `times` requests of `route`; faults of a route queue up."""
        fault = Fault(route, status, times, retry_after, delay, drop)
        with self._lock:
            self._pending.append(fault)
        return fault

    def take(self, route: str) -> Fault | None:
        """The fault for one request of `route` (consumes one of its `times`), or None."""
        with self._lock:
            for fault in self._pending:
                if fault.route == route:
                    fault.times -= 1
                    if fault.times == 0:
                        self._pending.remove(fault)
                    return Fault(
                        fault.route, fault.status, 1, fault.retry_after, fault.delay, fault.drop
                    )
        return None

    def pending(self) -> list[Fault]:
        """Copies of the faults still to apply, in order."""
        with self._lock:
            return [Fault(**f.to_json()) for f in self._pending]

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()


class Stats:
    """Requests answered per route key (faulted ones included; admin requests not counted)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def count(self, route: str) -> None:
        with self._lock:
            self._counts[route] += 1

    def snapshot(self) -> dict[str, int]:
        """Route key -> number of requests, sorted by key."""
        with self._lock:
            return dict(sorted(self._counts.items()))

    def __getitem__(self, route: str) -> int:
        with self._lock:
            return self._counts[route]

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()

    def to_json(self) -> dict[str, Any]:
        routes = self.snapshot()
        return {"total": sum(routes.values()), "routes": routes}
