"""Hub calls under a retry policy, and the hubbot errors a failed call becomes.

`huggingface_hub` retries some requests itself (uploads, pagination) but not others
(`create_commit`'s final POST, `create_repo`, `model_info`, paths-info). `HubCaller` wraps
every call we make: it retries 429 (waiting as long as `Retry-After` asks), 5xx, 408 and
dropped connections or timeouts with exponential backoff, and turns 401/403 into
`HubAuthError` at once. A repo, revision or file that does not exist passes through as
huggingface_hub's not-found error whatever the status (the Hub answers an anonymous request
for a missing repo with 401): for a plan, a missing repo is a `create`. A host name that
does not resolve, or a network that is unreachable, fails at once, naming the endpoint
and how to choose another. Other HTTP errors pass through unchanged for the caller to
read (a 412 means something to it); `HubCaller.error` translates what is left.

Example:
    >>> calls = HubCaller("org/model", RetryPolicy(sleep=lambda s: None))   # doctest: +SKIP
    >>> info = calls("read the repo", api.model_info, "org/model")          # doctest: +SKIP
"""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import httpx2
from huggingface_hub import HfApi, get_token
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import (
    are_progress_bars_disabled,
    disable_progress_bars,
    enable_progress_bars,
)

from bot.errors import HubbotError

T = TypeVar("T")

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
RETRY_EXCEPTIONS = (httpx2.TimeoutException, httpx2.NetworkError, httpx2.RemoteProtocolError)
NOT_FOUND = (RepositoryNotFoundError, RevisionNotFoundError, RemoteEntryNotFoundError)
ENDPOINT_HINT = "set HF_ENDPOINT or the manifest's hub.endpoint to use another Hub"
_RESOLVE_FAILURES = (
    "name or service not known",
    "nodename nor servname",
    "temporary failure in name resolution",
    "no address associated with hostname",
    "getaddrinfo failed",
)


class HubError(HubbotError):
    """A Hub request failed; the message names the repo and keeps the server's words."""

    def __init__(self, repo_id: str, message: str, status: int | None = None) -> None:
        self.repo_id = repo_id
        self.status = status
        super().__init__(f"{repo_id}: {message}")


class HubAuthError(HubError):
    """The Hub refused our credentials (401) or our rights (403)."""


class HubUnavailableError(HubError):
    """The Hub kept failing (429, 5xx, dropped connections) after every retry."""


class HubConflictError(HubError):
    """Someone else kept committing to the repo while we tried to (412 after a re-plan)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry. Deterministic: no jitter, `sleep` injectable."""

    max_attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 60.0
    max_retry_after: float = 300.0
    sleep: Callable[[float], None] = time.sleep

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1-based): 1, 2, 4, ... capped."""
        return min(self.max_delay, self.base_delay * 2 ** (retry - 1))


@dataclass
class HubCaller:
    """Runs Hub calls about one repo under a `RetryPolicy`, counting attempts and retries."""

    repo_id: str
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    token: str | None = None
    endpoint: str | None = None
    attempts: int = 0
    retries: int = 0
    doing: str = "talk to the Hub"

    @classmethod
    def for_api(cls, api: HfApi, repo_id: str, policy: RetryPolicy | None = None) -> HubCaller:
        """A caller for `api`'s calls about `repo_id`.

        It knows the token `api` sends (its own, else `HF_TOKEN` or the saved login) only to
        hide it and to say when none is set.
        """
        token = api.token if isinstance(api.token, str) else None
        if api.token is None:
            token = get_token()
        return cls(repo_id, policy or RetryPolicy(), token=token, endpoint=api.endpoint)

    def __call__(self, what: str, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        """Call `fn(*args, **kwargs)`; `what` says what it does, for error messages."""
        self.doing = what
        retry = 0
        while True:
            self.attempts += 1
            try:
                with _no_bars():
                    return fn(*args, **kwargs)
            except HfHubHTTPError as exc:
                if isinstance(exc, NOT_FOUND) and not isinstance(exc, GatedRepoError):
                    raise  # an answer, not a failure: the caller decides what it means
                status = _status(exc)
                if status in (401, 403):
                    raise self.error(what, exc) from None
                if status not in RETRY_STATUS:
                    raise
                failure: BaseException = exc
                wait_hint = _retry_after(exc) if status == 429 else None
            except RETRY_EXCEPTIONS as exc:
                if unresolvable(exc) or no_network(exc):
                    raise self.error(what, exc) from None
                failure, wait_hint = exc, None
            retry += 1
            if retry >= self.policy.max_attempts:
                raise self.error(what, failure) from None
            self.retries += 1
            if wait_hint is not None:
                self.policy.sleep(min(wait_hint, self.policy.max_retry_after))
            else:
                self.policy.sleep(self.policy.delay(retry))

    def error(self, what: str, exc: BaseException) -> HubError:
        """The hubbot error for a failed call: named repo, server message, never the token."""
        if not isinstance(exc, HfHubHTTPError):
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            where = f"the Hub at {self.endpoint}" if self.endpoint else "the Hub"
            if unresolvable(exc):
                message = f"{what} failed: cannot resolve the host of {where} ({reason})"
            elif no_network(exc):
                message = f"{what} failed: no network route to {where} ({reason})"
            else:
                attempts = self.policy.max_attempts
                message = f"{what} failed after {attempts} attempts reaching {where}: {reason}"
            return HubUnavailableError(self.repo_id, self._scrub(f"{message}; {ENDPOINT_HINT}"))
        status, server = _status(exc), _server_message(exc)
        kind: type[HubError] = HubError
        message = f"{what} failed (HTTP {status}): {server}"
        if status == 401 and not self.token:
            kind = HubAuthError
            message = (
                f"{what} needs a token and none is set: set HF_TOKEN or log in with "
                f"`hf auth login` (HTTP 401: {server})"
            )
        elif status in (401, 403):
            why = "the Hub refused the token" if status == 401 else "the token lacks permission"
            kind, message = HubAuthError, f"{what} failed: {why} (HTTP {status}): {server}"
        elif status in RETRY_STATUS:
            attempts = self.policy.max_attempts
            kind = HubUnavailableError
            message = f"{what} failed after {attempts} attempts (HTTP {status}): {server}"
        return kind(self.repo_id, self._scrub(message), status)

    def _scrub(self, text: str) -> str:
        for secret in {self.token, get_token()}:
            if secret:
                text = text.replace(secret, "***")
        return text


@contextmanager
def _no_bars() -> Iterator[None]:
    """huggingface_hub's tqdm bars off for one call: hubbot reports each step itself."""
    shown = not are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if shown:
            enable_progress_bars()


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, then what caused it, and so on."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def unresolvable(exc: BaseException) -> bool:
    """Whether a connection failed because the host name does not resolve (no use retrying)."""
    return any(
        isinstance(e, socket.gaierror) or any(t in str(e).lower() for t in _RESOLVE_FAILURES)
        for e in _chain(exc)
    )


def no_network(exc: BaseException) -> bool:
    """Whether a connection failed because this machine has no route out (no use retrying)."""
    return any(
        getattr(e, "errno", None) == errno.ENETUNREACH or "network is unreachable" in str(e).lower()
        for e in _chain(exc)
    )


def _status(exc: HfHubHTTPError) -> int | None:
    response = getattr(exc, "response", None)
    return response.status_code if response is not None else None


def _retry_after(exc: HfHubHTTPError) -> float | None:
    value = exc.response.headers.get("Retry-After", "").strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _server_message(exc: HfHubHTTPError) -> str:
    if exc.server_message:
        return exc.server_message.strip()
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
