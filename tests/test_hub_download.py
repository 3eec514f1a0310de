"""Fetching the base model: a fresh pinned download, or a word on where it came from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from bot.errors import HubbotError, InputError
from bot.hub.download import fetch_base
from bot.hub.retry import RetryPolicy

REPO = "org/tiny-base"
NO_WAIT = RetryPolicy(max_attempts=2, sleep=lambda seconds: None)


@pytest.fixture
def seeded(hub_api: HfApi, tmp_path: Path) -> str:
    folder = tmp_path / "base"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt_oss"}))
    (folder / "tokenizer.json").write_text("{}")
    (folder / "notes.txt").write_text("not a base file")
    hub_api.create_repo(REPO)
    return hub_api.upload_folder(repo_id=REPO, folder_path=folder).oid


def _fetch(revision: str, notes: list[str], endpoint: str) -> Path:
    return fetch_base(
        repo=REPO, path=None, revision=revision, endpoint=endpoint, say=notes.append, policy=NO_WAIT
    )


def test_a_pinned_commit_downloads_quietly_and_only_base_files(hub_server, seeded: str):
    notes: list[str] = []
    folder = _fetch(seeded, notes, hub_server.endpoint)
    assert notes == []
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "tokenizer.json"]
    assert folder.name == seeded


def test_a_branch_is_read_at_a_commit_and_said_to_be_unpinned(hub_server, seeded: str):
    notes: list[str] = []
    folder = _fetch("main", notes, hub_server.endpoint)
    assert folder.name == seeded
    assert notes == [
        f"base model {REPO}@main is not pinned: read at commit {seeded[:12]} "
        "(pin base.revision to a commit)"
    ]


def test_an_unreachable_hub_falls_back_to_the_cache_and_says_so(hub_server, seeded: str):
    endpoint = hub_server.endpoint
    first = _fetch("main", [], endpoint)
    hub_server.stop()
    notes: list[str] = []
    assert _fetch("main", notes, endpoint) == first
    assert len(notes) == 1
    assert "the Hub is unreachable, using the snapshot cached at" in notes[0]
    assert str(first) in notes[0] and endpoint in notes[0]


def test_an_unreachable_hub_with_nothing_cached_fails_naming_it(hub_server, seeded: str):
    endpoint = hub_server.endpoint
    hub_server.stop()
    with pytest.raises(HubbotError) as caught:
        _fetch("main", [], endpoint)
    assert f"base model {REPO}@main" in str(caught.value) and endpoint in str(caught.value)
    assert "HF_ENDPOINT" in str(caught.value)


def test_a_missing_base_is_bad_input_naming_the_hub(hub_server):
    with pytest.raises(InputError, match=f"base model {REPO}@main: no such repo on ") as caught:
        _fetch("main", [], hub_server.endpoint)
    assert hub_server.endpoint in str(caught.value) and "HF_ENDPOINT" in str(caught.value)


def test_a_missing_revision_is_bad_input(hub_server, seeded: str):
    with pytest.raises(InputError, match="the repo has no revision v9"):
        _fetch("v9", [], hub_server.endpoint)
