"""Content-addressed file contents of the local Hub: `blobs/ab/cdef...`, named by sha256.

Writes go to `tmp/` first and are renamed into place when complete, so a blob is either
whole or absent.

Example:
    >>> blobs = Blobs(tmp_path)                                       # doctest: +SKIP
    >>> blobs.read(blobs.write(b"hi"))                                # doctest: +SKIP
    b'hi'
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterable
from pathlib import Path

from bot.localhub.errors import InvalidInput


class Blobs:
    """The blobs under `root / "blobs"`; partial writes in `tmp`."""

    def __init__(self, root: Path, tmp: Path) -> None:
        self.root = Path(root) / "blobs"
        self.tmp = tmp
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:]

    def has(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def read(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

    def write(self, data: bytes) -> str:
        """Store `data`; return its sha256."""
        return self.write_chunks([data])

    def write_chunks(self, chunks: Iterable[bytes], expect: tuple[str, int] | None = None) -> str:
        """Store a stream of bytes; return its sha256. With `expect` (sha256, size), a
        stream that does not match is refused (`InvalidInput`) and nothing is stored."""
        digest, size = hashlib.sha256(), 0
        tmp = self.tmp / uuid.uuid4().hex
        try:
            with tmp.open("wb") as out:
                for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            sha256 = digest.hexdigest()
            if expect is not None and expect != (sha256, size):
                raise InvalidInput(
                    f"Uploaded content does not match oid {expect[0]} / size {expect[1]}"
                )
            final = self.path(sha256)
            if final.is_file():
                tmp.unlink()
            else:
                final.parent.mkdir(exist_ok=True)
                os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        return sha256
