"""Pointing huggingface_hub (and transformers) at one Hub endpoint for a while.

huggingface_hub reads its endpoint, cache and Xet settings from the environment once, when
first imported. Code that starts a local Hub after that import (the demo, tests,
benchmarks) must also patch `huggingface_hub.constants`; `clients_pointed_at` does both and
undoes them on exit.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_MISSING = object()


@contextmanager
def clients_pointed_at(endpoint: str, token: str, home: Path) -> Iterator[None]:
    """Within the block, Hub clients use `endpoint`, `token` and caches under `home`."""
    from huggingface_hub import constants

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
        "HF_HUB_OFFLINE": None,
        "TRANSFORMERS_OFFLINE": None,
        "HF_OIDC_RESOURCE": None,
    }
    patches: dict[str, Any] = {
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
    old_env = {name: os.environ.get(name) for name in env}
    old_constants = {name: getattr(constants, name, _MISSING) for name in patches}
    for name, value in env.items():
        _set_env(name, value)
    for name, value in patches.items():
        setattr(constants, name, value)
    _forget_transformers_client()
    try:
        yield
    finally:
        for name, value in old_env.items():
            _set_env(name, value)
        for name, value in old_constants.items():
            if value is _MISSING:
                delattr(constants, name)
            else:
                setattr(constants, name, value)
        _forget_transformers_client()
        from huggingface_hub.utils import close_session

        close_session()  # drop pooled connections to a server that may stop now


def _set_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def _forget_transformers_client() -> None:
    """transformers keeps a shared HfApi that remembers the endpoint it was made with."""
    hub = sys.modules.get("transformers.utils.hub")
    if hub is not None and hasattr(hub, "_hf_api"):
        hub._hf_api = None
