"""Folders hubbot replaces or cleans: only what it can prove it wrote.

A folder is hubbot's when its `hubbot.json` is a valid provenance record and every other
file in it is one that record lists, with the same sha256 (an empty folder holds nothing
to lose). Anything else at a destination (a user's file, a file changed since, a link, an
empty sub-folder) is refused with `InputError` naming what is in the way.

New output is written into a temporary sibling (`.NAME.partial-PID`, marked as ours by a
`.hubbot-partial` file) and exchanged with the destination in one step where Linux offers
it (`renameat2(RENAME_EXCHANGE)`), so a kill at any point leaves either the old or the new
output at the destination. Elsewhere two renames are used, and a run that died between
them is undone by the next run. Temporary folders of dead runs are removed by the next run
when they carry the mark, or prove to be hubbot's.

Example:
    >>> claim = claim_destination(Path("out/code-16"))     # doctest: +SKIP
    >>> tmp = new_partial(claim.path)                      # doctest: +SKIP
    >>> ...  # write into tmp                              # doctest: +SKIP
    >>> replace_folder(tmp, claim)                         # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bot.errors import HubbotError, InputError
from bot.inputs import read_input_file
from bot.provenance import Provenance

PROVENANCE = "hubbot.json"
MARK = ".hubbot-partial"
"""In a temporary folder hubbot made: everything in it is hubbot's."""
WORKDIR_MARK = ".hubbot-workdir"
"""In a work folder hubbot made (demo, release scratch)."""

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_NO_EXCHANGE = {errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV}
_SHOWN = 8
_Stamp = tuple[int, int, int]


@dataclass(frozen=True)
class Claim:
    """A destination found replaceable: absent, empty, or hubbot's (files as then seen)."""

    path: Path
    seen: dict[str, _Stamp] | None
    """Relative path -> (size, mtime_ns, inode) of what was there; None when nothing was."""


# ---------------------------------------------------------------- checks


def check_disjoint(src: Path, dst: Path) -> None:
    """Refuse a destination that is, holds, or lies inside the source folder."""
    s, d = Path(src).resolve(), Path(dst).resolve()
    if s == d:
        raise InputError(f"{dst}: the destination is the source")
    if s.is_relative_to(d):
        raise InputError(
            f"{dst}: the destination holds the source {src}; replacing it would delete the source"
        )
    if d.is_relative_to(s):
        raise InputError(f"{dst}: the destination lies inside the source {src}; pick another")


def claim_destination(dst: Path) -> Claim:
    """Check that `dst` may be replaced; `InputError` saying what is in the way if not."""
    dst = Path(os.path.abspath(dst))  # "." and "out/.." name their folder, not ""
    if not dst.name:
        raise InputError(f"{dst}: a filesystem root is never a destination")
    if dst.is_symlink():
        target = os.readlink(dst)
        state = "" if dst.exists() else ", which does not exist"
        raise InputError(
            f"{dst}: is a symbolic link (to {target}{state}); hubbot replaces only folders it "
            "wrote: remove the link or pick another destination"
        )
    _check_parents(dst)
    if not dst.exists():
        return Claim(dst, None)
    if not dst.is_dir():
        raise InputError(f"{dst}: exists and is a file, not a folder hubbot wrote")
    problems = foreign_entries(dst)
    if problems:
        raise InputError(_refusal(dst, problems))
    return Claim(dst, _stamps(dst))


def foreign_entries(folder: Path) -> list[str]:
    """What in `folder` hubbot cannot prove it wrote, one line each (empty: all of it is)."""
    entries = _entries(folder)
    if not entries:
        return []
    listed = _listed_files(folder)
    if isinstance(listed, str):
        return [listed, *(f"{rel}: not written by hubbot" for rel in sorted(entries))]
    problems = []
    for rel, kind in sorted(entries.items()):
        if rel in (PROVENANCE, MARK):
            continue
        if kind == "link":
            problems.append(f"{rel}: a symbolic link hubbot did not make")
        elif kind == "dir":
            if not any(f.startswith(f"{rel}/") for f in listed):
                problems.append(f"{rel}/: a folder hubbot did not make")
        elif kind != "file":
            problems.append(f"{rel}: not a regular file")
        elif rel not in listed:
            problems.append(f"{rel}: not written by hubbot (not listed in {PROVENANCE})")
        elif _sha256(folder / rel) != listed[rel]:
            problems.append(f"{rel}: changed since hubbot wrote it")
    return problems


def _refusal(dst: Path, problems: list[str]) -> str:
    shown = problems[:_SHOWN]
    more = f"\n  ... and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
    what = "exists and is not a hubbot output" if problems[0].startswith("no ") else "not replaced"
    return (
        f"{dst}: {what}: it holds what hubbot did not write, and hubbot replaces only its own "
        "files:\n  " + "\n  ".join(shown) + more + "\nmove those away or pick another destination"
    )


def _check_parents(dst: Path) -> None:
    """The nearest existing ancestor of `dst` must be a folder (so `dst` can be made)."""
    parent = dst.parent
    while not os.path.lexists(parent) and parent != parent.parent:
        parent = parent.parent
    if parent.is_symlink() and not parent.exists():
        raise InputError(f"{dst}: cannot be created: {parent} is a link to nothing")
    if not parent.is_dir():
        raise InputError(f"{dst}: cannot be created: {parent} is a file, not a folder")


def _listed_files(folder: Path) -> dict[str, str] | str:
    """Files `folder/hubbot.json` lists with their sha256, or why it lists none."""

    path = folder / PROVENANCE
    if not path.is_file() or path.is_symlink():
        return f"no {PROVENANCE}: not a hubbot output"
    try:
        record = Provenance.model_validate_json(read_input_file(path, limit=64 * 1024 * 1024))
    except (InputError, ValueError):
        return f"{PROVENANCE}: not a provenance record hubbot wrote"
    return dict(record.files)


def _entries(folder: Path) -> dict[str, str]:
    """Every entry under `folder` (not following links): relative path -> file|dir|link|other."""
    found: dict[str, str] = {}
    for root, dirs, files in os.walk(folder):
        base = Path(root)
        for name in [*dirs, *files]:
            path = base / name
            rel = path.relative_to(folder).as_posix()
            if path.is_symlink():
                found[rel] = "link"
            elif path.is_dir():
                found[rel] = "dir"
            else:
                found[rel] = "file" if path.is_file() else "other"
        dirs[:] = [d for d in dirs if not (base / d).is_symlink()]
    return found


def _stamps(folder: Path) -> dict[str, _Stamp]:
    out = {}
    for rel in _entries(folder):
        st = os.lstat(folder / rel)
        out[rel] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(16 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------- replacing


def new_partial(dst: Path, kind: str = "partial") -> Path:
    """A fresh, marked temporary folder beside `dst`, after cleaning up dead runs' ones."""
    sweep_stale(dst)
    tmp = dst.parent / f".{dst.name}.{kind}-{os.getpid()}"
    if os.path.lexists(tmp):
        remove_marked(tmp)
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        _write_mark(tmp / MARK)
    except OSError as exc:
        raise InputError(f"{dst}: cannot write beside it: {exc.strerror}") from None
    return tmp


def replace_folder(new: Path, claim: Claim) -> None:
    """Put complete folder `new` at the claimed destination; what was there is removed.

    The destination is checked again first: anything that appeared or changed since the
    claim is refused. `new` loses its mark.
    """
    dst = claim.path
    if os.path.lexists(dst) and (not dst.is_dir() or _stamps(dst) != claim.seen):
        claim_destination(dst)  # something appeared or changed since the claim
    with contextlib.suppress(FileNotFoundError):
        (new / MARK).unlink()
    if not os.path.lexists(dst):
        os.rename(new, dst)
        return
    if _exchange(new, dst):
        remove_owned(new)
        return
    old = dst.parent / f".{dst.name}.old-{os.getpid()}"
    os.rename(dst, old)
    os.rename(new, dst)
    remove_owned(old)


def remove_owned(folder: Path) -> None:
    """Remove the files hubbot wrote in `folder`, then the folder if nothing else is left."""
    listed = _listed_files(folder)
    names = [PROVENANCE, MARK, *(listed if isinstance(listed, dict) else {})]
    for rel in names:
        path = folder / rel
        if path.is_file() and not path.is_symlink():
            path.unlink()
    for root, dirs, _ in sorted(os.walk(folder, topdown=False), key=lambda w: -len(w[0])):
        for name in dirs:
            with contextlib.suppress(OSError):
                (Path(root) / name).rmdir()
    with contextlib.suppress(OSError):
        folder.rmdir()


def remove_marked(folder: Path) -> None:
    """Remove a temporary folder hubbot made here (it has the mark) or a hubbot output;
    anything else is left alone."""
    if folder.is_dir() and not folder.is_symlink() and _mark_is_from_here(folder / MARK):
        shutil.rmtree(folder, ignore_errors=True)
    elif folder.is_dir() and not folder.is_symlink() and not foreign_entries(folder):
        remove_owned(folder)


_STALE = re.compile(r"^\.(?P<name>.+)\.(?P<kind>partial|build|old)-(?P<pid>\d+)$")


def sweep_stale(dst: Path) -> None:
    """Finish what dead runs for `dst` left: restore a moved-aside output, remove temp folders."""
    if not dst.parent.is_dir():
        return
    for path in sorted(dst.parent.glob(f".{glob_escape(dst.name)}.*-*")):
        match = _STALE.match(path.name)
        if not match or match["name"] != dst.name or _alive(int(match["pid"])):
            continue
        if match["kind"] == "old" and not os.path.lexists(dst) and not foreign_entries(path):
            os.rename(path, dst)  # a run died between its two renames: put the output back
        else:
            remove_marked(path)


def glob_escape(name: str) -> str:
    return re.sub(r"([*?[])", r"[\1]", name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_mark(path: Path) -> None:
    path.write_text(f"{os.getpid()} {socket.gethostname()}\n", encoding="utf-8")


def _mark_is_from_here(path: Path) -> bool:
    """Whether a mark was written on this host (a pid means nothing on another one)."""
    try:
        _, host = path.read_text(encoding="utf-8").split()
    except (OSError, ValueError):
        return False
    return host == socket.gethostname()


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux `renameat2`); False where that is not available."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    renameat2.argtypes += [ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in _NO_EXCHANGE:
        return False
    raise HubbotError(f"{b}: cannot put the new output in place: {os.strerror(err)}")


# ---------------------------------------------------------------- work folders


@contextlib.contextmanager
def scratch_folder(parent: Path | None, prefix: str) -> Iterator[Path]:
    """A marked temporary folder under `parent` (default: the system's), removed on exit.

    Folders with `prefix` that dead runs on this host left behind (killed, so no cleanup
    ran) are removed first.
    """
    where = Path(parent) if parent is not None else Path(tempfile.gettempdir())
    where.mkdir(parents=True, exist_ok=True)
    for path in where.glob(f"{glob_escape(prefix)}-*-*"):
        pid = path.name[len(prefix) + 1 :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)) and _mark_is_from_here(path / MARK):
            shutil.rmtree(path, ignore_errors=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{prefix}-{os.getpid()}-", dir=where))
    _write_mark(folder / MARK)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def claim_workdir(path: Path, what: str) -> None:
    """Make `path` a hubbot work folder: new, empty, or one hubbot made before.

    A folder that holds anything else is refused: hubbot writes and cleans inside its work
    folders, and nothing of the user's may be in the way.
    """
    path = Path(path)
    if os.path.lexists(path) and not path.is_dir():
        raise InputError(f"{path}: exists and is not a folder; pick another {what} folder")
    _check_parents(path)
    mark = path / WORKDIR_MARK
    if path.is_dir() and not mark.is_file():
        held = sorted(p.name for p in path.iterdir())
        if held:
            shown = ", ".join(held[:_SHOWN]) + (", ..." if len(held) > _SHOWN else "")
            raise InputError(
                f"{path}: exists and is not a hubbot {what} folder (no {WORKDIR_MARK}); it "
                f"holds {shown}: pick another or an empty folder"
            )
    path.mkdir(parents=True, exist_ok=True)
    if not mark.is_file():
        mark.write_text(f"hubbot {what} folder: hubbot writes and removes files in here\n")
