"""Quality in a release: manifest checks, `hubbot eval`, figures in hubbot.json and the card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from huggingface_hub import ModelCard

from bot.card import render_card, write_card
from bot.cli import cli
from bot.errors import InputError
from bot.manifest import load_manifest
from bot.provenance import read_provenance
from tests.fresh_process import heavy_imports
from tests.quality_release import write_release

VARIANTS = ["prose-2", "prose-4", "prose-6", "math-2", "math-4", "math-6"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`hubbot build` of math-4 from the release with evaluation text."""
    root = tmp_path_factory.mktemp("release")
    manifest = write_release(root)
    out = root / "math-4"
    args = ["build", str(manifest), "--variant", "math-4", "--out", str(out), "--device", "cpu"]
    result = CliRunner().invoke(cli, [*args, "--no-examples"])
    assert result.exit_code == 0, result.output
    return out


def _line_col(path: Path, needle: str) -> str:
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if needle in line:
            return f"{path}:{number}:{line.index(needle) + 1}"
    raise AssertionError(needle)


# ---------------------------------------------------------------- validation


def test_validating_evaluation_text_needs_no_model_library(tmp_path: Path) -> None:
    path = write_release(tmp_path, base=False, quality="quality: {max_kl: 0.5, min_top1: 0.2}")
    assert heavy_imports(["validate", str(path)]) == ([0], [])


def test_evaluation_text_that_overlaps_calibration_is_refused_where_it_stands(
    tmp_path: Path,
) -> None:
    path = write_release(tmp_path, base=False)
    text = path.read_text()
    # A math evaluation prompt that is a calibration prompt, in other spacing and case.
    text = text.replace(
        '        - "Is 91 a prime number? No: 91 is 7 times 13."',
        '        - "what is 17  TIMES 23?"',
    )
    path.write_text(text)
    with pytest.raises(InputError) as caught:
        load_manifest(path)
    (problem,) = caught.value.problems
    assert str(problem).startswith(_line_col(path, '"what is 17  TIMES 23?"'))
    assert "evaluation prompt 2 overlaps the calibration text of domain 'math'" in str(problem)
    assert "equals calibration prompt 1" in str(problem)


def test_a_shared_line_and_a_shared_file_are_overlaps(tmp_path: Path) -> None:
    path = write_release(tmp_path, base=False)
    folder = path.parent
    shared = "Most members agreed that longer evening hours would help students and workers."
    (folder / "prose-cal.txt").write_text(f"Some other words.\n{shared}\n")
    first = '      prompts:\n        - "What is the capital of France?"'
    text = path.read_text().replace(first, "      files: [prose-cal.txt]\n" + first)
    # The math domain evaluates on its own calibration file.
    (folder / "math.txt").write_text("What is 3 + 4? It is 7.\n")
    text = text.replace(
        '        - "Solve for x: 2x + 3 = 11."',
        '        - "Solve for x: 2x + 3 = 11."\n      files: [math.txt]',
    ).replace(
        '        - "Is 91 a prime number? No: 91 is 7 times 13."',
        '        - "Is 91 a prime number? No: 91 is 7 times 13."\n      files: [math.txt]',
    )
    path.write_text(text)
    with pytest.raises(InputError) as caught:
        load_manifest(path)
    messages = [str(p) for p in caught.value.problems]
    assert len(messages) == 2, messages
    general, math = messages
    # The general text (general.txt, line 2) shares a line with the prose calibration file.
    assert general.startswith(_line_col(path, "files: [general.txt]").rsplit(":", 1)[0])
    assert "evaluation file general.txt overlaps the calibration text of domain 'prose'" in general
    assert "shares line 2 'most members agreed that longer eveni...'" in general
    assert "with calibration file prose-cal.txt (line 2)" in general
    assert "evaluation file math.txt overlaps" in math and "is calibration file math.txt" in math


def test_a_floor_needs_text_in_every_domain(tmp_path: Path) -> None:
    path = write_release(tmp_path, base=False, quality="quality: {max_kl: 0.5}")
    text = path.read_text()
    start = text.index('    evaluation:\n      prompts:\n        - "What is 12')
    end = text.index('    examples: ["What is 2 + 2?"]')
    path.write_text(text[:start] + text[end:])
    with pytest.raises(InputError, match=r"domain 'math' needs 'evaluation' text"):
        load_manifest(path)
    path.write_text(text.replace("files: [general.txt]", "files: [missing.txt]"))
    with pytest.raises(InputError, match=r"release.yaml:\d+:\d+: evaluation file missing.txt"):
        load_manifest(path)
    path.write_text(text.replace("quality: {max_kl: 0.5}", "quality: {}"))
    with pytest.raises(InputError, match=r"a quality floor needs 'max_kl' or 'min_top1'"):
        load_manifest(path)


# ---------------------------------------------------------------- build, card


def test_a_built_repo_carries_its_figures_and_how_to_measure_them_again(built: Path) -> None:
    record = read_provenance(built)
    quality = record.quality
    assert quality is not None
    assert (quality.device, quality.dtype, quality.method) == ("cpu", "float32", "router-mask")
    assert quality.attention == "eager"  # flex attention only on CUDA
    assert [p.variant for p in quality.family] == VARIANTS
    assert set(quality.texts) == {"general", "domain:prose", "domain:math"}
    assert quality.texts["general"].tokens == 96  # the budget; the prompts give fewer
    assert quality.texts["domain:math"].source == "2 prompts"
    point = quality.point("math-4")
    assert point is not None and point.domain_text and point.general_text
    assert point.domain_text.tokens == quality.texts["domain:math"].tokens
    assert point.domain_text.kl > 0 and 0 < point.domain_text.top1 < 1
    by_count = {p.experts: p.domain_text.kl for p in quality.family if p.domain == "math"}
    assert by_count[2] > by_count[6]  # keeping more experts stays closer to the base
    assert quality.command == "hubbot eval manifests/release.yaml --device cpu"
    assert "quality.png" in {p.name for p in built.iterdir()}


def test_the_card_shows_the_variant_among_its_family(built: Path) -> None:
    record = read_provenance(built)
    text = (built / "README.md").read_text()
    section = text[text.index("## Quality against the base model") : text.index("## Usage")]
    point = record.quality.point("math-4")
    assert f"| Math evaluation text | {point.domain_text.tokens} |" in section
    rows = [line for line in section.splitlines() if line.startswith("| ") and "**" in line]
    assert len(rows) == 1 and rows[0].startswith("| **4 (this model)** |")
    family_rows = [line for line in section.splitlines() if line[:4] in ("| 2 ", "| 6 ")]
    assert len(family_rows) == 2  # only the Math variants, not Prose's
    assert "not task accuracy" in section
    assert "hubbot eval manifests/release.yaml --device cpu" in section


def test_model_index_parses_back_with_huggingface_hub(built: Path) -> None:
    record = read_provenance(built)
    point = record.quality.point("math-4")
    results = ModelCard.load(built / "README.md").data.eval_results
    found = {(r.dataset_name, r.metric_type): r.metric_value for r in results}
    assert found[("Math evaluation text", "kl_divergence")] == round(point.domain_text.kl, 6)
    assert found[("Math evaluation text", "top1_agreement")] == round(point.domain_text.top1, 6)
    assert found[("General evaluation text", "perplexity")] == round(
        point.general_text.perplexity, 6
    )
    assert {r.task_type for r in results} == {"text-generation"}


def test_cards_regen_from_hubbot_json_alone_gives_the_same_files(
    built: Path, tmp_path: Path
) -> None:
    record = read_provenance(built)
    template = built.parent / "templates" / "model_card.md.j2"
    assert render_card(record, template) == (built / "README.md").read_text()
    written = write_card(tmp_path, record, template)
    assert [p.name for p in written] == ["README.md", "experts.png", "quality.png"]
    for name in ("README.md", "experts.png", "quality.png"):
        assert (tmp_path / name).read_bytes() == (built / name).read_bytes(), name


# ---------------------------------------------------------------- hubbot eval


def test_hubbot_eval_gives_the_built_figures_again(built: Path) -> None:
    manifest = built.parent / "manifests" / "release.yaml"
    runner = CliRunner()
    result = runner.invoke(cli, ["eval", str(manifest), "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    record = read_provenance(built)
    measured = {row["variant"]: row for row in data["variants"]}
    assert list(measured) == VARIANTS
    for point in record.quality.family:
        assert measured[point.variant]["domain_text"] == point.domain_text.model_dump()
        assert measured[point.variant]["general_text"] == point.general_text.model_dump()
    assert data["texts"]["domain:math"]["text_digest"] == (
        record.quality.texts["domain:math"].text_digest
    )

    # One domain, one variant: the same figures for the rows measured.
    result = runner.invoke(
        cli, ["eval", str(manifest), "--device", "cpu", "--json", "--variant", "math-2"]
    )
    (row,) = json.loads(result.stdout)["variants"]
    assert row["domain_text"] == measured["math-2"]["domain_text"]
    result = runner.invoke(cli, ["eval", str(manifest), "--device", "cpu", "--domain", "prose"])
    assert result.exit_code == 0, result.output
    assert "prose-4" in result.stdout and "math-4" not in result.stdout
    result = runner.invoke(cli, ["eval", str(manifest), "--domain", "poetry"])
    assert result.exit_code == 2 and "no domain 'poetry'" in result.output


def test_builds_reuse_saved_figures_while_they_are_current(built: Path, tmp_path: Path) -> None:
    manifest = built.parent / "manifests" / "release.yaml"
    saved = tmp_path / "quality.json"
    runner = CliRunner()
    result = runner.invoke(cli, ["eval", str(manifest), "--device", "cpu", "--save", str(saved)])
    assert result.exit_code == 0, result.output
    data = json.loads(saved.read_text())
    assert set(data["weights"]) == set(VARIANTS)
    row = next(p for p in data["quality"]["family"] if p["variant"] == "math-2")
    row["domain_text"]["kl"] = 9.87654  # marks figures that can only come from the file
    saved.write_text(json.dumps(data))

    def build(name: str) -> Path:
        out = tmp_path / name
        args = ["build", str(manifest), "--variant", "math-2", "--out", str(out)]
        result = runner.invoke(
            cli, [*args, "--device", "cpu", "--no-examples", "--quality", str(saved)]
        )
        assert result.exit_code == 0, result.output
        return out

    out = build("from-file")
    assert read_provenance(out).quality.point("math-2").domain_text.kl == 9.87654
    assert "| **2 (this model)** | **9.88** |" in (out / "README.md").read_text()

    # Other evaluation text: the saved figures are stale, so the build measures again.
    text = manifest.read_text().replace("Is 91 a prime number?", "Is 97 a prime number?")
    manifest.write_text(text)
    try:
        fresh = read_provenance(build("measured")).quality.point("math-2").domain_text.kl
    finally:
        manifest.write_text(text.replace("Is 97 a prime number?", "Is 91 a prime number?"))
    assert fresh != 9.87654 and fresh > 0
