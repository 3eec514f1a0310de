"""What the local Hub's store refuses, as exceptions that know nothing of HTTP.

The store (`bot.localhub.store`, `bot.localhub.blobs`) and the Hub's naming and LFS rules
(`bot.localhub.rules`) raise these; `str(exc)` is the message a client sees. The HTTP
layer gives each kind its status and Hub error code, in one place
(`bot.localhub.http.STORE_ANSWERS`).

Example:
    >>> from bot.localhub.http import failure_reply
    >>> failure_reply(RevisionNotFound("Invalid rev id: v9")).status
    404
"""

from __future__ import annotations


class StoreError(Exception):
    """A lookup or a change the store refuses."""


class InvalidInput(StoreError):
    """A repo id, path or content the Hub would not accept."""


class RepoNotFound(StoreError):
    """No repo of that id."""


class RevisionNotFound(StoreError):
    """No branch, tag or commit of that name."""


class RefExists(StoreError):
    """A branch or tag of that name exists already."""


class StaleParent(StoreError):
    """A commit was asked on top of a parent that is no longer the branch's head."""


class ProtectedRef(StoreError):
    """The default branch cannot be deleted."""
