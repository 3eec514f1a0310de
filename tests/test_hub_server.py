"""The local Hub server, driven by the real huggingface_hub client (and transformers) over HTTP."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2
import numpy as np
import pytest
from huggingface_hub import (
    CommitOperationAdd,
    HfApi,
    ModelCard,
    hf_hub_download,
    snapshot_download,
)
from huggingface_hub.errors import (
    BadRequestError,
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import get_session
from safetensors.numpy import load_file, save_file

from bot.localhub.rules import wants_lfs
from bot.localhub.server import HubServer

REPO = "org/tiny-moe"
README = """---
license: apache-2.0
tags:
- moe
base_model: openai/gpt-oss-20b
---
# Tiny MoE

A card with a <script>alert("x")</script> in it, and a [link](javascript:alert(1)).

| experts | layers |
|---------|--------|
| 4       | 2      |
"""


def stage(folder: Path, *, scale: float = 1.0) -> Path:
    """A small model folder: safetensors weights, config, README, a nested file."""
    folder.mkdir(parents=True, exist_ok=True)
    weights = {"w": (np.arange(12, dtype=np.float32) * scale).reshape(3, 4)}
    save_file(weights, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(
        json.dumps({"model_type": "gpt_oss", "num_local_experts": 4})
    )
    (folder / "README.md").write_text(README)
    (folder / "extra").mkdir(exist_ok=True)
    (folder / "extra" / "notes.txt").write_text("kept experts: 0 1 2 3\n")
    return folder


@pytest.fixture
def published(hub_api: HfApi, tmp_path: Path) -> str:
    """REPO, created and holding the staged folder; returns the commit id."""
    hub_api.create_repo(REPO)
    head = hub_api.model_info(REPO).sha
    info = hub_api.upload_folder(
        repo_id=REPO, folder_path=stage(tmp_path / "stage"), commit_message="v1", parent_commit=head
    )
    return info.oid


def test_upload_list_and_download(hub_api: HfApi, published: str, tmp_path: Path):
    info = hub_api.model_info(REPO, files_metadata=True)
    files = {s.rfilename: s for s in info.siblings}
    assert info.sha == published
    assert sorted(files) == [
        ".gitattributes", "README.md", "config.json", "extra/notes.txt", "model.safetensors"
    ]  # fmt: skip
    weights = (tmp_path / "stage" / "model.safetensors").read_bytes()
    assert files["model.safetensors"].lfs is not None  # safetensors go to LFS, like on the Hub
    assert files["model.safetensors"].lfs.size == files["model.safetensors"].size == len(weights)
    assert files["README.md"].lfs is None
    assert info.card_data is not None and info.card_data.base_model == "openai/gpt-oss-20b"
    assert hub_api.list_repo_files(REPO) == sorted(files)

    by_path = {p.path: p for p in hub_api.get_paths_info(REPO, ["extra", "README.md", "nope"])}
    assert sorted(by_path) == ["README.md", "extra"]
    assert by_path["README.md"].blob_id == files["README.md"].blob_id

    top = [f.path for f in hub_api.list_repo_tree(REPO)]
    assert "extra" in top and "extra/notes.txt" not in top
    assert "extra/notes.txt" in [f.path for f in hub_api.list_repo_tree(REPO, recursive=True)]

    path = hf_hub_download(REPO, "model.safetensors")
    assert load_file(path)["w"].tolist() == np.arange(12, dtype=np.float32).reshape(3, 4).tolist()
    snapshot = Path(snapshot_download(REPO, revision=published))
    assert (snapshot / "extra" / "notes.txt").read_text() == "kept experts: 0 1 2 3\n"


def test_long_listings_are_paginated(
    hub_api: HfApi,
    hub_server: HubServer,
    published: str,
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setattr("bot.localhub.trees.TREE_PAGE", 2)
    hub_server.stats.reset()
    paths = [f.path for f in hub_api.list_repo_tree(REPO, recursive=True)]
    assert len(paths) == 6 and "extra/notes.txt" in paths
    assert hub_server.stats["tree"] == 3  # the client followed the `Link: rel="next"` pages


def test_unchanged_files_are_not_committed_again(hub_api: HfApi, published: str, tmp_path: Path):
    again = hub_api.upload_folder(repo_id=REPO, folder_path=tmp_path / "stage", commit_message="x")
    assert again.oid == published
    changed = hub_api.upload_folder(
        repo_id=REPO, folder_path=stage(tmp_path / "stage", scale=2.0), commit_message="v2"
    )
    assert changed.oid != published
    assert [c.title for c in hub_api.list_repo_commits(REPO)] == ["v2", "v1", "initial commit"]


def test_stale_parent_commit_is_refused_with_412(hub_api: HfApi, published: str):
    hub_api.upload_file(path_or_fileobj=b"new", path_in_repo="new.txt", repo_id=REPO)
    with pytest.raises(HfHubHTTPError) as caught:
        hub_api.upload_file(
            path_or_fileobj=b"late", path_in_repo="late.txt", repo_id=REPO, parent_commit=published
        )
    assert caught.value.response.status_code == 412
    assert "late.txt" not in hub_api.list_repo_files(REPO)


def test_concurrent_commits_on_one_parent_land_exactly_once(hub_api: HfApi, published: str):
    def commit(i: int) -> int:
        try:
            hub_api.upload_file(
                path_or_fileobj=f"{i}".encode(),
                path_in_repo=f"f{i}.txt",
                repo_id=REPO,
                parent_commit=published,
            )
        except HfHubHTTPError as exc:
            return exc.response.status_code
        return 200

    with ThreadPoolExecutor(4) as pool:
        statuses = sorted(pool.map(commit, range(4)))
    assert statuses == [200, 412, 412, 412]
    assert len(hub_api.list_repo_commits(REPO)) == 3


def test_lfs_file_never_uploaded_is_refused(hub_api: HfApi, published: str):
    op = CommitOperationAdd(path_in_repo="ghost.safetensors", path_or_fileobj=b"\0" * 64)
    op._upload_mode = "lfs"  # as if preupload had run ...
    op._is_uploaded = True  # ... and the upload had been skipped
    with pytest.raises(BadRequestError, match="never uploaded"):
        hub_api.create_commit(REPO, [op], commit_message="ghost")
    assert hub_api.model_info(REPO).sha == published


def test_deleting_files_and_a_missing_file(hub_api: HfApi, published: str):
    hub_api.delete_folder("extra", repo_id=REPO)
    assert "extra/notes.txt" not in hub_api.list_repo_files(REPO)
    with pytest.raises(RemoteEntryNotFoundError):
        hub_api.delete_file("extra/notes.txt", repo_id=REPO)


def test_branches_tags_and_revisions(hub_api: HfApi, published: str):
    hub_api.create_tag(REPO, tag="v1")
    hub_api.create_branch(REPO, branch="dev")
    hub_api.upload_file(
        path_or_fileobj=b"dev", path_in_repo="dev.txt", repo_id=REPO, revision="dev"
    )
    refs = hub_api.list_repo_refs(REPO)
    assert {b.name for b in refs.branches} == {"main", "dev"}
    assert [(t.name, t.target_commit) for t in refs.tags] == [("v1", published)]
    assert [c.title for c in hub_api.list_repo_commits(REPO, revision="dev")][:2] == [
        "Upload dev.txt with huggingface_hub",
        "v1",
    ]
    assert "dev.txt" not in hub_api.list_repo_files(REPO, revision="v1")
    assert Path(hf_hub_download(REPO, "dev.txt", revision="dev")).read_text() == "dev"
    with pytest.raises(RevisionNotFoundError):
        hub_api.model_info(REPO, revision="nope")


def test_range_requests_resume_downloads(hub_server: HubServer, published: str):
    url = f"{hub_server.endpoint}/{REPO}/resolve/main/extra/notes.txt"
    response = get_session().get(url, headers={"Range": "bytes=5-"})
    assert response.status_code == 206
    assert response.content == b"experts: 0 1 2 3\n"
    assert response.headers["X-Repo-Commit"] == published


def test_private_repo_is_unreadable_without_a_token(hub_api: HfApi, hub_server: HubServer):
    hub_api.create_repo("org/secret", private=True)
    hub_api.upload_file(path_or_fileobj=b"{}", path_in_repo="config.json", repo_id="org/secret")
    anonymous = HfApi(endpoint=hub_server.endpoint, token=False)
    with pytest.raises(RepositoryNotFoundError):
        anonymous.model_info("org/secret")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("org/secret", "config.json", token=False)
    with pytest.raises(HfHubHTTPError) as caught:  # writes need a token too
        anonymous.create_repo("org/other")
    assert caught.value.response.status_code == 401
    assert hub_api.model_info("org/secret").private is True
    assert Path(hf_hub_download("org/secret", "config.json")).read_text() == "{}"


def test_unknown_token_gets_401(hub_api: HfApi, hub_server: HubServer):
    hub_api.create_repo(REPO)
    stranger = HfApi(endpoint=hub_server.endpoint, token="hf_not_a_token_of_this_server")
    with pytest.raises(HfHubHTTPError, match="Invalid user token"):
        stranger.whoami()
    with pytest.raises(HfHubHTTPError) as caught:
        stranger.model_info(REPO)
    assert caught.value.response.status_code == 401
    assert not isinstance(caught.value, RepositoryNotFoundError)
    assert hub_api.whoami()["name"] == "hubbot"


def test_injected_503_on_commit_fails_that_commit_only(hub_api: HfApi, hub_server: HubServer):
    hub_api.create_repo(REPO)
    head = hub_api.model_info(REPO).sha
    hub_server.faults.add("commit", status=503)
    with pytest.raises(HfHubHTTPError) as caught:  # the final commit POST is not retried
        hub_api.upload_file(path_or_fileobj=b"a", path_in_repo="a.txt", repo_id=REPO)
    assert caught.value.response.status_code == 503
    assert hub_api.model_info(REPO).sha == head
    hub_api.upload_file(path_or_fileobj=b"a", path_in_repo="a.txt", repo_id=REPO)
    assert hub_server.stats["commit"] == 2


def test_injected_429_with_retry_after_is_retried(hub_api: HfApi, hub_server: HubServer):
    hub_api.create_repo(REPO)
    hub_server.faults.add("preupload", status=429, retry_after=0)
    hub_api.upload_file(path_or_fileobj=b"a", path_in_repo="a.txt", repo_id=REPO)
    assert hub_server.stats["preupload"] == 2
    assert hub_api.list_repo_files(REPO) == [".gitattributes", "a.txt"]


def test_dropped_connection_and_slow_answer(hub_api: HfApi, hub_server: HubServer):
    hub_api.create_repo(REPO)
    hub_server.faults.add("repo_info", drop=True)
    with pytest.raises(httpx2.RemoteProtocolError):
        hub_api.model_info(REPO)
    hub_server.faults.add("repo_info", delay=5)
    with pytest.raises(httpx2.ReadTimeout):
        hub_api.model_info(REPO, timeout=0.2)
    assert hub_api.model_info(REPO).id == REPO
    assert hub_server.stats["repo_info"] == 3


def test_download_errors_are_retried_or_served_from_cache(hub_api: HfApi, hub_server: HubServer):
    hub_api.create_repo(REPO)
    hub_api.upload_file(path_or_fileobj=b"{}", path_in_repo="config.json", repo_id=REPO)
    hub_server.faults.add("resolve", status=500)
    assert Path(hf_hub_download(REPO, "config.json")).read_text() == "{}"
    assert hub_server.stats["resolve"] == 3  # HEAD (500), HEAD again, GET
    hub_server.faults.add("resolve", status=503)
    assert Path(hf_hub_download(REPO, "config.json")).read_text() == "{}"  # the cached copy
    assert hub_server.stats["resolve"] == 4


def test_faults_and_stats_over_http(hub_api: HfApi, hub_server: HubServer):
    admin = f"{hub_server.endpoint}/_hubbot"
    added = get_session().post(f"{admin}/faults", json={"route": "create_repo", "status": 500})
    assert added.status_code == 201
    assert get_session().post(f"{admin}/faults", json={"route": "typo"}).status_code == 400
    with pytest.raises(HfHubHTTPError) as caught:
        hub_api.create_repo(REPO)
    assert caught.value.response.status_code == 500
    hub_api.create_repo(REPO)
    stats = get_session().get(f"{admin}/stats").json()
    assert stats["routes"]["create_repo"] == 2
    assert stats["total"] == hub_server.stats.total
    assert get_session().get(f"{admin}/faults").json()["faults"] == []


def test_restart_keeps_repos_and_files(hub_api: HfApi, hub_server: HubServer, published: str):
    hub_api.create_tag(REPO, tag="v1")
    endpoint = hub_server.endpoint
    hub_server.stop()
    with HubServer(hub_server.root, tokens=[hub_server.token], port=hub_server.port) as again:
        assert again.endpoint == endpoint
        assert hub_api.model_info(REPO).sha == published
        assert [t.name for t in hub_api.list_repo_refs(REPO).tags] == ["v1"]
        path = hf_hub_download(REPO, "extra/notes.txt", revision="v1", force_download=True)
        assert Path(path).read_text() == "kept experts: 0 1 2 3\n"


def test_model_card_metadata_is_validated(hub_api: HfApi, published: str):
    ModelCard(README).validate()
    with pytest.raises(ValueError, match="must be a string"):
        ModelCard("---\nlicense: [mit, apache-2.0]\n---\n# Card\n").validate()
    with pytest.raises(ValueError, match="Invalid metadata"):
        hub_api.upload_file(
            path_or_fileobj=b"---\ntags: [unclosed\n---\n# Card\n",
            path_in_repo="README.md",
            repo_id=REPO,
        )


def test_collections(hub_api: HfApi, published: str):
    collection = hub_api.create_collection("Tiny MoE family", namespace="org")
    hub_api.add_collection_item(collection.slug, REPO, "model", note="4 experts")
    again = hub_api.add_collection_item(collection.slug, REPO, "model", exists_ok=True)
    assert [(i.item_id, i.note) for i in again.items] == [(REPO, "4 experts")]
    assert [c.slug for c in hub_api.list_collections(owner="org")] == [collection.slug]
    assert hub_api.get_collection(collection.slug).title == "Tiny MoE family"
    with pytest.raises(RepositoryNotFoundError):
        hub_api.add_collection_item(collection.slug, "org/missing", "model")


def test_html_pages_escape_the_readme(hub_server: HubServer, published: str):
    index = get_session().get(f"{hub_server.endpoint}/").text
    assert f'href="/{REPO}"' in index
    page = get_session().get(f"{hub_server.endpoint}/{REPO}").text
    assert "<script>" not in page and 'alert("x")' not in page  # sanitised away, content too
    assert "javascript:" not in page.split("<article>")[1]
    assert "<table>" in page and "<td>4</td>" in page  # the card's table is rendered
    assert "base_model: openai/gpt-oss-20b" in page  # front matter shown as code
    assert "model.safetensors" in page


@pytest.mark.slow
def test_transformers_loads_a_model_at_a_revision(hub_api: HfApi, tmp_path: Path):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from bot.fixtures.tiny import write_tiny_model

    hub_api.create_repo("org/tiny-gpt-oss")
    folder = write_tiny_model(tmp_path / "tiny")
    first = hub_api.upload_folder(
        repo_id="org/tiny-gpt-oss", folder_path=folder, commit_message="v1"
    )
    hub_api.create_tag("org/tiny-gpt-oss", tag="v1")
    hub_api.delete_file("config.json", repo_id="org/tiny-gpt-oss")  # main moves on without it

    config = AutoConfig.from_pretrained("org/tiny-gpt-oss", revision=first.oid)
    assert config.model_type == "gpt_oss"
    tokenizer = AutoTokenizer.from_pretrained("org/tiny-gpt-oss", revision="v1")
    assert tokenizer.decode(tokenizer.encode("the experts")).endswith("the experts")
    model = AutoModelForCausalLM.from_pretrained("org/tiny-gpt-oss", revision="v1")
    assert model.config.num_local_experts == config.num_local_experts


def test_lfs_rule_follows_the_hub():
    assert wants_lfs("notes.txt", 11_000_000, b"text", [])  # above 10 MB
    assert wants_lfs("blob.dat", 10, b"\0\1\2", [])  # binary
    assert wants_lfs("w/model.safetensors", 10, b"{}", ["*.safetensors"])
    assert not wants_lfs("config.json", 10, b"{}", ["*.safetensors"])
