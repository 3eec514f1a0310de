"""Reading files a user hands us: regular files only, bounded size, bounded JSON nesting.

A manifest, a config or a keep list may be anything the path names: a named pipe (which
blocks a plain `open` until someone writes to it), `/dev/zero` (endless), a 5 GB file, or
JSON nested 200,000 deep (which the standard parser answers with `RecursionError`). Each is
answered here with an `InputError` that names the file, at once and in bounded memory.

Example:
    >>> data = read_json(Path("config.json"), limit=MAX_JSON_BYTES)   # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

from bot.errors import InputError

MAX_JSON_BYTES = 64 * 1024 * 1024
"""Largest JSON side file (config, index, keep list, provenance) read."""
MAX_CONFIG_BYTES = 4 * 1024 * 1024
"""A config.json is a few KB; more is not one."""
MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects accepted; real files nest 5 deep at most."""

_ONLY_BRACKETS_AND_QUOTES = bytes(c for c in range(256) if c not in b'[]{}"')
_STRING = re.compile(rb'"[^"]*+(?:"|\Z)')
_KINDS = {
    stat.S_IFIFO: "a named pipe",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a folder",
}


class UnreadableFile(InputError):
    """A file that cannot be read as input; `reason` says why, without the path."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(f"{path}: {reason}")


def read_input_file(path: Path, *, limit: int) -> bytes:
    """The bytes of regular file `path`, at most `limit` of them; `UnreadableFile` otherwise.

    The file is opened without blocking (a pipe with no writer does not hang us) and
    checked to be a regular file before anything is read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise UnreadableFile(path, f"cannot read: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
            raise UnreadableFile(path, f"is {kind}, not a regular file")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise UnreadableFile(path, f"cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise UnreadableFile(path, f"is larger than {limit:,} bytes")
    return data


def json_depth_exceeds(raw: bytes, depth: int = MAX_JSON_DEPTH) -> bool:
    """Whether the arrays and objects of JSON text `raw` nest deeper than `depth`.

    Runs in C-speed passes (strings dropped, then innermost bracket pairs removed once per
    level), never recursing, so a hostile file costs at most `depth` linear passes.
    """
    # escaped backslashes, then escaped quotes, go first: every quote left delimits a string
    text = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    text = text.translate(None, _ONLY_BRACKETS_AND_QUOTES).replace(b'""', b"")
    brackets = _STRING.sub(b"", text).replace(b"{", b"[").replace(b"}", b"]")
    for _ in range(depth):
        if not brackets:
            return False
        shorter = brackets.replace(b"[]", b"")
        if len(shorter) == len(brackets):  # unbalanced: the parser will say where
            return b"[" * (depth + 1) in brackets
        brackets = shorter
    return bool(brackets)


def loads_json(raw: bytes | str, where: object, *, depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse JSON text whose nesting is at most `depth`; `InputError` naming `where`."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if json_depth_exceeds(data, depth):
        raise InputError(f"{where}: JSON nested deeper than {depth} levels")
    try:
        return json.loads(data)
    except RecursionError:  # unbalanced text the depth check let through
        raise InputError(f"{where}: JSON nested too deeply") from None
    except ValueError as exc:
        raise InputError(f"{where}: not valid JSON: {exc}") from None


def read_json(path: Path, *, limit: int = MAX_JSON_BYTES) -> Any:
    """A regular JSON file of at most `limit` bytes, parsed with bounded nesting."""
    return loads_json(read_input_file(path, limit=limit), path)


def read_config(path: Path) -> dict[str, Any]:
    """A model's `config.json` as a dict; `InputError` naming the file if it is not one.

    The one reader of model configs: the manifest's base snapshot, the pruner's source,
    a staged folder's statistics and the example runner's MXFP4 check all read through it.
    """
    config = read_json(path, limit=MAX_CONFIG_BYTES)
    if not isinstance(config, dict):
        raise InputError(f"{path} is not a JSON object")
    return config
