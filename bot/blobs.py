"""Content digests as git and the Hub name files: git blob sha1 and sha256, streamed.

One definition for the Hub client, which compares local files with the remote tree, and
for the local Hub server (`bot.localhub`), which names the blobs it stores. Content is
bytes or a file, read 1 MiB at a time.

Example:
    >>> git_blob_sha1(b"hello\\n")
    'ce013625030ba8dba906f756967f9e9ca394464a'
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

Content = Path | bytes
_CHUNK = 1 << 20


def git_blob_sha1(content: Content) -> str:
    """The git object id of a blob with this content."""
    size = content.stat().st_size if isinstance(content, Path) else len(content)
    digest = hashlib.sha1(f"blob {size}\0".encode())
    for chunk in _chunks(content):
        digest.update(chunk)
    return digest.hexdigest()


def sha256_of(content: Content) -> str:
    """The sha256 of this content (what the Hub names an LFS file by)."""
    digest = hashlib.sha256()
    for chunk in _chunks(content):
        digest.update(chunk)
    return digest.hexdigest()


def _chunks(content: Content) -> Iterator[bytes]:
    if not isinstance(content, Path):  # bytes in memory
        yield content
        return
    with content.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            yield chunk
