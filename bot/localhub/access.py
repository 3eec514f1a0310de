"""Who a request acts as, and what it may read and write, over one `Store`.

With tokens configured, a request carrying any other token gets 401 (`Invalid
credentials in Authorization header`); without tokens, any token is accepted. Anonymous
requests may read public repos; writes and private repos need a token. Every valid token
acts as the one user (`user`, default "hubbot") and may write to any namespace. LFS upload
URLs are signed with a secret of this server (`sign`), so a PUT needs no token.

Example:
    >>> access = Access(Store(tmp_path / "hub"), ["hf_x"], "hubbot")  # doctest: +SKIP
    >>> access.authenticate("Bearer hf_x")                            # doctest: +SKIP
    'hubbot'
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from bot.localhub.http import Request, StatusError
from bot.localhub.records import Repo
from bot.localhub.store import Store


def _sha256(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def repo_not_found(repo_id: str, *, anonymous: bool = False) -> StatusError:
    """The Hub's answer for a missing repo, or a private one asked for without a token."""
    return StatusError(
        401 if anonymous else 404, f"Repository not found: {repo_id}", "RepoNotFound"
    )


class Access:
    """The store, the user every valid token acts as, and the rules of who may do what."""

    def __init__(self, store: Store, tokens: list[str], user: str) -> None:
        self.store = store
        self.user = user
        self._token_digests = {_sha256(t) for t in tokens}
        self._secret = secrets.token_bytes(32)

    def authenticate(self, header: str | None) -> str | None:
        """The user a request acts as (None: anonymous); 401 for a bad token."""
        if header is None:
            return None
        scheme, _, token = header.partition(" ")
        token = token.strip()
        valid = scheme.lower() == "bearer" and token
        if not valid or (self._token_digests and _sha256(token) not in self._token_digests):
            raise StatusError(401, "Invalid credentials in Authorization header")
        return self.user

    def can_read(self, repo: Repo, user: str | None) -> bool:
        return not repo.private or user is not None

    def readable(self, req: Request) -> Repo:
        """The request's repo, if it may read it (else it does not exist, for this request)."""
        repo = self.store.repo(req.repo_id)
        if repo is None or not self.can_read(repo, req.user):
            raise repo_not_found(req.repo_id, anonymous=req.user is None)
        return repo

    def writer(self, req: Request) -> str:
        """The user of a request that writes (401 for an anonymous one)."""
        if req.user is None:
            raise StatusError(401, "You must be authenticated (send a token) to do this")
        return req.user

    def writable(self, req: Request) -> Repo:
        """The request's repo, for a request that writes to it."""
        self.writer(req)
        repo = self.store.repo(req.repo_id)
        if repo is None:
            raise repo_not_found(req.repo_id)
        return repo

    def sign(self, repo_id: str, oid: str, size: int) -> str:
        """The signature of an LFS upload URL for this object."""
        message = f"{repo_id}\n{oid}\n{size}".encode()
        return hmac.new(self._secret, message, "sha256").hexdigest()
