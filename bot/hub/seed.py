"""Uploading a plain folder as a repo: how the demo and tests put a base model on a Hub."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import HfApi

from bot.hub.retry import HubCaller


def seed_repo(api: HfApi, repo_id: str, folder: Path, *, private: bool = False) -> str:
    """Create `repo_id` if needed and upload `folder` to it; return the head commit id.

    An upload that changes nothing makes no commit.
    """
    calls = HubCaller.for_api(api, repo_id, None)
    calls("create repo", api.create_repo, repo_id, private=private, exist_ok=True)
    info = calls(
        "upload folder",
        api.upload_folder,
        repo_id=repo_id,
        folder_path=str(folder),
        commit_message="hubbot: seed base model",
    )
    return str(info.oid)
