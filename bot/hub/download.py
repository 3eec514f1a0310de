"""Fetching a base model: a local folder as is, or a pinned snapshot from the Hub."""

from __future__ import annotations

from pathlib import Path

from bot.errors import HubbotError, InputError

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


def fetch_base(
    *,
    repo: str | None,
    path: Path | None,
    revision: str,
    endpoint: str | None = None,
    token: str | None = None,
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

    try:
        folder = snapshot_download(
            repo_id=repo,
            revision=revision,
            allow_patterns=BASE_FILES,
            endpoint=endpoint,
            token=token,
        )
    except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
        raise InputError(f"base model {repo}@{revision}: {_first_line(exc)}") from None
    except (HfHubHTTPError, OSError) as exc:
        raise HubbotError(
            f"cannot download base model {repo}@{revision}: {_first_line(exc)}"
        ) from None
    return Path(folder)


def _first_line(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]
