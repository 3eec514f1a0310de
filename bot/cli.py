"""The `hubbot` command line.

Every command CI reads has `--json`. Exit codes: 0 done, 1 failed, 2 bad input.
Commands are thin: they parse arguments, call one library function and print its result.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from bot import __version__
from bot.errors import HubbotError, InputError

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
@_errors_to_exit_codes
def validate(manifests: tuple[Path, ...]) -> None:
    """Check manifests; print every problem as FILE:LINE:COL: message."""
    from bot.manifest import load_manifest

    problems: list[str] = []
    for path in manifests:
        try:
            manifest = load_manifest(path)
        except InputError as exc:
            problems.append(str(exc))
            continue
        click.echo(f"{path}: ok ({len(manifest.variants)} variants)")
    if problems:
        raise InputError("\n".join(problems))


@cli.command()
@click.argument("manifest", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@_errors_to_exit_codes
def plan(manifest: Path, as_json: bool) -> None:
    """Show what each variant of MANIFEST is and needs."""
    from bot.manifest import load_manifest
    from bot.planning import offline_plan

    rows = offline_plan(load_manifest(manifest))
    if as_json:
        _print_json(rows)
        return
    for row in rows:
        click.echo(f"{row['variant']:<32} {row['repo_id']}  ({row['total_params']:,} params)")


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
