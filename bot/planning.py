"""The offline part of a plan: what each variant of a manifest is, without asking the Hub."""

from __future__ import annotations

from typing import Any

from bot.manifest import Manifest


def offline_plan(manifest: Manifest) -> list[dict[str, Any]]:
    """One row per variant: id, domain, expert count, repo id and parameter count."""
    return [
        {
            "variant": v.id,
            "domain": v.domain,
            "experts": v.experts,
            "repo_id": v.repo_id,
            "total_params": v.total_params,
        }
        for v in manifest.variants
    ]
