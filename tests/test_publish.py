"""Publishing against the local Hub: one whole commit per variant, under every fault.

Each fault test publishes an old variant, injects a fault, publishes a new one and then
checks the repo: its head is the old or the new commit, and the files at head are all-old
or all-new, never a mix.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from huggingface_hub import HfApi, set_client_factory
from huggingface_hub.utils import _http

from bot.errors import InputError
from bot.hub.plan import Action
from bot.hub.publish import MissingProvenanceError, connect, publish_folder, regenerate_card
from bot.hub.retry import (
    HubAuthError,
    HubConflictError,
    HubUnavailableError,
    RetryPolicy,
)
from bot.provenance import Digests, Provenance
from tests.test_hub_plan import make_record, requests_made

REPO = "hubbot-models/gpt-oss-test-general-4"
Files = dict[str, bytes]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stage(folder: Path, weights: str, card: str, shards: int = 2) -> Files:
    """Write a variant folder (shards, config, card, picture, hubbot.json); return its files."""
    names = (
        ["model.safetensors"]
        if shards == 1
        else [f"model-{i:05d}-of-{shards:05d}.safetensors" for i in range(1, shards + 1)]
    )
    files: Files = {name: f"{weights}:{name}\n".encode() * 300 for name in names}
    files["config.json"] = f'{{"num_local_experts": 4, "weights": "{weights}"}}\n'.encode()
    files["README.md"] = f"---\nlicense: apache-2.0\n---\n# Card {card}\n".encode()
    files["images/experts.png"] = b"\x89PNG\r\n" + card.encode()
    digests = Digests(weights=_sha(weights.encode()), card=_sha(card.encode()))
    record = make_record(digests, {n: _sha(files[n]) for n in [*names, "config.json"]})
    files["hubbot.json"] = record.dumps().encode()
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return files


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def policy(sleeps: list[float]) -> RetryPolicy:
    return RetryPolicy(max_attempts=4, sleep=sleeps.append)


@pytest.fixture
def old(tmp_path: Path) -> tuple[Path, Files]:
    folder = tmp_path / "old"
    return folder, stage(folder, weights="w1", card="c1")


@pytest.fixture
def new(tmp_path: Path) -> tuple[Path, Files]:
    folder = tmp_path / "new"
    return folder, stage(folder, weights="w2", card="c2")


def snapshot(api: HfApi, cache: Path) -> tuple[str, Files]:
    """The repo's head and the content of its files there (hidden files left out)."""
    info = api.model_info(REPO)
    files = {}
    for sibling in info.siblings or []:
        if not sibling.rfilename.startswith("."):
            path = api.hf_hub_download(REPO, sibling.rfilename, revision=info.sha, cache_dir=cache)
            files[sibling.rfilename] = Path(path).read_bytes()
    assert info.sha is not None
    return info.sha, files


def publish(api: HfApi, folder: Path, policy: RetryPolicy, **kwargs):
    kwargs.setdefault("private", False)
    kwargs.setdefault("message", f"Publish {folder.name}")
    return publish_folder(api, REPO, folder, policy=policy, **kwargs)


# ---------------------------------------------------------------- plain publishing


def test_first_publish_creates_the_repo_in_one_commit(
    hub_api: HfApi,
    old: tuple[Path, Files],
    policy: RetryPolicy,
    tmp_path: Path,
):
    folder, files = old
    result = publish(hub_api, folder, policy, private=True)
    head, remote = snapshot(hub_api, tmp_path / "dl")
    assert remote == files
    assert (result.action, result.commit, result.head) == (Action.CREATE, head, head)
    assert sorted(result.uploaded) == sorted(files)
    assert result.bytes_uploaded == sum(len(b) for b in files.values())
    assert hub_api.model_info(REPO).private is True
    commits = hub_api.list_repo_commits(REPO)
    assert commits[0].title == "Publish old"
    assert sum(c.title == "Publish old" for c in commits) == 1


def test_publishing_the_same_folder_again_changes_nothing(
    hub_api: HfApi,
    hub_server,
    old: tuple[Path, Files],
    policy: RetryPolicy,
):
    folder, _ = old
    first = publish(hub_api, folder, policy)
    before, commits = hub_server.stats.total, hub_server.stats["commit"]
    again = publish(hub_api, folder, policy)
    assert again.action == Action.NO_OP
    assert (again.commit, again.head) == (None, first.head)
    assert (again.uploaded, again.deleted, again.bytes_uploaded) == ((), (), 0)
    assert hub_server.stats["commit"] == commits
    assert requests_made(hub_server, before) <= 2


def test_a_card_change_sends_only_the_card_files(
    hub_api: HfApi,
    hub_server,
    old: tuple[Path, Files],
    policy: RetryPolicy,
    tmp_path: Path,
):
    publish(hub_api, old[0], policy)
    files = stage(tmp_path / "card", weights="w1", card="c2")
    uploads = hub_server.stats["lfs_upload"]
    result = publish(hub_api, tmp_path / "card", policy)
    assert result.action == Action.CARD_ONLY
    assert sorted(result.uploaded) == ["README.md", "hubbot.json", "images/experts.png"]
    assert hub_server.stats["lfs_upload"] - uploads == 1  # the picture, no shard
    assert snapshot(hub_api, tmp_path / "dl")[1] == files


def test_a_rebuild_deletes_what_we_published_before_and_nothing_else(
    hub_api: HfApi,
    old: tuple[Path, Files],
    policy: RetryPolicy,
    tmp_path: Path,
):
    publish(hub_api, old[0], policy)
    hub_api.upload_file(path_or_fileobj=b"by hand\n", path_in_repo="NOTES.md", repo_id=REPO)
    files = stage(tmp_path / "one", weights="w3", card="c3", shards=1)
    (tmp_path / "one" / "images" / "experts.png").unlink()
    del files["images/experts.png"]
    result = publish(hub_api, tmp_path / "one", policy)
    assert result.action == Action.REBUILD
    assert result.deleted == (
        "images/experts.png",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    )
    remote = snapshot(hub_api, tmp_path / "dl")[1]
    assert remote == {**files, "NOTES.md": b"by hand\n"}
    assert ".gitattributes" in hub_api.list_repo_files(REPO)


def test_plan_only_writes_nothing(
    hub_api: HfApi,
    hub_server,
    old: tuple[Path, Files],
    policy: RetryPolicy,
):
    folder, files = old
    result = publish(hub_api, folder, policy, plan_only=True, collections=["Family"])
    assert (result.action, result.commit) == (Action.CREATE, None)
    assert sorted(result.uploaded) == sorted(files)
    assert not hub_api.repo_exists(REPO)
    assert hub_server.stats["create_repo"] == hub_server.stats["commit"] == 0


def test_a_folder_without_a_record_is_refused_before_any_request(
    hub_api: HfApi,
    hub_server,
    policy: RetryPolicy,
    tmp_path: Path,
):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(InputError, match=r"no hubbot\.json"):
        publish(hub_api, tmp_path, policy)
    assert hub_server.stats.total == 0


def test_the_variant_joins_its_collections_once(
    hub_api: HfApi,
    old: tuple[Path, Files],
    policy: RetryPolicy,
):
    title = "GPT-OSS-20B domain-specialized expert pruning"
    first = publish(hub_api, old[0], policy, collections=[title])
    again = publish(hub_api, old[0], policy, collections=[title])
    assert first.collections == again.collections
    mine = [c for c in hub_api.list_collections(owner="hubbot-models") if c.title == title]
    assert [c.slug for c in mine] == list(first.collections)
    items = hub_api.get_collection(mine[0].slug).items
    assert [i.item_id for i in items] == [REPO]


def test_variants_share_a_collection(
    hub_api: HfApi,
    old: tuple[Path, Files],
    policy: RetryPolicy,
):
    title = "Family"
    first = publish(hub_api, old[0], policy, collections=[title])
    other = publish_folder(
        hub_api, REPO + "-b", old[0], private=False, collections=[title], message="m", policy=policy
    )
    assert other.collections == first.collections
    items = hub_api.get_collection(first.collections[0]).items
    assert [i.item_id for i in items] == [REPO, REPO + "-b"]


def test_connect_prefers_hf_endpoint_to_the_manifest(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    assert connect("http://manifest.example").endpoint == "http://manifest.example"
    monkeypatch.setenv("HF_ENDPOINT", "http://env.example")
    assert connect("http://manifest.example").endpoint == "http://env.example"


# ---------------------------------------------------------------- faults


@pytest.mark.parametrize(
    ("route", "fault", "waits"),
    [
        ("commit", {"status": 503, "times": 2}, [1.0, 2.0]),
        ("commit", {"status": 500}, [1.0]),
        ("commit", {"status": 429, "retry_after": 7}, [7.0]),
        ("commit", {"drop": True}, [1.0]),
        ("create_repo", {"status": 502}, [1.0]),
        ("repo_info", {"drop": True}, [1.0]),
        ("preupload", {"drop": True}, []),  # huggingface_hub retries these itself
        ("lfs_upload", {"drop": True}, []),
    ],
)
def test_a_transient_fault_is_retried_and_the_variant_lands_whole(
    hub_api: HfApi,
    hub_server,
    old: tuple[Path, Files],
    new: tuple[Path, Files],
    policy: RetryPolicy,
    sleeps: list[float],
    tmp_path: Path,
    route: str,
    fault: dict,
    waits: list[float],
):
    if route != "create_repo":
        publish(hub_api, old[0], policy)
    hub_server.faults.add(route=route, **fault)
    result = publish(hub_api, new[0], policy)
    head, remote = snapshot(hub_api, tmp_path / "dl")
    assert remote == new[1]
    assert result.head == head
    assert sleeps == waits
    assert result.retries == len(waits)


def test_retries_run_out_and_the_repo_keeps_its_old_commit(
    hub_api: HfApi,
    hub_server,
    old: tuple[Path, Files],
    new: tuple[Path, Files],
    policy: RetryPolicy,
    sleeps: list[float],
    tmp_path: Path,
):
    publish(hub_api, old[0], policy)
    before = snapshot(hub_api, tmp_path / "dl")
    hub_server.faults.add(route="commit", status=503, times=10)
    with pytest.raises(HubUnavailableError) as caught:
        publish(hub_api, new[0], policy)
    assert REPO in str(caught.value)
    assert "after 4 attempts (HTTP 503)" in str(caught.value)
    assert sleeps == [1.0, 2.0, 4.0]
    assert snapshot(hub_api, tmp_path / "dl") == before


class LoseCommitAnswers(httpx2.HTTPTransport):
    """Sends each request; drops the answer to the first `lose` commits the server made.

    The local server can only drop a connection before it acts; this is the other case,
    a commit that landed but whose answer never came back.
    """

    def __init__(self, lose: int) -> None:
        super().__init__()
        self.lose = lose

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        response = super().handle_request(request)
        if self.lose and request.method == "POST" and "/commit/" in request.url.path:
            response.read()
            if response.status_code == 200:
                self.lose -= 1
                raise httpx2.RemoteProtocolError("Server disconnected", request=request)
        return response


@pytest.fixture
def lost_answers() -> Iterator[LoseCommitAnswers]:
    """huggingface_hub's shared HTTP client, made to lose commit answers on demand."""
    transport = LoseCommitAnswers(lose=0)
    saved = _http._GLOBAL_CLIENT_FACTORY
    set_client_factory(lambda: httpx2.Client(transport=transport, follow_redirects=True))
    try:
        yield transport
    finally:
        set_client_factory(saved)


def test_a_commit_whose_answer_was_lost_is_not_made_twice(
    hub_api: HfApi,
    old: tuple[Path, Files],
    new: tuple[Path, Files],
    policy: RetryPolicy,
    tmp_path: Path,
    lost_answers: LoseCommitAnswers,
):
    publish(hub_api, old[0], policy)
    lost_answers.lose = 1
    result = publish(hub_api, new[0], policy)
    assert lost_answers.lose == 0
    assert (result.retries, result.replanned, result.commit) == (1, True, None)
    head, remote = snapshot(hub_api, tmp_path / "dl")
    assert (remote, result.head) == (new[1], head)
    assert [c.title for c in hub_api.list_repo_commits(REPO)].count("Publish new") == 1


class RacingApi(HfApi):
    """An `HfApi` whose next `races` commits are each preceded by a rival's commit."""

    def __init__(self, *args, rival: HfApi, races: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.rival, self.races = rival, races

    def create_commit(self, repo_id, operations, **kwargs):  # type: ignore[override]
        if self.races:
            self.races -= 1
            self.rival.upload_file(
                path_or_fileobj=f"---\nlicense: mit\n---\n# rival {self.races}\n".encode(),
                path_in_repo="README.md",
                repo_id=repo_id,
                commit_message="rival",
            )
        return super().create_commit(repo_id, operations, **kwargs)


def test_a_concurrent_commit_makes_us_replan_once(
    hub_api: HfApi,
    hub_server,
    old: tuple[Path, Files],
    new: tuple[Path, Files],
    policy: RetryPolicy,
    tmp_path: Path,
):
    publish(hub_api, old[0], policy)
    racing = RacingApi(endpoint=hub_server.endpoint, token=hub_server.token, rival=hub_api, races=1)
    result = publish(racing, new[0], policy)
    assert result.replanned
    head, remote = snapshot(hub_api, tmp_path / "dl")
    assert remote == new[1]
    assert result.commit == head
    assert [c.title for c in hub_api.list_repo_commits(REPO)][:2] == ["Publish new", "rival"]


def test_a_repo_that_keeps_changing_fails_without_publishing(
    hub_api: HfApi,
    hub_server,
    old: tuple[Path, Files],
    new: tuple[Path, Files],
    policy: RetryPolicy,
    tmp_path: Path,
):
    publish(hub_api, old[0], policy)
    racing = RacingApi(endpoint=hub_server.endpoint, token=hub_server.token, rival=hub_api, races=2)
    with pytest.raises(HubConflictError, match=REPO):
        publish(racing, new[0], policy)
    remote = snapshot(hub_api, tmp_path / "dl")[1]
    assert remote == {**old[1], "README.md": b"---\nlicense: mit\n---\n# rival 0\n"}


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_token_fails_at_once_and_names_the_repo_not_the_token(
    hub_api: HfApi,
    hub_server,
    old: tuple[Path, Files],
    new: tuple[Path, Files],
    policy: RetryPolicy,
    sleeps: list[float],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    status: int,
):
    publish(hub_api, old[0], policy)
    before = snapshot(hub_api, tmp_path / "dl")
    hub_server.faults.add(route="commit", status=status, times=3)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(HubAuthError) as caught:
        publish(hub_api, new[0], policy)
    message = str(caught.value)
    assert REPO in message and f"HTTP {status}" in message
    assert hub_server.token not in message and hub_server.token not in caplog.text
    assert sleeps == []
    assert snapshot(hub_api, tmp_path / "dl") == before


def test_a_wrong_token_is_refused_without_echoing_it(
    hub_server,
    old: tuple[Path, Files],
    policy: RetryPolicy,
):
    wrong = "hf_" + "x" * 34
    api = HfApi(endpoint=hub_server.endpoint, token=wrong)
    with pytest.raises(HubAuthError) as caught:
        publish(api, old[0], policy)
    assert REPO in str(caught.value)
    assert wrong not in str(caught.value)
    assert hub_server.stats["commit"] == 0


# ---------------------------------------------------------------- nightly card re-render


def _render(record: Provenance) -> dict[str, bytes]:
    assert record.digests is not None
    card = f"---\nlicense: apache-2.0\n---\n# Re-rendered {record.digests.card[:8]}\n"
    return {"README.md": card.encode(), "images/experts.png": b"\x89PNG\r\nnew"}


def test_regenerate_card_commits_only_changed_card_files(
    hub_api: HfApi,
    hub_server,
    old: tuple[Path, Files],
    policy: RetryPolicy,
    tmp_path: Path,
):
    publish(hub_api, old[0], policy)
    hub_api.upload_file(path_or_fileobj=b"\x89PNG\r\nold", path_in_repo="old.png", repo_id=REPO)
    resolves, uploads = hub_server.stats["resolve"], hub_server.stats["lfs_upload"]
    result = regenerate_card(hub_api, REPO, _render, message="Re-render card", policy=policy)
    assert result.action == Action.CARD_ONLY
    assert result.uploaded == ("README.md", "images/experts.png")
    assert result.deleted == ("old.png",)
    assert hub_server.stats["resolve"] - resolves == 1  # hubbot.json only
    assert hub_server.stats["lfs_upload"] - uploads == 1  # the picture; no weights
    remote = snapshot(hub_api, tmp_path / "dl")[1]
    assert remote == {**old[1], **_render(Provenance.model_validate_json(old[1]["hubbot.json"]))}

    before = hub_server.stats.total
    again = regenerate_card(hub_api, REPO, _render, message="Re-render card", policy=policy)
    assert (again.action, again.commit, again.uploaded) == (Action.NO_OP, None, ())
    assert requests_made(hub_server, before) <= 2


def test_regenerate_card_refuses_a_repo_without_a_readable_record(
    hub_api: HfApi,
    policy: RetryPolicy,
):
    with pytest.raises(MissingProvenanceError, match="does not exist"):
        regenerate_card(hub_api, REPO, _render, message="m", policy=policy)
    hub_api.create_repo(REPO)
    hub_api.upload_file(path_or_fileobj=b"[]", path_in_repo="hubbot.json", repo_id=REPO)
    with pytest.raises(MissingProvenanceError, match="unreadable"):
        regenerate_card(hub_api, REPO, _render, message="m", policy=policy)
