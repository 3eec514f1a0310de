"""Publishing a staged variant folder, or a re-rendered card, as one commit.

Each publish reads the remote head and file ids, commits exactly the files whose content
differs (plus deletions of files we published before and no longer produce) with
`parent_commit` set to that head, so a commit either lands whole on the head we planned
against or not at all. A 412 (someone committed in between, or our own commit landed but
its answer was lost) re-reads the remote and re-plans once. Every call runs under a
`RetryPolicy`.

Example:
    >>> api = connect(endpoint=manifest.spec.hub.endpoint)                  # doctest: +SKIP
    >>> result = publish_folder(api, "org/model", Path("out/general-4"),
    ...                         private=False, message="Publish general-4")   # doctest: +SKIP
    >>> result.action, result.commit, result.uploaded                     # doctest: +SKIP
    (<Action.CARD_ONLY: 'card-only'>, '9b0e...', ('README.md', 'hubbot.json'))
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from pathlib import Path

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
from huggingface_hub.errors import HfHubHTTPError

from bot import __version__
from bot.errors import HubbotError, InputError
from bot.hub.plan import (
    Action,
    Changes,
    changed_files,
    classify,
    is_hidden,
    is_picture,
    local_files,
    stale_files,
    undecided_files,
)
from bot.hub.remote import RemoteState, read_record, read_state
from bot.hub.retry import HubCaller, HubConflictError, HubError, RetryPolicy
from bot.provenance import FILENAME, Provenance

Render = Callable[[Provenance], dict[str, bytes]]


class MissingProvenanceError(HubError):
    """The repo is missing, or its `hubbot.json` is absent or unreadable: no card to render."""


@dataclass(frozen=True)
class PublishResult:
    """What one publish did (or, with `plan_only`, would do).

    `commit` is the commit made (None when none was needed or only planned); `head` the
    remote head afterwards. `attempts` counts Hub calls, retries included.
    """

    repo_id: str
    action: Action
    commit: str | None
    head: str | None
    uploaded: tuple[str, ...]
    deleted: tuple[str, ...]
    bytes_uploaded: int
    attempts: int
    retries: int
    replanned: bool = False
    collections: tuple[str, ...] = ()


@dataclass(frozen=True)
class _PendingCommit:
    state: RemoteState
    changes: Changes
    action: Action


def connect(endpoint: str | None = None, token: str | None = None) -> HfApi:
    """An `HfApi` for `HF_ENDPOINT` (else `endpoint`, else the Hub).

    Without `token`, `HfApi` resolves one itself (`HF_TOKEN`, else the saved login).
    """
    return HfApi(
        endpoint=os.environ.get("HF_ENDPOINT") or endpoint,
        token=token,
        library_name="hubbot",
        library_version=__version__,
    )


def publish_folder(
    api: HfApi,
    repo_id: str,
    folder: Path,
    *,
    private: bool,
    collections: Collection[str] = (),
    message: str,
    delete_stale: bool = True,
    plan_only: bool = False,
    policy: RetryPolicy | None = None,
) -> PublishResult:
    """Make `repo_id` hold exactly what `folder` holds, in at most one commit.

    Creates the repo (with `private`) if missing and adds it to the `collections` (titles,
    created in the repo's namespace when missing). Files we did not publish stay.
    """
    desired = local_files(folder) if folder.is_dir() else {}
    if FILENAME not in desired:
        raise InputError(f"{folder}: not a staged variant folder (it has no {FILENAME})")
    calls = HubCaller.for_api(api, repo_id, policy)
    created = False

    def draft() -> _PendingCommit:
        nonlocal created
        state = read_state(api, repo_id, calls)
        if not state.exists and not plan_only:
            calls("create the repo", api.create_repo, repo_id, private=private, exist_ok=True)
            created = True
            state = read_state(api, repo_id, calls)
        deletions: list[str] = []
        if delete_stale:
            published: set[str] = set()
            if undecided_files(desired, state):
                remote = read_record(api, repo_id, calls, revision=state.head)
                published = set(remote.record.files) if remote.record else set()
            deletions = stale_files(desired, state, published)
        changes = Changes(tuple(changed_files(desired, state)), tuple(deletions))
        action = Action.CREATE if created else classify(changes, state)
        return _PendingCommit(state, changes, action)

    try:
        result = _commit(api, repo_id, calls, draft, message=message, plan_only=plan_only)
    except HfHubHTTPError as exc:
        raise calls.error(calls.doing, exc) from None
    if collections and not plan_only:
        try:
            slugs = ensure_collections(api, repo_id, collections, private=private, policy=policy)
        except HubbotError as exc:
            landed = f"commit {result.commit[:12]} landed" if result.commit else "nothing changed"
            raise HubError(
                repo_id, f"{landed}, but {exc}; the next publish adds it to its collections"
            ) from None
        result = _replace(result, calls, collections=slugs)
    return result


def ensure_collections(
    api: HfApi,
    repo_id: str,
    titles: Collection[str],
    *,
    private: bool,
    policy: RetryPolicy | None = None,
) -> tuple[str, ...]:
    """Put `repo_id` in each titled collection of its namespace (one request when it is)."""
    calls = HubCaller.for_api(api, repo_id, policy)
    try:
        return _add_to_collections(api, repo_id, list(titles), private, calls)
    except HfHubHTTPError as exc:
        raise calls.error(calls.doing, exc) from None


def regenerate_card(
    api: HfApi,
    repo_id: str,
    render: Render,
    *,
    message: str,
    delete_stale: bool = True,
    plan_only: bool = False,
    policy: RetryPolicy | None = None,
) -> PublishResult:
    """Re-render a published card from the repo's `hubbot.json`; commit only what changed.

    `render` returns the card files (`README.md`, pictures) by path. No weights are read or
    written. Pictures the render no longer produces are deleted with `delete_stale`.
    Raises `MissingProvenanceError` when the repo or a readable `hubbot.json` is missing.
    """
    calls = HubCaller.for_api(api, repo_id, policy)

    def draft() -> _PendingCommit:
        state = read_state(api, repo_id, calls)
        if not state.exists:
            raise MissingProvenanceError(repo_id, "the repo does not exist")
        if FILENAME not in state.files:
            raise MissingProvenanceError(repo_id, f"the repo has no {FILENAME}")
        remote = read_record(api, repo_id, calls, revision=state.head)
        if remote.record is None:
            raise MissingProvenanceError(repo_id, remote.problem or f"no {FILENAME}")
        rendered = render(remote.record)
        deletions = [
            p for p in state.files if is_picture(p) and not is_hidden(p) and p not in rendered
        ]
        changes = Changes(
            tuple(changed_files(rendered, state)),
            tuple(sorted(deletions)) if delete_stale else (),
        )
        return _PendingCommit(state, changes, Action.NO_OP if changes.empty else Action.CARD_ONLY)

    try:
        return _commit(api, repo_id, calls, draft, message=message, plan_only=plan_only)
    except HfHubHTTPError as exc:
        raise calls.error(calls.doing, exc) from None


def _commit(
    api: HfApi,
    repo_id: str,
    calls: HubCaller,
    draft: Callable[[], _PendingCommit],
    *,
    message: str,
    plan_only: bool,
) -> PublishResult:
    """Plan, then commit the plan on the head it was made against; re-plan once on a 412."""
    plan = draft()
    if plan_only or plan.changes.empty:
        return _result(repo_id, plan, calls, commit=None, head=plan.state.head)
    for replanned in (False, True):
        operations = _operations(plan.changes)
        try:
            info = calls(
                "commit",
                api.create_commit,
                repo_id,
                operations=operations,
                commit_message=message,
                parent_commit=plan.state.head,
            )
        except HfHubHTTPError as exc:
            if exc.response is None or exc.response.status_code != 412:
                raise
            if replanned:
                raise HubConflictError(
                    repo_id,
                    "the repo kept changing while we committed (HTTP 412 twice); "
                    "nothing was published, run again",
                    412,
                ) from None
            plan = draft()
            if plan.changes.empty:
                return _result(
                    repo_id, plan, calls, commit=None, head=plan.state.head, replanned=True
                )
            continue
        except ValueError as exc:  # the Hub rejected README.md's metadata
            raise HubError(repo_id, f"commit refused: {exc}") from None
        return _result(repo_id, plan, calls, commit=info.oid, head=info.oid, replanned=replanned)
    raise AssertionError("unreachable")


def _operations(changes: Changes) -> list[CommitOperationAdd | CommitOperationDelete]:
    ops: list[CommitOperationAdd | CommitOperationDelete] = [
        CommitOperationAdd(
            path_in_repo=u.path,
            path_or_fileobj=str(u.content) if isinstance(u.content, Path) else u.content,
        )
        for u in changes.uploads
    ]
    ops += [CommitOperationDelete(path_in_repo=p) for p in changes.deletions]
    return ops


def _add_to_collections(
    api: HfApi, repo_id: str, titles: list[str], private: bool, calls: HubCaller
) -> tuple[str, ...]:
    """Put `repo_id` in each titled collection of its namespace; return their slugs."""
    namespace = repo_id.split("/")[0]
    have = calls(
        "list collections",
        lambda: list(api.list_collections(owner=namespace, item=f"models/{repo_id}")),
    )
    slugs = {c.title: c.slug for c in have if c.title in titles}
    for title in titles:
        if title in slugs:
            continue
        found = calls(
            f"create collection {title!r}",
            api.create_collection,
            title,
            namespace=namespace,
            private=private,
            exists_ok=True,
        )
        calls(
            f"add to collection {found.slug}",
            api.add_collection_item,
            found.slug,
            repo_id,
            "model",
            exists_ok=True,
        )
        slugs[title] = found.slug
    return tuple(slugs[t] for t in titles)


def _result(
    repo_id: str,
    plan: _PendingCommit,
    calls: HubCaller,
    *,
    commit: str | None,
    head: str | None,
    replanned: bool = False,
) -> PublishResult:
    changes = plan.changes
    return PublishResult(
        repo_id=repo_id,
        action=plan.action,
        commit=commit,
        head=head,
        uploaded=tuple(u.path for u in changes.uploads),
        deleted=changes.deletions,
        bytes_uploaded=sum(u.size for u in changes.uploads),
        attempts=calls.attempts,
        retries=calls.retries,
        replanned=replanned,
    )


def _replace(result: PublishResult, calls: HubCaller, **fields: object) -> PublishResult:
    return replace(result, attempts=calls.attempts, retries=calls.retries, **fields)
