"""Planning against the remote: actions from digests, and which files differ from the Hub's."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from bot.hub.plan import (
    Action,
    Changes,
    changed_files,
    classify,
    git_blob_sha1,
    local_files,
    plan_variant,
    stale_files,
)
from bot.hub.remote import RemoteFile, RemoteState
from bot.hub.retry import HubError
from bot.provenance import BaseRef, Digests, Provenance, SelectionRecord

REPO = "hubbot-models/plan-test"
DIGESTS = Digests(weights="w" * 64, card="c" * 64)


def make_record(digests: Digests, files: dict[str, str] | None = None) -> Provenance:
    """A small valid `hubbot.json` record with these digests and output files."""
    return Provenance(
        tool_version="0.1.0",
        digests=digests,
        base=BaseRef(repo="openai/gpt-oss-20b", revision="main"),
        output_format="bf16",
        selection=SelectionRecord(
            strategy="top", statistics_source="test", statistics_digest="0" * 64, kept_experts={}
        ),
        files=files or {},
    )


def requests_made(server, before: int) -> int:
    """Requests the server answered since its total was `before`."""
    return server.stats.total - before


def _state(**files: RemoteFile) -> RemoteState:
    return RemoteState("o/r", exists=True, head="0" * 40, files=files)


# ---------------------------------------------------------------- offline


def test_git_blob_ids_match_git():
    # `git hash-object` of an empty file and of "hello\n"
    assert git_blob_sha1(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    assert git_blob_sha1(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_changed_files_compare_blob_ids_and_lfs_sha256(tmp_path: Path):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"\x01" * 100)
    remote = _state(
        **{
            "README.md": RemoteFile("README.md", 6, git_blob_sha1(b"hello\n")),
            "config.json": RemoteFile("config.json", 2, git_blob_sha1(b"{}")),
            "model.safetensors": RemoteFile(
                "model.safetensors", 100, "x", hashlib.sha256(b"\x01" * 100).hexdigest()
            ),
        }
    )
    desired = {
        "README.md": b"hello\n",  # same
        "config.json": b"[]",  # same size, other content
        "model.safetensors": weights,  # same LFS content
        "new.txt": b"new",
    }
    assert [u.path for u in changed_files(desired, remote)] == ["config.json", "new.txt"]
    weights.write_bytes(b"\x02" * 100)
    assert [u.path for u in changed_files(desired, remote)][-1] == "new.txt"
    assert "model.safetensors" in [u.path for u in changed_files(desired, remote)]


def test_stale_files_never_touch_files_we_did_not_publish():
    remote = _state(
        **{
            p: RemoteFile(p, 1, "x")
            for p in [
                ".gitattributes",
                "README.md",
                "hubbot.json",
                "images/old.png",
                "model-00002-of-00002.safetensors",
                "notes-by-hand.md",
            ]
        }
    )
    published = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    desired = ["hubbot.json", "model.safetensors"]
    assert stale_files(desired, remote, published) == [
        "README.md",
        "images/old.png",
        "model-00002-of-00002.safetensors",
    ]


def test_local_files_leave_hidden_files_out(tmp_path: Path):
    (tmp_path / ".cache" / "huggingface").mkdir(parents=True)
    (tmp_path / ".cache" / "huggingface" / "x.lock").write_text("")
    (tmp_path / ".gitattributes").write_text("*.bin filter=lfs\n")
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"png")
    (tmp_path / "config.json").write_text("{}")
    assert list(local_files(tmp_path)) == ["config.json", "images/a.png"]


@pytest.mark.parametrize(
    ("paths", "action"),
    [([], Action.NO_OP), (["README.md", "images/a.png"], Action.CARD_ONLY), (["x"], "rebuild")],
)
def test_classify_by_what_changes(paths: list[str], action: str):
    remote = _state(**{"hubbot.json": RemoteFile("hubbot.json", 1, "x")})
    assert classify(Changes(deletions=tuple(paths)), remote) == action
    assert classify(Changes(), RemoteState("o/r", exists=False)) == Action.CREATE


# ---------------------------------------------------------------- against the local Hub


def _publish_record(api: HfApi, content: bytes) -> None:
    api.create_repo(REPO, exist_ok=True)
    api.upload_file(path_or_fileobj=content, path_in_repo="hubbot.json", repo_id=REPO)


def test_missing_repo_is_create(hub_api: HfApi, hub_server):
    before = hub_server.stats.total
    plan = plan_variant(hub_api, REPO, DIGESTS)
    assert (plan.action, plan.reason) == (Action.CREATE, "the repo does not exist")
    assert requests_made(hub_server, before) <= 2


def test_missing_record_is_create_and_unreadable_one_is_refused(hub_api: HfApi):
    hub_api.create_repo(REPO)
    hub_api.upload_file(path_or_fileobj=b"x", path_in_repo="config.json", repo_id=REPO)
    plan = plan_variant(hub_api, REPO, DIGESTS)
    assert (plan.action, plan.reason) == (Action.CREATE, "the repo has no hubbot.json")

    _publish_record(hub_api, b"{not json")
    with pytest.raises(HubError, match=r"hubbot.json is unreadable.*will not overwrite") as err:
        plan_variant(hub_api, REPO, DIGESTS)
    assert REPO in str(err.value)


@pytest.mark.parametrize(
    ("remote", "action"),
    [
        (Digests(weights="v" * 64, card="c" * 64), Action.REBUILD),
        (Digests(weights="w" * 64, card="d" * 64), Action.CARD_ONLY),
        (DIGESTS, Action.NO_OP),
    ],
)
def test_digests_decide_the_action(
    hub_api: HfApi,
    hub_server,
    remote: Digests,
    action: Action,
):
    _publish_record(hub_api, make_record(remote).dumps().encode())
    before = hub_server.stats.total
    plan = plan_variant(hub_api, REPO, DIGESTS)
    assert plan.action == action
    assert plan.remote == remote
    assert plan.revision == hub_api.model_info(REPO).sha
    assert requests_made(hub_server, before) <= 2
