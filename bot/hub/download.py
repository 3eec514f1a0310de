"""Fetching a base model: a local folder as is, or a snapshot from the Hub, saying which.

The revision is resolved on the Hub first (one `model_info`, under the retry policy), then
exactly that commit is downloaded. Where the base does not come from a fresh download of a
pinned commit, `say` is told so: a branch or tag read at some commit, or a cached snapshot
used because the Hub could not be reached (huggingface_hub would fall back to it silently).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from huggingface_hub.utils import tqdm as hf_tqdm

from bot.errors import HubbotError, InputError
from bot.hub.publish import connect
from bot.hub.retry import HubCaller, HubError, HubUnavailableError, RetryPolicy

# What a pruned repo is made from; the real base repo also holds `original/` and `metal/`
# copies of the weights, which must not be downloaded.
BASE_FILES = [
    "config.json",
    "generation_config.json",
    "model*.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
]
_COMMIT = re.compile(r"[0-9a-f]{40}")


_SAID: set[str] = set()


def _note(text: str) -> None:
    """Print a note on stderr, once per process (a release fetches its base many times)."""
    if text not in _SAID:
        _SAID.add(text)
        print(f"note: {text}", file=sys.stderr)


def fetch_base(
    *,
    repo: str | None,
    path: Path | None,
    revision: str,
    endpoint: str | None = None,
    token: str | None = None,
    say: Callable[[str], None] = _note,
    policy: RetryPolicy | None = None,
) -> Path:
    """The folder holding the base checkpoint; downloads `repo`@`revision` when needed."""
    if path is not None:
        if not (path / "config.json").is_file():
            raise InputError(f"{path}: base model folder has no config.json")
        return path
    assert repo is not None
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    api = connect(endpoint, token)
    name = f"base model {repo}@{revision}"
    calls = HubCaller.for_api(api, repo, policy)
    try:
        commit = calls("resolve the base revision", api.model_info, repo, revision=revision).sha
    except RevisionNotFoundError:
        raise InputError(f"{name}: the repo has no revision {revision} on {api.endpoint}") from None
    except RepositoryNotFoundError:
        raise InputError(
            f"{name}: no such repo on {api.endpoint} (or it is private and the token, if any, "
            "has no access); set HF_ENDPOINT or the manifest's hub.endpoint for another Hub"
        ) from None
    except HfHubHTTPError as exc:
        raise HubbotError(f"cannot download {name}: {calls.error(calls.doing, exc)}") from None
    except HubUnavailableError as exc:
        cached = _cached(repo, revision, token)
        if cached is None:
            raise HubbotError(f"cannot download {name}: {exc}") from None
        say(f"{name}: the Hub is unreachable, using the snapshot cached at {cached} ({exc})")
        return cached
    except HubError as exc:
        raise HubbotError(f"cannot download {name}: {exc}") from None
    try:
        folder = Path(
            snapshot_download(
                repo_id=repo,
                revision=revision,  # a branch keeps its ref in the cache, for offline use
                allow_patterns=BASE_FILES,
                endpoint=api.endpoint,
                token=token,
                tqdm_class=_NoBar,
            )
        )
    except (HfHubHTTPError, OSError) as exc:
        raise HubbotError(f"cannot download {name}: {_first_line(exc)}") from None
    if not _COMMIT.fullmatch(revision):
        read = folder.name if _COMMIT.fullmatch(folder.name) else commit
        pin = "pin base.revision to a commit"
        say(f"{name} is not pinned: read at commit {str(read)[:12]} ({pin})")
    return folder


def _cached(repo: str, revision: str, token: str | None) -> Path | None:
    """The complete cached snapshot of `repo`@`revision`, if there is one."""
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(
            repo_id=repo,
            revision=revision,
            allow_patterns=BASE_FILES,
            token=token,
            local_files_only=True,
        )
    except Exception:  # anything short of a complete snapshot: none to use
        return None
    return Path(folder)


class _NoBar(hf_tqdm):
    """huggingface_hub's progress bar, never shown: the build shows its own progress."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["disable"] = True
        super().__init__(*args, **kwargs)


def _first_line(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]
