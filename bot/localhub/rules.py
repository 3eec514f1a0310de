"""The Hub's rules for names and LFS: valid repo ids and paths, which files go to LFS.

A name or path the Hub would refuse raises `InvalidInput` (`bot.localhub.errors`).

Example:
    >>> wants_lfs("model.safetensors", 10, b"{}", lfs_patterns(DEFAULT_GITATTRIBUTES))
    True
    >>> check_repo_id("org/tiny-moe")
    'org/tiny-moe'
"""

from __future__ import annotations

import fnmatch
import re

from bot.localhub.errors import InvalidInput

LFS_SIZE_THRESHOLD = 10 * 1000 * 1000  # the Hub stores any file above 10 MB with LFS
DEFAULT_BRANCH = "main"
_NAME = re.compile(r"^(?!.*(--|\.\.))[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")
_LFS_EXTENSIONS = [
    "7z", "arrow", "bin", "bz2", "ckpt", "ftz", "gz", "h5", "joblib", "lfs.*", "mlmodel", "model",
    "msgpack", "npy", "npz", "onnx", "ot", "parquet", "pb", "pickle", "pkl", "pt", "pth", "rar",
    "safetensors", "tar.*", "tar", "tflite", "tgz", "wasm", "xz", "zip", "zst",
]  # fmt: skip
DEFAULT_GITATTRIBUTES = (
    "".join(f"*.{ext} filter=lfs diff=lfs merge=lfs -text\n" for ext in _LFS_EXTENSIONS)
    + "saved_model/**/* filter=lfs diff=lfs merge=lfs -text\n"
    + "*tfevents* filter=lfs diff=lfs merge=lfs -text\n"
)


def check_repo_id(repo_id: str) -> str:
    """`repo_id` if it is `namespace/name` with Hub-valid parts, else `InvalidInput`."""
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(_NAME.match(p) for p in parts) or parts[1].endswith(".git"):
        raise InvalidInput(f"Invalid repo id {repo_id!r}: expected 'namespace/name'")
    return repo_id


def check_path(path: str) -> str:
    """A file path inside a repo, or `InvalidInput` (absolute, `..`, empty parts, `.git`)."""
    parts = path.split("/")
    if not path or any(p in ("", ".", "..") for p in parts) or parts[0] == ".git":
        raise InvalidInput(f"Invalid path in repo: {path!r}")
    return path


def lfs_patterns(gitattributes: str) -> list[str]:
    """The path patterns that a `.gitattributes` text stores with LFS (`filter=lfs`)."""
    patterns = []
    for line in gitattributes.splitlines():
        fields = line.split()
        if len(fields) >= 2 and not fields[0].startswith("#") and "filter=lfs" in fields[1:]:
            patterns.append(fields[0])
    return patterns


def wants_lfs(path: str, size: int, sample: bytes, patterns: list[str]) -> bool:
    """Whether the Hub would store this file with LFS: matched by `.gitattributes`,
    larger than 10 MB, or binary (a NUL byte or invalid UTF-8 in its first 512 bytes)."""
    if size > LFS_SIZE_THRESHOLD or b"\0" in sample:
        return True
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(sample) - 3:  # not just a character cut at the sample's end
            return True
    name = path.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(path if "/" in p else name, p) for p in patterns)


def check_tree(tree: dict[str, object]) -> None:
    """No path may be both a file and a folder (else `InvalidInput`)."""
    files = set(tree)
    for path in tree:
        parts = path.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in files:
                raise InvalidInput(f"{'/'.join(parts[:i])!r} is a file, cannot hold {path!r}")
