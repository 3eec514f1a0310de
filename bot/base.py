"""The base checkpoint a manifest names, and the Hub endpoint it is fetched from.

Every stage that needs the base model (selection's calibration, the build, the quality
evaluation) asks here, so none of them imports another stage to find it: the manifest's
local `base.path` when it has one, otherwise a download of the pinned `base.repo` at
`base.revision` from `endpoint_for(manifest)` (`HF_ENDPOINT` wins over `hub.endpoint`).

Example:
    >>> fetch_manifest_base(load_manifest("manifests/demo.yaml"))      # doctest: +SKIP
    PosixPath('.../tiny-moe')
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.manifest import Manifest


def endpoint_for(manifest: Manifest) -> str | None:
    """The Hub endpoint: `HF_ENDPOINT` wins over the manifest's `hub.endpoint`."""
    return os.environ.get("HF_ENDPOINT") or manifest.spec.hub.endpoint


def fetch_manifest_base(manifest: Manifest) -> Path:
    """The base checkpoint of `manifest`: its local folder, or a download of the pinned repo."""
    # huggingface_hub loads when a base is fetched, not when a plan or card check runs
    from bot.hub.download import fetch_base

    base = manifest.spec.base
    return fetch_base(
        repo=base.repo,
        path=manifest.resolve(base.path) if base.path else None,
        revision=base.revision,
        endpoint=endpoint_for(manifest),
    )
