"""Plans against the remote: what a variant needs, and which files differ from the Hub's.

`plan_variant` compares the digests a variant should have with those in the repo's
`hubbot.json` (one request) and says `create`, `rebuild`, `card-only` or `no-op`.
`changed_files` and `stale_files` compare content with a `RemoteState`: a file is sent when
its git blob sha1 (regular files) or sha256 (LFS files) differs from the remote one.

Example:
    >>> desired = Digests(weights="ab..", card="cd..")          # doctest: +SKIP
    >>> plan = plan_variant(api, "org/model", desired)          # doctest: +SKIP
    >>> plan.action, plan.reason                                # doctest: +SKIP
    (<Action.CARD_ONLY: 'card-only'>, 'card digest differs')
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path, PurePosixPath

from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

from bot.blobs import Content, git_blob_sha1, sha256_of
from bot.hub.remote import RemoteRecord, RemoteState, read_record
from bot.hub.retry import HubCaller, HubError, RetryPolicy
from bot.provenance import FILENAME, Digests, Provenance

CARD = "README.md"
PICTURE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp"})


class Action(StrEnum):
    """What a repo needs to match its variant."""

    CREATE = "create"
    REBUILD = "rebuild"
    CARD_ONLY = "card-only"
    NO_OP = "no-op"
    HELD = "held"  # below the manifest's quality floor: not published, nothing deleted


@dataclass(frozen=True)
class Plan:
    """A variant's action, why, and the remote commit it was decided against."""

    repo_id: str
    action: Action
    reason: str
    revision: str | None
    remote: Digests | None
    record: Provenance | None = None


@dataclass(frozen=True)
class Upload:
    """One file to send: its path in the repo, its content (a file or bytes), its size."""

    path: str
    content: Content
    size: int


@dataclass(frozen=True)
class Changes:
    """The content of one commit: files to send and files to delete."""

    uploads: tuple[Upload, ...] = ()
    deletions: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.uploads and not self.deletions

    @property
    def paths(self) -> list[str]:
        return [u.path for u in self.uploads] + list(self.deletions)


def plan_variant(
    api: HfApi, repo_id: str, desired: Digests, *, policy: RetryPolicy | None = None
) -> Plan:
    """Decide what `repo_id` needs to carry `desired` (one request: its `hubbot.json`)."""
    calls = HubCaller.for_api(api, repo_id, policy)
    try:
        remote = read_record(api, repo_id, calls)
    except HfHubHTTPError as exc:
        raise calls.error(f"download {FILENAME}", exc) from None
    unreadable = remote.problem and remote.problem.startswith(f"{FILENAME} is unreadable")
    if remote.record is None and unreadable:
        raise HubError(
            repo_id,
            f"{remote.problem}; hubbot will not overwrite a repo whose record it cannot "
            f"read (fix or delete {FILENAME} there)",
        )
    return replace(decide(remote, desired), record=remote.record)


def decide(remote: RemoteRecord, desired: Digests) -> Plan:
    """The action for a repo whose `hubbot.json` read gave `remote`."""
    repo_id, revision = remote.repo_id, remote.revision
    if remote.record is None:
        return Plan(repo_id, Action.CREATE, remote.problem or "no record", revision, None)
    digests = remote.record.digests
    if digests is None:
        return Plan(repo_id, Action.CREATE, f"{FILENAME} has no digests", revision, None)
    if digests.weights != desired.weights:
        reason = f"weights digest differs ({digests.weights[:12]} -> {desired.weights[:12]})"
        return Plan(repo_id, Action.REBUILD, reason, revision, digests)
    if digests.card != desired.card:
        reason = f"card digest differs ({digests.card[:12]} -> {desired.card[:12]})"
        return Plan(repo_id, Action.CARD_ONLY, reason, revision, digests)
    return Plan(repo_id, Action.NO_OP, "digests match", revision, digests)


def classify(changes: Changes, remote: RemoteState) -> Action:
    """The action a commit of `changes` amounts to."""
    if not remote.exists or FILENAME not in remote.files:
        return Action.CREATE
    if changes.empty:
        return Action.NO_OP
    if all(is_card_file(p) for p in changes.paths):
        return Action.CARD_ONLY
    return Action.REBUILD


# ---------------------------------------------------------------- file comparison


def is_hidden(path: str) -> bool:
    """Dotfiles and dot-folders (`.gitattributes`, `.cache/`): never published or deleted."""
    return any(part.startswith(".") for part in PurePosixPath(path).parts)


def is_picture(path: str) -> bool:
    return PurePosixPath(path).suffix.lower() in PICTURE_SUFFIXES


def is_card_file(path: str) -> bool:
    """Files a card render produces: README.md, hubbot.json and pictures."""
    return path in (CARD, FILENAME) or is_picture(path)


def local_files(folder: Path) -> dict[str, Path]:
    """Every file under `folder` by its repo path (POSIX), hidden ones left out."""
    files = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and not is_hidden(rel):
            files[rel] = path
    return files


def changed_files(desired: Mapping[str, Content], remote: RemoteState) -> list[Upload]:
    """The files of `desired` whose content the remote lacks."""
    uploads = []
    for path, content in sorted(desired.items()):
        size = content.stat().st_size if isinstance(content, Path) else len(content)
        have = remote.files.get(path)
        if have is not None and have.size == size:
            if have.sha256 is not None:
                same = sha256_of(content) == have.sha256
            else:
                same = have.blob_id is not None and git_blob_sha1(content) == have.blob_id
            if same:
                continue
        uploads.append(Upload(path, content, size))
    return uploads


def stale_files(desired: Iterable[str], remote: RemoteState, published: Iterable[str]) -> list[str]:
    """Remote files we published (card files, or listed in `published`) that are no longer wanted.

    Files we did not publish (`.gitattributes`, anything added by hand) are never listed.
    """
    keep, ours = set(desired), set(published)
    return sorted(
        p
        for p in remote.files
        if p not in keep and not is_hidden(p) and (is_card_file(p) or p in ours)
    )


def undecided_files(desired: Iterable[str], remote: RemoteState) -> list[str]:
    """Remote-only files whose fate depends on the remote `hubbot.json`'s file list."""
    keep = set(desired)
    return sorted(
        p for p in remote.files if p not in keep and not is_hidden(p) and not is_card_file(p)
    )
