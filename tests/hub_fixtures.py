"""Pytest plugin: a fresh local Hub per test, and the Hub clients pointed at it.

Fixtures:
    hub_server  a running `HubServer` in `tmp_path / "hub"` accepting one token; it has
                `.endpoint`, `.token`, `.faults`, `.stats`, `.root`.
    hub_api     `HfApi(endpoint=hub_server.endpoint, token=hub_server.token)`.

While a test runs, huggingface_hub and transformers behave as if logged in to that server:
HF_ENDPOINT and HF_TOKEN name it, HF_HUB_DISABLE_XET=1, and HF_HOME / HF_HUB_CACHE are in
`tmp_path`, so no test reads or writes the user's cache or token. huggingface_hub reads
some settings once, at import: `bot.hub.clients.clients_pointed_at` patches those too.

Register with `pytest_plugins = ["tests.hub_fixtures"]` in conftest.py.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from bot.hub.clients import clients_pointed_at
from bot.localhub.server import HubServer


@pytest.fixture
def hub_server(tmp_path: Path) -> Iterator[HubServer]:
    """A running local Hub with one token; the Hub clients point at it."""
    token = f"hf_test_{secrets.token_hex(12)}"
    server = HubServer(tmp_path / "hub", tokens=[token])
    endpoint = server.start()
    try:
        with clients_pointed_at(endpoint, token, tmp_path / "hf-home"):
            yield server
    finally:
        server.stop()


@pytest.fixture
def hub_api(hub_server: HubServer) -> HfApi:
    """An `HfApi` for `hub_server`, authenticated with its token."""
    return HfApi(endpoint=hub_server.endpoint, token=hub_server.token)
