"""The `hubbot` command line.

Every command CI reads has `--json`. Exit codes: 0 done, 1 failed, 2 bad input.
Commands are thin: they parse arguments, call one library function and print its result.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from bot import __version__
from bot.errors import HubbotError, InputError

if TYPE_CHECKING:  # bot.release loads huggingface_hub: only publish and cards need it
    from bot.release import Outcome

F = TypeVar("F", bound=Callable[..., Any])


def _errors_to_exit_codes(func: F) -> F:
    """Print hubbot's own errors plainly (no traceback) and exit 2 (input) or 1 (other)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except InputError as exc:
            click.echo(str(exc), err=True)
            sys.exit(2)
        except HubbotError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=False))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hubbot")
def cli() -> None:
    """Publish families of pruned Mixture-of-Experts models to the Hugging Face Hub."""


@cli.command()
@click.argument("manifests", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--github-output",
    is_flag=True,
    help="Write evaluation=true|false (whether the one manifest names evaluation text) "
    "to $GITHUB_OUTPUT, for the workflow's `hubbot eval` job.",
)
@_errors_to_exit_codes
def validate(manifests: tuple[Path, ...], github_output: bool) -> None:
    """Check manifests; print every problem as FILE:LINE:COL: message."""
    from bot.manifest import load_manifest
    from bot.quality.release import evaluation_enabled

    target = os.environ.get("GITHUB_OUTPUT")
    if github_output and len(manifests) != 1:
        raise InputError("--github-output: name one manifest")
    if github_output and not target:
        raise InputError("--github-output needs $GITHUB_OUTPUT (set by GitHub Actions)")
    problems: list[str] = []
    for path in manifests:
        try:
            manifest = load_manifest(path)
        except InputError as exc:
            problems.append(str(exc))
            continue
        click.echo(f"{path}: ok ({len(manifest.variants)} variants)")
        if github_output and target:
            measured = evaluation_enabled(manifest)
            with open(target, "a", encoding="utf-8") as out:
                out.write(f"evaluation={'true' if measured else 'false'}\n")
            click.echo(
                f"{path}: {'names' if measured else 'names no'} evaluation text "
                f"(evaluation={str(measured).lower()} written to $GITHUB_OUTPUT)",
                err=True,
            )
    if problems:
        raise InputError("\n".join(problems))


@cli.command()
@click.argument("manifest", type=click.Path(path_type=Path))
@click.option("--hub", "online", is_flag=True, help="Compare with what the Hub holds.")
@click.option("--variant", "variant_ids", multiple=True, help="Only these variants.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option(
    "--summary",
    is_flag=True,
    help="Print the Markdown summary instead, and append it to $GITHUB_STEP_SUMMARY if set.",
)
@click.option(
    "--eval", "measure", is_flag=True, help="Measure quality; hold variants below the floor."
)
@click.option("--device", help="cuda, mps or cpu for --eval (default: the best available).")
@click.option(
    "--quality",
    "quality_file",
    type=click.Path(path_type=Path),
    help="Figures saved by `hubbot eval --save` (those still current are used).",
)
@_errors_to_exit_codes
def plan(
    manifest: Path,
    online: bool,
    variant_ids: tuple[str, ...],
    as_json: bool,
    summary: bool,
    measure: bool,
    device: str | None,
    quality_file: Path | None,
) -> None:
    """Show what each variant of MANIFEST is and (with --hub) what it needs.

    A row per variant: its repo, parameters and the experts it keeps (layer 0; every
    layer when --variant names a few).

    A variant below the manifest's quality floor shows as `held`, with the figure and the
    floor: measured by --eval, read from --quality, or from its published hubbot.json.
    """
    from bot.manifest import load_manifest
    from bot.overview import action_counts, markdown_table, plan_rows, text_table

    loaded = load_manifest(manifest)
    points = _points(loaded, quality_file)
    if measure:
        from bot.quality.release import evaluate_release

        points = evaluate_release(loaded, variant_ids=variant_ids, device=device).points()
    rows = plan_rows(loaded, online=online, variant_ids=variant_ids, points=points)
    if as_json:
        _print_json([row.to_json() for row in rows])
    elif summary:
        click.echo(markdown_table(rows), nl=False)
    else:
        for line in text_table(rows, every_layer=bool(variant_ids) and len(rows) <= 4):
            click.echo(line)
        click.echo(action_counts(rows))
    if summary:
        target = os.environ.get("GITHUB_STEP_SUMMARY")
        if target:
            with open(target, "a", encoding="utf-8") as out:
                out.write(markdown_table(rows))
            click.echo(f"plan summary appended to {target}", err=True)
        else:
            click.echo("$GITHUB_STEP_SUMMARY is not set: the summary is printed only", err=True)


@cli.command()
@click.argument("manifest", type=click.Path(path_type=Path))
@click.option("--variant", "variant_id", required=True, help="Variant id, e.g. science-16.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Folder to stage.")
@click.option("--device", help="cuda, mps or cpu (default: the best available).")
@click.option("--no-examples", is_flag=True, help="Skip the example runs.")
@click.option("--no-eval", is_flag=True, help="Skip the quality evaluation.")
@click.option(
    "--quality",
    "quality_file",
    type=click.Path(path_type=Path),
    help="Figures saved by `hubbot eval --save` (measured again if not current).",
)
@_errors_to_exit_codes
def build(
    manifest: Path,
    variant_id: str,
    out: Path,
    device: str | None,
    no_examples: bool,
    no_eval: bool,
    quality_file: Path | None,
) -> None:
    """Stage one variant's repo folder: weights, config, tokenizer, card, hubbot.json.

    Where the manifest names evaluation text, the whole release is measured against the
    base model (one load), so that the card shows this variant among its family.
    """
    from bot.build import build_variant
    from bot.manifest import load_manifest

    loaded = load_manifest(manifest)
    result = build_variant(
        loaded,
        loaded.variant(variant_id),
        out,
        device=device,
        examples=not no_examples,
        evaluate=not no_eval,
        saved_quality=quality_file,
    )
    click.echo(f"{result.variant.id}: staged in {result.folder}")


@cli.command()
@click.argument("manifest", type=click.Path(path_type=Path))
@click.option(
    "--variant",
    "variant_ids",
    multiple=True,
    help="Only these variants (repeatable, or comma-separated as in a grouped matrix job).",
)
@click.option("--dry-run", is_flag=True, help="Plan only; change nothing.")
@click.option("--device", help="cuda, mps or cpu for the example runs.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcomes as JSON.")
@click.option(
    "--quality",
    "quality_file",
    type=click.Path(path_type=Path),
    help="Figures saved by `hubbot eval --save` (measured again if not current).",
)
@_errors_to_exit_codes
def publish(
    manifest: Path,
    variant_ids: tuple[str, ...],
    dry_run: bool,
    device: str | None,
    as_json: bool,
    quality_file: Path | None,
) -> None:
    """Build and publish what the plan says, one commit per variant."""
    from bot.base import endpoint_for
    from bot.hub.publish import connect
    from bot.manifest import load_manifest
    from bot.release import publish_release

    loaded = load_manifest(manifest)
    outcomes = publish_release(
        loaded,
        connect(endpoint_for(loaded)),
        variant_ids=[v for value in variant_ids for v in value.split(",") if v.strip()],
        dry_run=dry_run,
        device=device,
        saved_quality=quality_file,
        on_outcome=None if as_json else _echo_outcome,
    )
    _finish(outcomes, as_json)


@cli.command()
@click.argument("manifest", type=click.Path(path_type=Path))
@click.option("--regen", is_flag=True, required=True, help="Re-render from hubbot.json.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcomes as JSON.")
@click.option(
    "--quality",
    "quality_file",
    type=click.Path(path_type=Path),
    help="Figures saved by `hubbot eval --save`: family tables behind them are updated.",
)
@_errors_to_exit_codes
def cards(manifest: Path, regen: bool, as_json: bool, quality_file: Path | None) -> None:
    """Nightly: re-render every published card; commit only where it changed.

    Nothing is measured: each card is rendered from its hubbot.json, and with --quality
    from the saved figures where its family table (every count of its domain) is behind
    them. A variant held by the quality floor and never published is reported as held.
    """
    from bot.base import endpoint_for
    from bot.hub.publish import connect
    from bot.manifest import load_manifest
    from bot.release import regenerate_cards

    loaded = load_manifest(manifest)
    outcomes = regenerate_cards(
        loaded,
        connect(endpoint_for(loaded)),
        saved_quality=quality_file,
        on_outcome=None if as_json else _echo_outcome,
    )
    _finish(outcomes, as_json)


@cli.command()
@click.argument("manifest", type=click.Path(path_type=Path))
@click.option(
    "--all", "everything", is_flag=True, help="Every variant, not only those needing work."
)
@click.option(
    "--chunks",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Split into this many matrices.",
)
@click.option(
    "--group",
    "group",
    metavar="variant|domain|N|domain:N",
    help="Jobs of several variants, each fetching the base once: all counts of a domain, "
    "N variants, or both limits. Default: one job per variant.",
)
@click.option("--github-output", is_flag=True, help="Write chunk-N=... to $GITHUB_OUTPUT.")
@click.option(
    "--quality",
    "quality_file",
    type=click.Path(path_type=Path),
    help="Figures saved by `hubbot eval --save`: variants below the floor are left out.",
)
@_errors_to_exit_codes
def matrix(
    manifest: Path,
    everything: bool,
    chunks: int,
    group: str | None,
    github_output: bool,
    quality_file: Path | None,
) -> None:
    """GitHub Actions matrix JSON of the variants that need work.

    Variants held by the quality floor (figures published or saved) are left out.
    """
    from bot.manifest import load_manifest
    from bot.overview import Grouping, github_matrices

    grouping = Grouping.parse(group) if group is not None else None
    loaded = load_manifest(manifest)
    points = _points(loaded, quality_file)
    parts = github_matrices(
        loaded, chunks=chunks, online=not everything, grouping=grouping, points=points
    )
    if github_output:
        target = os.environ.get("GITHUB_OUTPUT")
        if not target:
            raise InputError("--github-output needs $GITHUB_OUTPUT (set by GitHub Actions)")
        with open(target, "a", encoding="utf-8") as out:
            for i, part in enumerate(parts):
                out.write(f"chunk-{i}={json.dumps(part) if part['include'] else ''}\n")
    _print_json(parts if chunks > 1 else parts[0])


@cli.command("eval")
@click.argument("manifest", type=click.Path(path_type=Path))
@click.option("--domain", "domain_ids", multiple=True, help="Only this domain (repeatable).")
@click.option("--variant", "variant_ids", multiple=True, help="Only this variant (repeatable).")
@click.option("--device", help="cuda, mps or cpu (default: the best available).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option(
    "--save", type=click.Path(path_type=Path), help="Save the figures for plan/matrix --quality."
)
@_errors_to_exit_codes
def evaluate(
    manifest: Path,
    domain_ids: tuple[str, ...],
    variant_ids: tuple[str, ...],
    device: str | None,
    as_json: bool,
    save: Path | None,
) -> None:
    """Measure each variant against the base model: KL, top-1 agreement, perplexity.

    One load of the base model; each variant is its router with the removed experts masked,
    on its domain's evaluation text and on the general text. Figures are closeness to the
    base, not task accuracy.
    """
    from bot.manifest import load_manifest
    from bot.quality.release import evaluate_release
    from bot.quality.report import quality_json, quality_table

    loaded = load_manifest(manifest)
    result = evaluate_release(loaded, variant_ids=variant_ids, domain_ids=domain_ids, device=device)
    if save is not None:
        from bot.quality.saved import save_quality

        save_quality(save, loaded, result)
    if as_json:
        _print_json(quality_json(loaded, result))
        return
    from rich.console import Console

    Console().print(quality_table(loaded, result))


@cli.command()
@click.argument("src", type=click.Path(path_type=Path))
@click.argument("dst", type=click.Path(path_type=Path))
@click.option(
    "--keep",
    "keep_file",
    required=True,
    type=click.Path(path_type=Path),
    help='JSON: {"layer": [expert, ...], ...}',
)
@click.option("--dtype", type=click.Choice(["source", "bf16"]), default="source", show_default=True)
@click.option("--max-shard-bytes", type=int, default=5 * 1024**3, show_default=True)
@_errors_to_exit_codes
def prune(src: Path, dst: Path, keep_file: Path, dtype: str, max_shard_bytes: int) -> None:
    """Low level: copy checkpoint SRC to DST keeping only the listed experts."""
    from bot.prune import prune_checkpoint
    from bot.pruning.checks import load_keep

    keep = load_keep(keep_file)
    try:
        # the low-level command's folder carries its own record: hubbot.json written by the pruner
        result = prune_checkpoint(
            src,
            dst,
            keep,
            dtype=dtype,
            max_shard_bytes=max_shard_bytes,
            write_record=True,  # type: ignore[arg-type]
        )
    except OSError as exc:  # the disk, not the input: a full disk, a folder we may not write
        where = exc.filename or dst
        raise HubbotError(f"{where}: {exc.strerror or exc}; {dst} was left as it was") from None
    click.echo(f"{result.path}: {result.bytes_written:,} bytes written, {result.bytes_read:,} read")


@cli.command()
@click.argument("manifest", type=click.Path(path_type=Path))
@click.option("--domain", "domain_id", required=True, help="Domain id.")
@click.option("--layer", type=int, help="Only this layer.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.option("--save", type=click.Path(path_type=Path), help="Save the statistics here.")
@_errors_to_exit_codes
def scores(
    manifest: Path, domain_id: str, layer: int | None, as_json: bool, save: Path | None
) -> None:
    """A domain's expert order per layer: the order variants keep them in.

    A variant with N experts keeps each layer's first N. For `frequency` and `router_mass`
    that is by score, highest first; for `interleave` and `inverse` it is not (see the
    header line), so the scores shown need not descend.
    """
    from bot.manifest import load_manifest
    from bot.selection.select import domain_ranking, domain_statistics
    from bot.selection.statistics import save_statistics

    loaded = load_manifest(manifest)
    try:
        loaded.domain(domain_id)
    except KeyError:
        raise InputError(f"{manifest}: no domain {domain_id!r}") from None
    ranking = domain_ranking(loaded, domain_id)
    if save is not None:
        save_statistics(domain_statistics(loaded, domain_id), save)
    data = ranking.to_json(layer)
    if as_json:
        _print_json(data)
        return
    click.echo(
        f"{domain_id}: strategy {data.get('strategy')}, scores are {data.get('metric')}; "
        f"order: {_order_words(loaded.domain(domain_id).selection)}"
    )
    for row in data["layers"]:
        ranked = " ".join(f"{r['expert']}({r['score']:.3f})" for r in row["ranking"])
        click.echo(f"layer {row['layer']:>2}: {ranked}")


def _order_words(selection: Any) -> str:
    """What the order of `hubbot scores` is, for a domain's selection rule."""
    strategy = selection.strategy
    if strategy == "interleave":
        return (
            f"this domain's ranking alternated with {selection.with_}'s order, each expert "
            "once (not by score); a variant keeps the first N"
        )
    if strategy == "inverse":
        return f"{selection.of}'s order reversed (not by score); a variant keeps the first N"
    return "by score, highest first, experts never met last; a variant keeps the first N"


@cli.group()
def hub() -> None:
    """The local Hub-compatible server."""


@hub.command("serve")
@click.option(
    "--root",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder holding the repos (created if missing; a restart serves them again).",
)
@click.option("--port", default=0, show_default=True, help="Port (0: any free port).")
@click.option(
    "--token",
    "tokens",
    multiple=True,
    envvar="HUBBOT_HUB_TOKENS",
    help="An accepted token (repeatable; or HUBBOT_HUB_TOKENS, space-separated). "
    "None given: any token is accepted.",
)
@_errors_to_exit_codes
def hub_serve(root: Path, port: int, tokens: tuple[str, ...]) -> None:
    """Serve a local Hub on 127.0.0.1 until Ctrl-C.

    Clients set HF_ENDPOINT=<url> and HF_HUB_DISABLE_XET=1.
    """
    from bot.localhub.server import serve

    serve(root, port=port, tokens=list(tokens) or None)


@cli.command()
@click.option(
    "--workdir",
    type=click.Path(path_type=Path),
    default=Path(".hubbot/demo"),
    show_default=True,
    help="Where the local Hub and builds live.",
)
@click.option(
    "--serve", "keep_serving", is_flag=True, help="Keep the local Hub up afterwards, to browse."
)
@click.option("--port", default=0, show_default=True, help="The local Hub's port (0: any free).")
@click.option(
    "--manifest",
    "manifest_path",
    type=click.Path(path_type=Path),
    default=Path("manifests/demo.yaml"),
    show_default=True,
    help="The demo release (manifests/demo-qwen3-moe.yaml: a Qwen3-MoE one).",
)
@_errors_to_exit_codes
def demo(workdir: Path, keep_serving: bool, port: int, manifest_path: Path) -> None:
    """Build and publish the demo release to a local Hub (the embedded defaults)."""
    from bot.demo import run_demo

    run_demo(
        workdir, manifest_path=manifest_path, keep_serving=keep_serving, port=port, echo=click.echo
    )


def _points(manifest: Any, quality_file: Path | None) -> Any:
    if quality_file is None:
        return None
    from bot.quality.saved import current_points

    return current_points(quality_file, manifest)


def _echo_outcome(outcome: Outcome) -> None:
    result = outcome.result
    if outcome.error:
        click.echo(f"FAILED  {outcome.variant.id}: {outcome.error}", err=True)
    elif outcome.action == "held":
        click.echo(f"{outcome.action:<9} {outcome.variant.id}: {outcome.reason}")
    elif result is None:
        click.echo(f"{outcome.action:<9} {outcome.variant.id}: nothing to do")
    else:
        commit = (result.commit or "no commit")[:12]
        click.echo(
            f"{outcome.action:<9} {outcome.variant.id}: {commit}, {len(result.uploaded)} files, "
            f"{result.bytes_uploaded:,} bytes"
        )


def _finish(outcomes: list[Outcome], as_json: bool) -> None:
    if as_json:
        _print_json([_outcome_json(o) for o in outcomes])
    failed = [o for o in outcomes if o.error]
    if failed:
        raise HubbotError(f"{len(failed)} of {len(outcomes)} variants failed")


def _outcome_json(outcome: Outcome) -> dict[str, Any]:
    result = outcome.result
    return {
        "variant": outcome.variant.id,
        "repo_id": outcome.variant.repo_id,
        "action": str(outcome.action),
        "commit": result.commit if result else None,
        "uploaded": list(result.uploaded) if result else [],
        "deleted": list(result.deleted) if result else [],
        "bytes_uploaded": result.bytes_uploaded if result else 0,
        "error": outcome.error,
        "reason": outcome.reason,
    }


@cli.command()
@click.option("--out", type=click.Path(path_type=Path), help="Write here instead of stdout.")
def schema(out: Path | None) -> None:
    """Print the manifest JSON Schema (for editors)."""
    from bot.manifest import manifest_json_schema

    text = json.dumps(manifest_json_schema(), indent=2) + "\n"
    if out:
        out.write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)


def main() -> None:
    """Console-script entry point."""
    cli()
