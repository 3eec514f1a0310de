"""Plan rows for people and CI: what each variant is, keeps and (online) needs.

Offline, a row says what the manifest makes of a variant (repo, parameters, kept experts
where the statistics need no model run). Online (`--hub`), each row also says what the
repo needs: `create`, `rebuild`, `card-only` or `no-op`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bot.errors import InputError
from bot.manifest import Manifest
from bot.selection.spec import CalibrationStatistics

MAX_JOBS = 250  # GitHub allows 256 jobs per matrix; keep a margin


def needs_model_run(manifest: Manifest, domain_id: str) -> bool:
    """Whether the domain's selection needs the base model run (calibration)."""
    domain = manifest.domain(domain_id)
    if isinstance(domain.statistics, CalibrationStatistics):
        return True
    other = domain.selection.with_ or domain.selection.of
    return other is not None and needs_model_run(manifest, other)


def plan_rows(
    manifest: Manifest, *, online: bool = False, variant_ids: Iterable[str] = ()
) -> list[dict[str, Any]]:
    """One row per variant; `online` asks the Hub what each repo needs."""
    from bot.selection.select import select_experts

    chosen = [manifest.variant(v) for v in variant_ids] or list(manifest.variants)
    actions: dict[str, tuple[str, str]] = {}
    if online:
        from bot.build import endpoint_for
        from bot.hub.publish import connect
        from bot.release import plan_release

        api = connect(endpoint_for(manifest))
        for row in plan_release(manifest, api, [v.id for v in chosen]):
            actions[row.variant.id] = (str(row.action), row.reason)
    rows = []
    for v in chosen:
        row: dict[str, Any] = {
            "variant": v.id,
            "domain": v.domain,
            "experts": v.experts,
            "repo_id": v.repo_id,
            "total_params": v.total_params,
        }
        if online or not needs_model_run(manifest, v.domain):
            row["kept_experts"] = select_experts(manifest, v).kept_experts
        else:
            row["kept_experts"] = None  # calibration: known once the base model has run
        if v.id in actions:
            row["action"], row["reason"] = actions[v.id]
        rows.append(row)
    return rows


def offline_plan(manifest: Manifest) -> list[dict[str, Any]]:
    """`plan_rows` without asking the Hub."""
    return plan_rows(manifest)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The plan as a Markdown table (for a GitHub job summary)."""
    head = "| variant | repo | parameters | action |\n|---|---|---:|---|\n"
    body = "".join(
        f"| {r['variant']} | `{r['repo_id']}` | {r['total_params']:,} | {r.get('action', '-')} |\n"
        for r in rows
    )
    todo = sum(1 for r in rows if r.get("action") not in (None, "no-op"))
    return f"### hubbot plan: {len(rows)} variants, {todo} need work\n\n{head}{body}\n"


def github_matrices(
    manifest: Manifest, *, chunks: int = 1, online: bool = True
) -> list[dict[str, list[dict[str, str]]]]:
    """GitHub Actions matrices (`{"include": [...]}`) of the variants that need work.

    Split into `chunks` matrices of at most 250 jobs each; `online=False` lists every
    variant without asking the Hub.
    """
    ci = manifest.spec.ci
    jobs = [
        {
            "variant": row["variant"],
            "repo_id": row["repo_id"],
            "action": row.get("action", "create"),
            "runner": ci.runners.get(row["domain"], ci.runner),
        }
        for row in _rows_for_matrix(manifest, online)
        if row.get("action", "create") != "no-op"
    ]
    if len(jobs) > chunks * MAX_JOBS:
        raise InputError(
            f"{manifest.path}: {len(jobs)} variants need work, more than {chunks} chunks of "
            f"{MAX_JOBS} jobs hold; raise --chunks"
        )
    size = max(1, -(-len(jobs) // chunks))
    return [{"include": jobs[i * size : (i + 1) * size]} for i in range(chunks)]


def _rows_for_matrix(manifest: Manifest, online: bool) -> list[dict[str, Any]]:
    if online:
        return plan_rows(manifest, online=True)
    return [{"variant": v.id, "repo_id": v.repo_id, "domain": v.domain} for v in manifest.variants]
