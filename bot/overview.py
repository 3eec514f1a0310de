"""The release at a glance, for people and CI: a row per variant, and CI job matrices.

`hubbot plan` and `hubbot matrix` read this module (it was `planning.py`; a "plan" is the
per-repo decision of `bot.hub.plan`, which `--hub` rows show).

Offline, a row says what the manifest makes of a variant (repo, parameters, kept experts
where the statistics need no model run). Online (`--hub`), each row also says what the
repo needs: `create`, `rebuild`, `card-only` or `no-op`.

CI matrices list one job per variant, or (`Grouping`) jobs of several variants that
fetch the base once and build and publish their variants one after another.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot import units
from bot.base import endpoint_for
from bot.descriptors import descriptor_for
from bot.errors import InputError
from bot.manifest import Manifest, Variant
from bot.model_stats import checkpoint_bytes
from bot.quality.gate import shortfall
from bot.selection.select import select_experts
from bot.selection.spec import CalibrationStatistics

if TYPE_CHECKING:
    from collections.abc import Mapping

    from bot.provenance import QualityPoint

MAX_JOBS = 250  # GitHub allows 256 jobs per matrix; keep a margin


def needs_model_run(manifest: Manifest, domain_id: str) -> bool:
    """Whether the domain's selection needs the base model run (calibration)."""
    domain = manifest.domain(domain_id)
    if isinstance(domain.statistics, CalibrationStatistics):
        return True
    other = domain.selection.with_ or domain.selection.of
    return other is not None and needs_model_run(manifest, other)


@dataclass(frozen=True)
class PlanRow:
    """One variant in a plan: what the manifest makes of it and, asked, what its repo needs.

    `hub_action` and `hub_reason` are the Hub's answer (`--hub`); `held` the figure below
    the quality floor that holds an offline variant back; `quality` its figures when known.
    """

    variant: Variant
    kept_experts: dict[str, list[int]] | None
    hub_action: str | None = None
    hub_reason: str | None = None
    quality: dict[str, Any] | None = None
    held: str | None = None

    @property
    def action(self) -> str | None:
        """`create`, `rebuild`, `card-only`, `no-op` or `held`; None offline, not held."""
        return "held" if self.held else self.hub_action

    @property
    def reason(self) -> str | None:
        return f"{self.held}: not to be published" if self.held else self.hub_reason

    def to_json(self) -> dict[str, Any]:
        """The row for `plan --json` (keys absent where there is nothing to say)."""
        v = self.variant
        out: dict[str, Any] = {
            "variant": v.id,
            "domain": v.domain,
            "experts": v.experts,
            "repo_id": v.repo_id,
            "total_params": v.total_params,
            "kept_experts": self.kept_experts,
        }
        if self.hub_action is not None:
            out["action"], out["reason"] = self.hub_action, self.hub_reason
        if self.quality is not None:
            out["quality"] = self.quality
        if self.held:
            out["action"], out["reason"] = self.action, self.reason
        return out


def plan_rows(
    manifest: Manifest,
    *,
    online: bool = False,
    variant_ids: Iterable[str] = (),
    points: Mapping[str, QualityPoint] | None = None,
) -> list[PlanRow]:
    """One row per variant; `online` asks the Hub what each repo needs.

    With `points` (current figures by variant id, see `bot.quality.saved`), each row
    carries its figures, and a variant below the manifest's floor is `held`, online or not.
    """
    chosen = [manifest.variant(v) for v in variant_ids] or list(manifest.variants)
    actions: dict[str, tuple[str, str]] = {}
    if online:
        # huggingface_hub loads when the Hub is asked, not for an offline plan
        from bot.hub.publish import connect
        from bot.release import plan_release

        api = connect(endpoint_for(manifest))
        for row in plan_release(manifest, api, [v.id for v in chosen], points=points):
            actions[row.variant.id] = (str(row.action), row.reason)
    rows = []
    for v in chosen:
        kept = None  # calibration: known once the base model has run
        if online or not needs_model_run(manifest, v.domain):
            kept = select_experts(manifest, v).kept_experts
        action, reason = actions.get(v.id, (None, None))
        point = (points or {}).get(v.id)
        quality, held = None, None
        if point is not None:
            quality = point.model_dump(mode="json", include={"domain_text", "general_text"})
            if not online:
                held = shortfall(point, manifest.spec.quality) or None
        rows.append(PlanRow(v, kept, action, reason, quality, held))
    return rows


def offline_plan(manifest: Manifest) -> list[PlanRow]:
    """`plan_rows` without asking the Hub."""
    return plan_rows(manifest)


def kept_text(kept: dict[str, list[int]] | None, layer: str = "0") -> str:
    """One layer's kept experts for a table cell, and how many layers there are.

    A model whose layer `layer` is dense (no kept list) shows its first MoE layer, named.
    """
    if kept is None:
        return "known after calibration (--hub, or build)"
    shown = layer if layer in kept else min(kept, key=int)
    experts = " ".join(str(e) for e in kept[shown])
    experts = experts if shown == layer else f"layer {shown}: {experts}"
    more = len(kept) - 1
    return f"{experts} (+{more} layers)" if more else experts


def text_table(rows: list[PlanRow], *, every_layer: bool = False) -> list[str]:
    """The plan as aligned lines under a header.

    A row shows layer 0's kept experts; `every_layer` lists each layer's below its row,
    with the reason for the action when the Hub was asked.
    """
    online = any(r.hub_action is not None for r in rows)
    head = [*(["action"] if online else []), "variant", "experts", "parameters", "repo"]
    table = [[*head, "kept experts" if every_layer else "kept experts, layer 0"]]
    for r in rows:
        cells = [*([r.action or ""] if online else []), r.variant.id, str(r.variant.experts)]
        cells += [f"{units.count(r.variant.total_params)} params", r.variant.repo_id]
        listed = every_layer and r.kept_experts is not None
        table.append([*cells, "" if listed else kept_text(r.kept_experts)])
    widths = [max(len(cells[i]) for cells in table) for i in range(len(head))]
    lines = []
    for index, cells in enumerate(table):
        padded = [c.ljust(w) for c, w in zip(cells[:-1], widths, strict=True)]
        lines.append("  ".join([*padded, cells[-1]]).rstrip())
        if index and not every_layer and rows[index - 1].action == "held":
            lines.append(f"    held: {rows[index - 1].reason}")  # the figure and the floor
        row = rows[index - 1] if index and every_layer else None
        if row is None:
            continue
        if online and row.reason:
            lines.append(f"    why: {row.reason}")
        for layer, experts in (row.kept_experts or {}).items():
            lines.append(f"    layer {layer:>2}: {' '.join(str(e) for e in experts)}")
    return lines


def action_counts(rows: list[PlanRow]) -> str:
    """`232 variants: 4 create, 228 no-op` (or `232 variants` offline)."""
    counts: dict[str, int] = {}
    for r in rows:
        if r.action is not None:
            counts[r.action] = counts.get(r.action, 0) + 1
    parts = ", ".join(f"{n} {action}" for action, n in sorted(counts.items()))
    return f"{len(rows)} variants" + (f": {parts}" if parts else "")


def markdown_table(rows: list[PlanRow]) -> str:
    """The plan as a Markdown table (for a GitHub job summary)."""
    head = (
        "| variant | repo | parameters | kept experts, layer 0 | action |\n|---|---|---:|---|---|\n"
    )
    body = "".join(
        f"| {r.variant.id} | `{r.variant.repo_id}` | {units.count(r.variant.total_params)} "
        f"({r.variant.total_params:,}) | {kept_text(r.kept_experts)} | {r.action or '-'} |\n"
        for r in rows
    )
    if any(r.action is not None for r in rows):
        todo = sum(1 for r in rows if r.action != "no-op")
        title = f"{len(rows)} variants, {todo} need work"
    else:
        title = f"{len(rows)} variants (not compared with the Hub: plan --hub)"
    return f"### hubbot plan: {title}\n\n{head}{body}\n"


@dataclass(frozen=True)
class Grouping:
    """How `github_matrices` puts variants into jobs.

    `by_domain`: a job never holds two domains; `per_job`: at most this many variants a
    job (None: no limit). Jobs never mix runner labels. Written `variant` (one a job),
    `domain`, `N` or `domain:N`.
    """

    by_domain: bool = False
    per_job: int | None = 1

    @classmethod
    def parse(cls, text: str) -> Grouping:
        match = re.fullmatch(r"(variant)|(domain)(?::(\d+))?|(\d+)", text.strip())
        if not match:
            raise InputError(f"--group {text!r}: use variant, domain, N or domain:N")
        if match.group(1):
            return cls()
        count = match.group(3) or match.group(4)
        if count is not None and int(count) < 1:
            raise InputError(f"--group {text!r}: a job holds at least one variant")
        return cls(by_domain=bool(match.group(2)), per_job=int(count) if count else None)


def job_groups(manifest: Manifest, grouping: Grouping) -> list[list[Variant]]:
    """Every variant of the manifest in jobs, in manifest order.

    Groups are formed over all variants (not only those needing work), so a repo always
    falls in the same job: job names are stable between runs and serve as concurrency keys.
    """
    runners = manifest.spec.ci
    groups: list[list[Variant]] = []
    for variant in manifest.variants:
        runner = runners.runners.get(variant.domain, runners.runner)
        last = groups[-1] if groups else None
        fits = (
            last is not None
            and runners.runners.get(last[0].domain, runners.runner) == runner
            and (not grouping.by_domain or last[0].domain == variant.domain)
            and (grouping.per_job is None or len(last) < grouping.per_job)
        )
        if fits:
            assert last is not None
            last.append(variant)
        else:
            groups.append([variant])
    return groups


def job_name(group: list[Variant]) -> str:
    """A job's stable name: its variant, or its first and last variant."""
    return group[0].id if len(group) == 1 else f"{group[0].id}..{group[-1].id}"


def github_matrices(
    manifest: Manifest,
    *,
    chunks: int = 1,
    online: bool = True,
    grouping: Grouping | None = None,
    points: Mapping[str, QualityPoint] | None = None,
) -> list[dict[str, list[dict[str, Any]]]]:
    """GitHub Actions matrices (`{"include": [...]}`) of the variants that need work.

    Without `grouping`, one job per variant (`variant`, `repo_id`, `action`, `runner`);
    with it, one job per group (`job`, `variants` comma-separated, `count`, `runner`),
    holding only the group's variants that need work. Split into `chunks` matrices of
    at most 250 jobs each; `online=False` lists every variant without asking the Hub.
    A variant held by the quality floor (see `plan_release`; with `points`, figures saved
    by `hubbot eval --save`) needs no job and is left out.
    """
    ci = manifest.spec.ci
    rows = {
        row.variant.id: row
        for row in _rows_for_matrix(manifest, online, points)
        if (row.action or "create") not in ("no-op", "held")
    }
    jobs: list[dict[str, Any]]
    if grouping is None:
        jobs = [
            {
                "variant": row.variant.id,
                "repo_id": row.variant.repo_id,
                "action": row.action or "create",
                "runner": ci.runners.get(row.variant.domain, ci.runner),
            }
            for row in rows.values()
        ]
    else:
        jobs = []
        for group in job_groups(manifest, grouping):
            todo = [v.id for v in group if v.id in rows]
            if todo:
                jobs.append(
                    {
                        "job": job_name(group),
                        "variants": ",".join(todo),
                        "count": len(todo),
                        "runner": ci.runners.get(group[0].domain, ci.runner),
                    }
                )
    if len(jobs) > chunks * MAX_JOBS:
        raise InputError(
            f"{manifest.path}: {len(jobs)} jobs need running, more than {chunks} chunks of "
            f"{MAX_JOBS} jobs hold; raise --chunks or group variants (--group)"
        )
    size = max(1, -(-len(jobs) // chunks))
    return [{"include": jobs[i * size : (i + 1) * size]} for i in range(chunks)]


@dataclass(frozen=True)
class JobDisk:
    """What one CI job of a grouping moves and holds, from the config's tensor shapes."""

    name: str
    variants: int
    download_bytes: int
    peak_disk_bytes: int


def job_disk(manifest: Manifest, grouping: Grouping) -> list[JobDisk]:
    """Per job: bytes of base downloaded (once a job) and peak disk (base + largest output).

    A job holds the base and at most one staged output at a time (`publish_release`).
    """

    config = manifest.base_config
    descriptor = descriptor_for(config)
    base = checkpoint_bytes(config, experts=descriptor.num_experts(config))
    out_layout = manifest.spec.output.format
    if out_layout != "mxfp4":
        out_layout = descriptor.dequantized_layout
    sizes: dict[int, int] = {}
    out = []
    for group in job_groups(manifest, grouping):
        for v in group:
            if v.experts not in sizes:
                sizes[v.experts] = checkpoint_bytes(config, experts=v.experts, layout=out_layout)
        largest = max(sizes[v.experts] for v in group)
        out.append(JobDisk(job_name(group), len(group), base, base + largest))
    return out


def _rows_for_matrix(
    manifest: Manifest, online: bool, points: Mapping[str, QualityPoint] | None
) -> list[PlanRow]:
    if online or points:
        return plan_rows(manifest, online=online, points=points)
    return [PlanRow(v, kept_experts=None) for v in manifest.variants]
