"""What a repo on the Hub holds now: its head commit, its files' ids, its `hubbot.json`.

Two reads, one request each, shared by `plan` and `publish`:

- `read_state`: the head commit and every file's size and ids (git blob sha1; sha256 for
  LFS files) in one `model_info(files_metadata=True)`, so both come from the same commit;
- `read_record`: the repo's `hubbot.json`, in one GET of `resolve/<revision>/hubbot.json`
  (the response also names the commit it was read at).

Example:
    >>> state = read_state(api, "org/model", HubCaller("org/model"))     # doctest: +SKIP
    >>> state.head, sorted(state.files)[:2]                               # doctest: +SKIP
    ('3f1c...', ['.gitattributes', 'README.md'])
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx2
from huggingface_hub import HfApi, hf_hub_url
from huggingface_hub.errors import (
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

from bot.hub.retry import HubCaller
from bot.provenance import FILENAME, Provenance


@dataclass(frozen=True)
class RemoteFile:
    """One file at the remote head. `sha256` is set for LFS files only."""

    path: str
    size: int | None
    blob_id: str | None
    sha256: str | None = None


@dataclass(frozen=True)
class RemoteState:
    """A repo's head and files; `head` is None when the repo does not exist (or is empty)."""

    repo_id: str
    exists: bool
    head: str | None = None
    files: dict[str, RemoteFile] = field(default_factory=dict)


@dataclass(frozen=True)
class RemoteRecord:
    """The repo's `hubbot.json`, or `problem` saying why there is none to read."""

    repo_id: str
    record: Provenance | None
    revision: str | None
    repo_exists: bool
    problem: str | None = None


def read_state(api: HfApi, repo_id: str, calls: HubCaller) -> RemoteState:
    """Head commit and file ids of `repo_id` (one request)."""
    try:
        info = calls("read the repo", api.model_info, repo_id, files_metadata=True)
    except RepositoryNotFoundError:
        return RemoteState(repo_id, exists=False)
    except RevisionNotFoundError:
        return RemoteState(repo_id, exists=True)
    files = {
        s.rfilename: RemoteFile(
            path=s.rfilename,
            size=s.size,
            blob_id=s.blob_id,
            sha256=s.lfs.sha256 if s.lfs is not None else None,
        )
        for s in info.siblings or []
    }
    return RemoteState(repo_id, exists=True, head=info.sha, files=files)


def read_record(
    api: HfApi, repo_id: str, calls: HubCaller, revision: str | None = None
) -> RemoteRecord:
    """The `hubbot.json` of `repo_id` at `revision` (default: the main branch), one request."""
    url = hf_hub_url(repo_id, FILENAME, revision=revision, endpoint=api.endpoint)
    headers = build_hf_headers(
        token=api.token,
        library_name=api.library_name,
        library_version=api.library_version,
        user_agent=api.user_agent,
        headers=api.headers,
    )
    try:
        response = calls(f"download {FILENAME}", _get, url, headers)
    except RepositoryNotFoundError:
        return RemoteRecord(repo_id, None, revision, False, "the repo does not exist")
    except (RemoteEntryNotFoundError, RevisionNotFoundError):
        return RemoteRecord(repo_id, None, revision, True, f"the repo has no {FILENAME}")
    revision = revision or response.headers.get("X-Repo-Commit")
    try:
        record = Provenance.model_validate_json(response.content)
    except ValueError as exc:
        first = " ".join(str(exc).splitlines()[:2])
        return RemoteRecord(repo_id, None, revision, True, f"{FILENAME} is unreadable: {first}")
    return RemoteRecord(repo_id, record, revision, True)


def _get(url: str, headers: dict[str, str]) -> httpx2.Response:
    response = get_session().get(url, headers=headers, follow_redirects=True)
    hf_raise_for_status(response)
    return response
