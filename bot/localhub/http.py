"""The local Hub's HTTP vocabulary: parsed requests, replies, and error answers.

A route handler takes a `Request` and returns a `Reply`. What it refuses it raises as a
`StatusError` (an HTTP status, a Hub error code such as `EntryNotFound`, a message, extra
headers); what the store refuses arrives as a `StoreError` (`bot.localhub.errors`), and
`STORE_ANSWERS` gives each kind of those its status and code. `failure_reply` is the one
place where either becomes an answer. The error body and headers are the Hub's:
`{"error": message}` with `X-Error-Message` and `X-Error-Code`, which huggingface_hub
turns into its `RepositoryNotFoundError`, `RevisionNotFoundError`, ...

Example:
    >>> failure_reply(StatusError(404, "Entry not found: a.txt", "EntryNotFound")).headers[
    ...     "X-Error-Code"]
    'EntryNotFound'
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bot.localhub.errors import (
    InvalidInput,
    ProtectedRef,
    RefExists,
    RepoNotFound,
    RevisionNotFound,
    StaleParent,
    StoreError,
)

MAX_BODY = 1 << 30  # bodies read into memory (commits carry regular files, base64)
CHUNK = 1 << 20

# What the store refuses, as the Hub answers it: status and Hub error code.
STORE_ANSWERS: dict[type[StoreError], tuple[int, str | None]] = {
    InvalidInput: (400, None),
    RepoNotFound: (404, "RepoNotFound"),
    RevisionNotFound: (404, "RevisionNotFound"),
    RefExists: (409, None),
    StaleParent: (412, None),
    ProtectedRef: (403, None),
}


class StatusError(Exception):
    """An answer the local Hub gives instead of a result: HTTP status, Hub error code, message."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}


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
                    raise StatusError(413, "Request body too large")
            self._body = bytes(data)
        return self._body

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"{}")
        except ValueError:
            raise StatusError(400, "The request body is not valid JSON") from None

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
            raise StatusError(400, f"Query parameter {name} must be a number, not {value!r}")
        return int(value)

    @property
    def repo_id(self) -> str:
        return f"{self.params['ns']}/{self.params['name']}"


def json_reply(data: Any, status: int = 200, content_type: str = "application/json") -> Reply:
    return Reply(status, json.dumps(data).encode(), {"Content-Type": content_type})


def html_reply(page: str, status: int = 200) -> Reply:
    return Reply(status, page.encode(), {"Content-Type": "text/html; charset=utf-8"})


def error_reply(status: int, message: str, code: str | None = None, **headers: str) -> Reply:
    safe = message.encode("ascii", "replace").decode().replace("\n", " ")
    out = {"Content-Type": "application/json", "X-Error-Message": safe, **headers}
    if code:
        out["X-Error-Code"] = code
    return Reply(status, json.dumps({"error": message}).encode(), out)


def failure_reply(exc: StatusError | StoreError) -> Reply:
    """The answer for a refusal, of a handler (`StatusError`) or of the store."""
    if isinstance(exc, StatusError):
        return error_reply(exc.status, exc.message, exc.code, **exc.headers)
    kind = next(k for k in type(exc).__mro__ if k in STORE_ANSWERS or k is StoreError)
    status, code = STORE_ANSWERS.get(kind, (400, None))
    return error_reply(status, str(exc), code)


def paginate(req: Request, items: list[Any], size: int) -> Reply:
    """A page of `items` with a GitHub-style `Link: <...>; rel="next"` to the next one."""
    start = req.number("cursor", 0)
    reply = json_reply(items[start : start + size])
    if start + size < len(items):
        query = {k: v for k, v in req.query.items() if k != "cursor"}
        query["cursor"] = [str(start + size)]
        reply.headers["Link"] = f'<{req.url}?{urlencode(query, doseq=True)}>; rel="next"'
    return reply
