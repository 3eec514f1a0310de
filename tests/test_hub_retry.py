"""Talking to a Hub as a newcomer does: no token, missing repos, a host that does not resolve."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx2
import pytest
from huggingface_hub import HfApi

from bot.hub.plan import Action, plan_variant
from bot.hub.publish import publish_folder
from bot.hub.retry import (
    ENDPOINT_HINT,
    HubAuthError,
    HubCaller,
    HubUnavailableError,
    RetryPolicy,
    no_network,
    unresolvable,
)
from bot.provenance import Digests
from tests.test_publish import stage

REPO = "hubbot-models/not-yet-created"


@pytest.fixture
def anonymous(hub_server, monkeypatch: pytest.MonkeyPatch) -> HfApi:
    """An `HfApi` with no token at all: none given, no HF_TOKEN, no saved login."""
    monkeypatch.delenv("HF_TOKEN")
    return HfApi(endpoint=hub_server.endpoint)


def test_a_missing_repo_is_create_without_a_token(anonymous: HfApi, hub_server):
    # The Hub (and the local one) answer an anonymous request for a missing repo with 401.
    plan = plan_variant(anonymous, REPO, Digests(weights="w", card="c"))
    assert plan.action == Action.CREATE and plan.reason == "the repo does not exist"


def test_a_write_without_a_token_says_none_is_set(anonymous: HfApi, tmp_path: Path):
    stage(tmp_path / "v", weights="w1", card="c1")
    with pytest.raises(HubAuthError) as caught:
        publish_folder(anonymous, REPO, tmp_path / "v", private=False, message="m")
    message = str(caught.value)
    assert REPO in message and "create the repo" in message
    assert "none is set" in message and "HF_TOKEN" in message
    assert "refused the token" not in message


def test_a_refused_token_is_still_called_refused(hub_server, tmp_path: Path):
    api = HfApi(endpoint=hub_server.endpoint, token="hf_" + "y" * 34)
    stage(tmp_path / "v", weights="w1", card="c1")
    with pytest.raises(HubAuthError, match="refused the token"):
        publish_folder(api, REPO, tmp_path / "v", private=False, message="m")


def _unresolved() -> httpx2.ConnectError:
    """What httpx2 raises when getaddrinfo fails (made here: a real one needs a DNS query)."""
    try:
        try:
            raise socket.gaierror(-2, "Name or service not known")
        except socket.gaierror as cause:
            raise httpx2.ConnectError("[Errno -2] Name or service not known") from cause
    except httpx2.ConnectError as exc:
        return exc


def test_a_host_that_does_not_resolve_fails_at_once_naming_the_endpoint():
    sleeps: list[float] = []
    calls = HubCaller(REPO, RetryPolicy(sleep=sleeps.append), endpoint="https://hub.example")

    def lookup() -> None:
        raise _unresolved()

    with pytest.raises(HubUnavailableError) as caught:
        calls("download hubbot.json", lookup)
    assert calls.attempts == 1 and sleeps == []
    message = str(caught.value)
    assert "https://hub.example" in message and "cannot resolve" in message
    assert ENDPOINT_HINT in message and "HF_ENDPOINT" in message


def test_a_refused_connection_is_retried_and_names_the_endpoint(hub_server):
    sleeps: list[float] = []
    api = HfApi(endpoint=hub_server.endpoint, token=hub_server.token)
    hub_server.stop()  # nothing listens there now: connection refused, as for a restart
    calls = HubCaller.for_api(api, REPO, RetryPolicy(max_attempts=3, sleep=sleeps.append))
    with pytest.raises(HubUnavailableError) as caught:
        calls("read the repo", api.model_info, REPO)
    assert calls.attempts == 3 and sleeps == [1.0, 2.0]
    assert api.endpoint in str(caught.value) and ENDPOINT_HINT in str(caught.value)


def test_unresolvable_reads_the_cause_chain():
    assert unresolvable(_unresolved())
    assert not unresolvable(httpx2.ConnectError("[Errno 111] Connection refused"))
    assert no_network(httpx2.ConnectError("[Errno 101] Network is unreachable"))
    assert not no_network(httpx2.ConnectError("[Errno 111] Connection refused"))


def test_plan_and_matrix_against_a_hub_without_the_repos_and_no_token(anonymous: HfApi):
    from click.testing import CliRunner

    from bot.cli import cli

    manifest = str(Path(__file__).resolve().parents[1] / "manifests" / "gpt-oss-20b.yaml")
    env = {"HF_ENDPOINT": anonymous.endpoint}
    chosen = ["--variant", "science-16", "--variant", "math-4"]
    plan = CliRunner().invoke(cli, ["plan", manifest, "--hub", *chosen], env=env)
    assert plan.exit_code == 0, plan.output
    assert plan.stdout.splitlines()[-1] == "2 variants: 2 create"
    assert "refused" not in plan.output and "401" not in plan.output
    matrix = CliRunner().invoke(cli, ["matrix", manifest], env=env)
    assert matrix.exit_code == 0, matrix.output
    jobs = json.loads(matrix.stdout)["include"]
    assert len(jobs) == 232 and {job["action"] for job in jobs} == {"create"}
