"""What the local Hub stores, as values: files of a tree, commits, repos, refs, collections.

Ids follow git where the Hub's clients compare them: a regular file's id is the git blob
sha1 of its content, an LFS file's id is the git blob sha1 of its pointer (its content
sha256 is in `Entry.sha256`), a commit id is 40 hex digits (sha1 of the commit record).

Example:
    >>> Entry.regular(b"hi\\n", "98ea6e4f...").oid
    '45b983be36b73c0788dc9cbcb76cbb80fc7bb057'
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bot.blobs import git_blob_sha1


def now_iso() -> str:
    """The current time in the Hub's format, e.g. `2024-05-01T12:00:00.000Z`."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer file that git stores in place of an LFS file."""
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
    )


@dataclass(frozen=True)
class Entry:
    """One file of a commit's tree."""

    sha256: str
    size: int
    lfs: bool
    oid: str

    @classmethod
    def regular(cls, data: bytes, sha256: str) -> Entry:
        return cls(sha256, len(data), False, git_blob_sha1(data))

    @classmethod
    def large(cls, sha256: str, size: int) -> Entry:
        return cls(sha256, size, True, git_blob_sha1(lfs_pointer(sha256, size)))

    @property
    def pointer_size(self) -> int:
        return len(lfs_pointer(self.sha256, self.size))


@dataclass(frozen=True)
class Commit:
    """A snapshot of a repo: the whole tree (path -> entry), its parents and message."""

    id: str
    parents: tuple[str, ...]
    tree: dict[str, Entry]
    title: str
    message: str
    author: str
    date: str

    def directories(self) -> set[str]:
        """Every folder that holds a file of the tree."""
        out: set[str] = set()
        for path in self.tree:
            parts = path.split("/")[:-1]
            out.update("/".join(parts[: i + 1]) for i in range(len(parts)))
        return out

    def subtree(self, folder: str) -> dict[str, Entry]:
        """The files under `folder`."""
        return {p: e for p, e in self.tree.items() if p.startswith(folder + "/")}


@dataclass(frozen=True)
class Repo:
    """A model repo's settings (its content is in its commits and refs)."""

    id: str
    private: bool
    created_at: str


@dataclass
class Refs:
    """Branch and tag names of a repo, each naming a commit id."""

    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class CollectionItem:
    """One entry of a collection: a repo id (or paper id, ...) and its type."""

    object_id: str
    item_id: str
    item_type: str
    note: str | None = None


@dataclass
class Collection:
    """A titled list of Hub items owned by a namespace; `slug` is how clients name it."""

    id: str
    namespace: str
    title: str
    description: str | None
    private: bool
    theme: str
    created_at: str
    updated_at: str
    items: list[CollectionItem] = field(default_factory=list)

    @property
    def slug(self) -> str:
        words = re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-") or "collection"
        return f"{self.namespace}/{words}-{self.id}"
