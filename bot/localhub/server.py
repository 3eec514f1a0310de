"""A local Hub-compatible server: the part of the Hub's HTTP API that `HfApi` uses for model repos.

This module is the HTTP side: connections, request bodies (sized or chunked), injected
faults, request counts and the admin endpoints. `bot.localhub.routes` picks the handler
(one module per resource), `bot.localhub.access` decides who may do what, and every
refusal, of a handler or of the store, becomes an answer in `bot.localhub.http`.
`hf_hub_download`, `snapshot_download` and transformers' `from_pretrained` work against
it. Clients must set `HF_HUB_DISABLE_XET=1` (Xet is not served, uploads go through LFS).

Admin endpoints (loopback clients only; never counted, never faulted):

    GET    /_hubbot/faults   pending faults and the route keys (see `bot.localhub.faults.ROUTES`)
    POST   /_hubbot/faults   add one: {"route": "commit", "status": 503, "times": 2,
                             "retry_after": 1} or {"route": "resolve", "drop": true} or
                             {"route": "tree", "delay": 2.5}
    DELETE /_hubbot/faults   clear them
    GET    /_hubbot/stats    {"total": N, "routes": {"commit": 1, ...}}
    DELETE /_hubbot/stats    reset the counts

Example:
    >>> with HubServer(tmp_path / "hub", tokens=["hf_local"]) as hub:   # doctest: +SKIP
    ...     api = HfApi(endpoint=hub.endpoint, token="hf_local")
    ...     api.create_repo("me/tiny")
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import socket
import socketserver
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bot.localhub.access import Access
from bot.localhub.errors import StoreError
from bot.localhub.faults import ROUTES, Faults, Stats
from bot.localhub.http import (
    CHUNK,
    Reply,
    Request,
    StatusError,
    error_reply,
    failure_reply,
    json_reply,
)
from bot.localhub.routes import match_route
from bot.localhub.store import Store

log = logging.getLogger(__name__)


class _Body:
    """A request body as chunks (Content-Length or chunked), read at most once."""

    def __init__(self, handler: BaseHTTPRequestHandler) -> None:
        self._rfile = handler.rfile
        chunked = handler.headers.get("Transfer-Encoding", "").lower() == "chunked"
        self._iter = self._chunked() if chunked else self._sized(handler.headers)

    def __iter__(self) -> Iterator[bytes]:
        return self._iter

    def _sized(self, headers: Message) -> Iterator[bytes]:
        remaining = int(headers.get("Content-Length") or 0)
        while remaining > 0:
            data = self._rfile.read(min(remaining, CHUNK))
            if not data:
                raise ConnectionError("the client closed the connection mid-body")
            remaining -= len(data)
            yield data

    def _chunked(self) -> Iterator[bytes]:
        while True:
            size = int(self._rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self._rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return
            while size > 0:
                data = self._rfile.read(min(size, CHUNK))
                if not data:
                    raise ConnectionError("the client closed the connection mid-body")
                size -= len(data)
                yield data
            self._rfile.readline(1024)

    def drain(self) -> None:
        for _ in self._iter:
            pass


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 300  # idle keep-alive connections end after this many seconds

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in separate writes: without this, Nagle's algorithm holds
        # the body until the client's delayed ACK, about 40 ms per request on loopback.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.client_address[0], format % args)

    def _handle(self) -> None:
        split = urlsplit(self.path)
        body = _Body(self)
        try:
            if split.path.startswith("/_hubbot/"):
                reply = self._admin(split.path, body)
            else:
                reply = self._serve(split.path, split.query, body)
            if reply is None:  # a dropped connection
                self.close_connection = True
                return
            body.drain()
        except (ConnectionError, TimeoutError, ValueError) as exc:
            log.debug("request body unreadable: %s", exc)
            self.close_connection = True
            return
        try:
            self._send(reply)
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    def _serve(self, path: str, query: str, body: _Body) -> Reply | None:
        hub = self.server.hub
        key, handler, params = match_route(self.command, path)
        hub.stats.count(key)
        fault = hub.faults.take(key)
        if fault is not None:
            if fault.delay and self.server.stopping.wait(fault.delay):
                return None
            if fault.drop or fault.status is not None:
                body.drain()
            if fault.drop:
                return None
            if fault.status is not None:
                retry = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
                return error_reply(fault.status, f"Injected fault: {fault.status}", **retry)
        if handler is None:
            hint = " (the local Hub has no Xet: set HF_HUB_DISABLE_XET=1)" if "xet" in path else ""
            status = 404 if key == "unknown" else 405
            return error_reply(status, f"No route for {self.command} {path}{hint}")
        host = self.headers.get("Host") or "{}:{}".format(*self.server.server_address[:2])
        try:
            req = Request(
                method=self.command,
                params=params,
                query=parse_qs(query, keep_blank_values=True),
                headers=self.headers,
                user=hub.access.authenticate(self.headers.get("Authorization")),
                base=f"http://{host}",
                url=f"http://{host}{path}",
                chunks=iter(body),
            )
            return handler(hub.access, req)
        except (StatusError, StoreError) as exc:
            return failure_reply(exc)
        except (ConnectionError, TimeoutError):
            raise  # the client is gone: no answer
        except Exception:
            log.exception("internal error on %s %s", self.command, path)
            return error_reply(500, "Internal error of the local Hub")

    def _admin(self, path: str, body: _Body) -> Reply:
        if not _is_loopback(self.client_address[0]):
            return error_reply(403, "Admin endpoints answer loopback clients only")
        hub = self.server.hub
        if path == "/_hubbot/stats" and self.command in ("GET", "DELETE"):
            if self.command == "DELETE":
                hub.stats.reset()
            return json_reply(hub.stats.to_json())
        if path == "/_hubbot/faults" and self.command == "POST":
            try:
                fault = hub.faults.add(**json.loads(b"".join(body) or b"{}"))
            except (TypeError, ValueError) as exc:
                return error_reply(400, f"Bad fault: {exc}")
            return json_reply({"fault": fault.to_json()}, 201)
        if path == "/_hubbot/faults" and self.command in ("GET", "DELETE"):
            if self.command == "DELETE":
                hub.faults.clear()
            faults = [f.to_json() for f in hub.faults.pending()]
            return json_reply({"faults": faults, "routes": ROUTES})
        return error_reply(404, f"No admin route {self.command} {path}")

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        self.send_header("X-Request-Id", uuid.uuid4().hex)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        length = reply.file[2] if reply.file else len(reply.body)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if self.command == "HEAD":
            return
        if reply.file is None:
            self.wfile.write(reply.body)
            return
        path, offset, remaining = reply.file
        with path.open("rb") as f:
            f.seek(offset)
            while remaining > 0:
                data = f.read(min(remaining, CHUNK))
                if not data:
                    raise ConnectionError(f"{path} is shorter than its record")
                self.wfile.write(data)
                remaining -= len(data)


@dataclass
class _Hub:
    access: Access
    faults: Faults
    stats: Stats


class _Server(ThreadingHTTPServer):
    """Tracks its open connections so that `stop` can end idle keep-alive ones."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], hub: _Hub) -> None:
        self.hub = hub
        self.stopping = threading.Event()
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # no reverse DNS lookup of the host
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        self.stopping.set()
        with self._open_lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class HubServer:
    """A local Hub on `host`; `start()` returns its endpoint URL, `stop()` ends it.

    `faults` and `stats` are live: add faults or read counts at any time. Stopping and
    starting again (or a new `HubServer` on the same root) serves the same repos; a
    restarted server keeps its port.
    """

    def __init__(
        self,
        root: Path,
        *,
        tokens: list[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        user: str = "hubbot",
    ) -> None:
        self.root = Path(root)
        self.host = host
        self.port = port
        self.user = user
        self.faults = Faults()
        self.stats = Stats()
        self._tokens = list(tokens or [])
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        state = self.endpoint if self._httpd else "stopped"
        return f"HubServer(root={str(self.root)!r}, {state})"

    @property
    def token(self) -> str | None:
        """The first accepted token (None: the server accepts any token)."""
        return self._tokens[0] if self._tokens else None

    @property
    def endpoint(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the server is not running")
        return f"http://{self.host}:{self.port}"

    def start(self) -> str:
        """Serve in a background thread; return the endpoint URL."""
        if self._httpd is not None:
            return self.endpoint
        access = Access(Store(self.root), self._tokens, self.user)
        self._httpd = _Server((self.host, self.port), _Hub(access, self.faults, self.stats))
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self.endpoint

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted (Ctrl-C)."""
        self.start()
        assert self._thread is not None
        try:
            while self._thread.is_alive():
                self._thread.join(0.5)
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop serving and close every connection (requests in flight are cut)."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.close_connections()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()
        self._httpd = None
        self._thread = None

    def __enter__(self) -> HubServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    root: Path, host: str = "127.0.0.1", port: int = 0, tokens: list[str] | None = None
) -> None:
    """Run a local Hub on `host:port` until interrupted (`hubbot hub serve`)."""
    server = HubServer(root, tokens=tokens, host=host, port=port)
    server.start()
    print(f"Local Hub serving {Path(root).resolve()} at {server.endpoint}", flush=True)
    print("Clients: HF_ENDPOINT=" + server.endpoint + " HF_HUB_DISABLE_XET=1", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
