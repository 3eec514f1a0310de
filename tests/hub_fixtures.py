"""Pytest plugin: a fresh local Hub per test, and the Hub clients pointed at it.

Fixtures:
    hub_server  a running `HubServer` in `tmp_path / "hub"` accepting one token; it has
                `.endpoint`, `.token`, `.faults`, `.stats`, `.root`.
    hub_api     `HfApi(endpoint=hub_server.endpoint, token=hub_server.token)`.

While a test runs, huggingface_hub and transformers behave as if logged in to that server:
HF_ENDPOINT and HF_TOKEN name it, HF_HUB_DISABLE_XET=1, and HF_HOME / HF_HUB_CACHE are in
`tmp_path`, so no test reads or writes the user's cache or token. huggingface_hub reads
some settings once, at import, so the plugin also patches `huggingface_hub.constants`.

Register with `pytest_plugins = ["tests.hub_fixtures"]` in conftest.py.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import HfApi, constants
from huggingface_hub.utils import close_session

from bot.hub.server import HubServer


def point_hub_clients_at(endpoint: str, token: str, home: Path, mp: pytest.MonkeyPatch) -> None:
    """Make huggingface_hub (and transformers, if imported) use `endpoint` and `home`."""
    cache = home / "hub"
    env = {
        "HF_ENDPOINT": endpoint,
        "HF_TOKEN": token,
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(cache),
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_ETAG_TIMEOUT": "30",
        "HF_HUB_DOWNLOAD_TIMEOUT": "60",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }
    for name, value in env.items():
        mp.setenv(name, value)
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_OIDC_RESOURCE"):
        mp.delenv(name, raising=False)
    patches = {
        "ENDPOINT": endpoint,
        "HUGGINGFACE_CO_URL_TEMPLATE": endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(cache),
        "HF_TOKEN_PATH": str(home / "token"),
        "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
        "HF_HUB_DISABLE_XET": True,
        "HF_HUB_OFFLINE": False,
        "HF_HUB_DISABLE_TELEMETRY": True,
        "HF_HUB_ETAG_TIMEOUT": 30,
        "HF_HUB_DOWNLOAD_TIMEOUT": 60,
    }
    for name, value in patches.items():
        mp.setattr(constants, name, value, raising=False)
    transformers_hub = sys.modules.get("transformers.utils.hub")
    if transformers_hub is not None:  # its shared HfApi remembers the endpoint it was made with
        mp.setattr(transformers_hub, "_hf_api", None, raising=False)


@pytest.fixture
def hub_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """A running local Hub with one token; the Hub clients point at it."""
    token = f"hf_test_{secrets.token_hex(12)}"
    server = HubServer(tmp_path / "hub", tokens=[token])
    endpoint = server.start()
    point_hub_clients_at(endpoint, token, tmp_path / "hf-home", monkeypatch)
    try:
        yield server
    finally:
        server.stop()
        close_session()  # drop pooled connections to the stopped server


@pytest.fixture
def hub_api(hub_server: HubServer) -> HfApi:
    """An `HfApi` for `hub_server`, authenticated with its token."""
    return HfApi(endpoint=hub_server.endpoint, token=hub_server.token)
