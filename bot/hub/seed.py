"""Uploading a plain folder as a repo: how the demo and tests put a base model on a Hub."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import HfApi

from bot.hub.plan import changed_files, local_files
from bot.hub.remote import read_state
from bot.hub.retry import HubCaller


def seed_repo(api: HfApi, repo_id: str, folder: Path, *, private: bool = False) -> str:
    """Create `repo_id` if needed and upload `folder` to it; return the head commit id.

    A folder the repo already holds is not uploaded again: no request for an empty commit.
    """
    calls = HubCaller.for_api(api, repo_id, None)
    calls("create repo", api.create_repo, repo_id, private=private, exist_ok=True)
    state = read_state(api, repo_id, calls)
    if state.head and not changed_files(local_files(folder), state):
        return state.head
    info = calls(
        "upload folder",
        api.upload_folder,
        repo_id=repo_id,
        folder_path=str(folder),
        commit_message="hubbot: seed base model",
    )
    return str(info.oid)
