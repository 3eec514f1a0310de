"""Hostile manifests: each is exit 2 with FILE:LINE:COL, quickly, in bounded memory.

The cases of issue 18: format specs and conversions the naming template cannot take, a
range too large to build, deep nesting, devices and pipes in place of files, an alias
that expands a large value many times, and names the Hub would refuse.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.fixtures import write_tiny_model
from tests.test_manifest import GOOD, line_of, validate, write

ROOT = Path(__file__).resolve().parents[1]


def refused(path: Path, needle: str, column: int | None = None, *, text: str = GOOD) -> str:
    """Validate `path`; assert exit 2 locating `needle`'s line (and column), return the output."""
    started = time.perf_counter()
    code, out = validate(path)
    assert code == 2, out
    assert "Traceback" not in out
    assert time.perf_counter() - started < 20, "not answered quickly"
    line = line_of(text, needle)
    assert f"{path}:{line}:{column if column is not None else ''}" in out, out
    return out


@pytest.mark.parametrize(
    ("naming", "message"),
    [
        ("m-{params_b:d}", "Unknown format code 'd'"),
        ("m-{experts!z}", "Unknown conversion specifier z"),
        ("m-{experts:>100000000000}", "more than 96 characters"),
        ("m-{experts:{domain}}", "may not nest fields"),
        ("m-{}", "unknown placeholder {}"),
    ],
    ids=["format-code", "conversion", "width", "nested", "positional"],
)
def test_a_naming_template_that_cannot_be_filled_in(
    tmp_path: Path, naming: str, message: str
) -> None:
    text = GOOD.replace(
        '"gpt-oss-{params_b}b-specialized-{domain}-pruned-moe-only-{experts}-experts"', repr(naming)
    )
    out = refused(write(tmp_path, text), "naming:", 9, text=text)
    assert message in out


def test_an_expert_range_far_beyond_the_base_model(tmp_path: Path) -> None:
    text = GOOD.replace("counts: [4, 16]", "{min: 4, max: 1000000000000}")
    text = text.replace("experts:\n  {min", "experts: {min")
    out = refused(write(tmp_path, text), "max: 1000000000000", text=text)
    assert "expert count 1000000000000 is outside 4..32" in out


def test_deep_nesting(tmp_path: Path) -> None:
    text = GOOD + "extra: " + "[" * 5000 + "]" * 5000 + "\n"
    out = refused(write(tmp_path, text), "extra:", text=text)
    assert "nest deeper than" in out


def test_a_large_value_aliased_many_times(tmp_path: Path) -> None:
    big = "x" * 3_000_000
    text = GOOD.replace("  namespace: someone\n", f"  namespace: someone\nbig: &big {big}\n")
    text += "many: [" + ", ".join(["*big"] * 60_000) + "]\n"
    path = write(tmp_path, text)
    refused(path, "big: &big", 6, text=text)  # the value that expands
    started = time.perf_counter()
    result = CliRunner().invoke(cli, ["plan", str(path), "--hub", "--json"])
    assert result.exit_code == 2, result.output
    assert time.perf_counter() - started < 20


def _validate_in_a_process(path: str) -> subprocess.CompletedProcess[str]:
    code = "from bot.cli import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, "validate", path],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_dev_zero_as_the_manifest() -> None:
    run = _validate_in_a_process("/dev/zero")
    assert run.returncode == 2, run.stderr
    assert "/dev/zero:1:1: file is a character device, not a regular file" in run.stderr


def test_a_named_pipe_as_the_manifest(tmp_path: Path) -> None:
    fifo = tmp_path / "release.yaml"
    os.mkfifo(fifo)
    run = _validate_in_a_process(str(fifo))  # would block forever on a plain open()
    assert run.returncode == 2, run.stderr
    assert f"{fifo}:1:1: file is a named pipe" in run.stderr


def test_dev_zero_as_the_base_config(tmp_path: Path) -> None:
    text = GOOD.replace("config: base.config.json", "config: /dev/zero")
    path = write(tmp_path, text)
    run = _validate_in_a_process(str(path))
    assert run.returncode == 2, run.stderr
    line = line_of(text, "config: /dev/zero")
    assert f"{path}:{line}:11: cannot read base config: /dev/zero: is a character device" in (
        run.stderr
    )


@pytest.mark.parametrize("template", ["../../etc/passwd", "/etc/passwd"])
def test_a_card_template_outside_the_repository(tmp_path: Path, template: str) -> None:
    text = GOOD.replace("template: card.md.j2", f"template: {template}")
    out = refused(write(tmp_path, text), "template:", 13, text=text)
    assert "lies outside the repository" in out


def test_a_card_template_with_a_syntax_error_is_found_at_validation(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    card = tmp_path / "card.md.j2"
    card.write_text(card.read_text() + "\n{% if stats %}never closed\n")
    out = refused(path, "template:", 13)
    assert f"{card.resolve()}:" in out and "if" in out


def test_base_path_must_be_a_model_folder(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    text = GOOD.replace("  config: base.config.json", "  config: base.config.json\n  path: notes")
    out = refused(write(tmp_path, text), "path: notes", 9, text=text)
    assert "is not a model folder: it has no config.json" in out


def test_base_path_that_is_a_model_folder_is_accepted(tmp_path: Path) -> None:
    write_tiny_model(tmp_path / "tiny")
    text = GOOD.replace("  config: base.config.json", "  config: base.config.json\n  path: tiny")
    code, out = validate(write(tmp_path, text))
    assert code == 0, out


@pytest.mark.parametrize(
    ("old", "new", "needle", "message"),
    [
        ("repo: openai/gpt-oss-20b", "repo: ../../etc", "repo:", "is not a Hub repo id"),
        ("  template: card.md.j2", "  template: card.md.j2\n  license: my-own", "license:", (
            "license 'my-own' is not a Hub licence id"
        )),
        ("  template: card.md.j2", "  template: card.md.j2\n  license: other", "license:", (
            "license 'other' needs license_name"
        )),
        ("  template: card.md.j2", "  template: card.md.j2\n  datasets: [../../x]", "datasets:", (
            "'../../x' is not a Hub dataset id"
        )),
        ("  namespace: someone", "  namespace: someone\n  endpoint: file:///etc/passwd",
         "endpoint:", "must be an http(s) URL"),
        ("card:", "ci:\n  runners: {sciense: big-runner}\ncard:", "sciense", (
            "no domain 'sciense' (did you mean 'science'?)"
        )),
    ],
    ids=["base-repo", "licence", "other-without-name", "dataset", "endpoint", "runner"],
)  # fmt: skip
def test_names_the_hub_would_refuse(
    tmp_path: Path, old: str, new: str, needle: str, message: str
) -> None:
    text = GOOD.replace(old, new, 1)
    assert text != GOOD
    out = refused(write(tmp_path, text), needle, text=text)
    assert message in out


def test_other_licence_with_a_name_is_accepted(tmp_path: Path) -> None:
    text = GOOD.replace(
        "  template: card.md.j2",
        "  template: card.md.j2\n  license: other\n  license_name: my-licence-1.0\n"
        "  license_link: https://example.org/licence",
    )
    code, out = validate(write(tmp_path, text))
    assert code == 0, out


def test_a_base_config_with_an_absurd_layer_count(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    config = json.loads((tmp_path / "base.config.json").read_text())
    (tmp_path / "base.config.json").write_text(json.dumps({**config, "num_hidden_layers": 10**12}))
    out = refused(path, "config:", 11)
    assert "num_hidden_layers = 1000000000000 is outside 1..1,024" in out
