"""Command-line behaviour users and CI rely on: outputs, JSON, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.manifest import manifest_json_schema
from tests.fresh_process import heavy_imports

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "manifests" / "gpt-oss-20b.yaml"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_shipped_manifests_are_valid() -> None:
    code, out, _ = run("validate", str(REAL), str(ROOT / "manifests" / "demo.yaml"))
    assert code == 0
    assert "gpt-oss-20b.yaml: ok (232 variants)" in out
    assert "demo.yaml: ok (8 variants)" in out


def test_real_plan_names_232_variants_by_the_seed_scheme() -> None:
    code, out, _ = run("plan", str(REAL), "--json")
    assert code == 0
    rows = {row["variant"]: row for row in json.loads(out)}
    assert len(rows) == 232
    seed = rows["instruction_following-16"]
    assert seed["repo_id"].endswith(
        "/gpt-oss-11.4b-specialized-instruction_following-pruned-moe-only-16-experts"
    )
    assert rows["all-32"]["total_params"] == 20_914_757_184
    assert all(
        len(kept) == row["experts"]
        for row in rows.values()
        for kept in row["kept_experts"].values()
    )
    assert len(seed["kept_experts"]) == 24


def test_scores_json_ranks_every_expert_of_a_layer() -> None:
    code, out, _ = run("scores", str(REAL), "--domain", "science", "--layer", "3", "--json")
    assert code == 0
    data = json.loads(out)
    (layer,) = data["layers"]
    assert layer["layer"] == 3
    assert sorted(r["expert"] for r in layer["ranking"]) == list(range(32))


def test_scores_of_an_unknown_domain_is_bad_input() -> None:
    code, _, err = run("scores", str(REAL), "--domain", "sciense")
    assert code == 2
    assert "no domain 'sciense'" in err


def test_prune_with_a_broken_keep_file_is_bad_input(tmp_path: Path) -> None:
    keep = tmp_path / "keep.json"
    keep.write_text("[1, 2")
    code, _, err = run("prune", str(tmp_path / "src"), str(tmp_path / "dst"), "--keep", str(keep))
    assert code == 2
    assert str(keep) in err
    assert not (tmp_path / "dst").exists()


def test_published_schema_matches_the_code() -> None:
    shipped = json.loads((ROOT / "manifests" / "manifest.schema.json").read_text())
    assert shipped == manifest_json_schema(), (
        "run: hubbot schema --out manifests/manifest.schema.json"
    )


def test_prune_command_writes_a_checkpoint_transformers_expects(tmp_path: Path) -> None:
    from bot.fixtures import write_tiny_model
    from bot.verify import verify_structure

    src = write_tiny_model(tmp_path / "src", layout="mxfp4")
    keep = tmp_path / "keep.json"
    keep.write_text(json.dumps({"0": [0, 2, 5], "1": [1, 3, 7]}))
    code, out, err = run("prune", str(src), str(tmp_path / "dst"), "--keep", str(keep))
    assert code == 0, err
    assert "bytes written" in out
    verify_structure(tmp_path / "dst")
    config = json.loads((tmp_path / "dst" / "config.json").read_text())
    assert config["num_local_experts"] == 3

    # A bare prune of MXFP4 to MXFP4 checks the structure without the model libraries.
    args = ["prune", str(src), str(tmp_path / "again"), "--keep", str(keep)]
    assert heavy_imports(args) == ([0], [])
    assert _tree(tmp_path / "again") == _tree(tmp_path / "dst")


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_offline_commands_import_neither_torch_nor_transformers() -> None:
    """validate, an offline plan and the full matrix start without the model libraries."""
    codes, heavy = heavy_imports(
        ["validate", str(REAL)],
        ["plan", str(REAL), "--json"],
        ["matrix", str(REAL), "--all"],
        ["matrix", str(REAL), "--all", "--group", "domain"],
    )
    assert codes == [0, 0, 0, 0]
    assert heavy == []


def test_validate_loads_neither_the_hub_client_nor_the_picture_code() -> None:
    """Checking a manifest needs the card template and licence ids, not huggingface_hub's
    client (its ModelCard import) nor PIL: those load when a card is rendered."""
    codes, loaded = heavy_imports(
        ["validate", str(REAL)], modules=("huggingface_hub.hf_api", "PIL", "matplotlib")
    )
    assert codes == [0]
    assert loaded == []


def test_plan_prints_a_header_labelled_parameters_and_kept_experts() -> None:
    code, out, _ = run("plan", str(REAL))
    assert code == 0
    lines = out.splitlines()
    assert " ".join(lines[0].split()) == "variant experts parameters repo kept experts, layer 0"
    science = next(line for line in lines if line.startswith("science-16 "))
    kept = json.loads(run("plan", str(REAL), "--json", "--variant", "science-16")[1])[0]
    layer0 = " ".join(str(e) for e in kept["kept_experts"]["0"])
    assert "11.4B params" in science and f"{layer0} (+23 layers)" in science
    assert lines[-1] == "232 variants"
    assert len(lines) == 1 + 232 + 1


def test_plan_of_one_variant_lists_every_layer() -> None:
    code, out, _ = run("plan", str(REAL), "--variant", "science-16")
    assert code == 0
    rows = [line for line in out.splitlines() if line.startswith("    layer ")]
    assert len(rows) == 24 and rows[0].startswith("    layer  0: ")


def test_plan_summary_is_markdown_and_says_where_it_went(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    code, out, err = run("plan", str(REAL), "--summary")
    assert code == 0
    assert out.startswith("### hubbot plan: 232 variants (not compared with the Hub")
    assert "| variant | repo | parameters |" in out
    assert "GITHUB_STEP_SUMMARY is not set" in err

    target = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(target))
    code, out, err = run("plan", str(REAL), "--summary")
    assert code == 0 and target.read_text() == out
    assert f"appended to {target}" in err


def test_scores_say_what_the_order_is() -> None:
    code, out, _ = run("scores", str(REAL), "--domain", "science", "--layer", "0")
    assert code == 0
    header = out.splitlines()[0]
    assert "best first" not in out
    assert "alternated with all's order" in header and "not by score" in header


def test_validate_tells_a_workflow_whether_the_manifest_names_evaluation_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = tmp_path / "github-output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))
    demo = ROOT / "manifests" / "demo.yaml"
    code, out, err = run("validate", str(REAL), "--github-output")
    assert code == 0 and "gpt-oss-20b.yaml: ok (232 variants)" in out
    assert "names no evaluation text (evaluation=false written to $GITHUB_OUTPUT)" in err
    assert run("validate", str(demo), "--github-output")[0] == 0
    assert output.read_text() == "evaluation=false\nevaluation=true\n"

    code, _, err = run("validate", str(REAL), str(demo), "--github-output")
    assert code == 2 and "--github-output: name one manifest" in err
    broken = tmp_path / "broken.yaml"
    broken.write_text("base: {repo: nobody/nothing}\n")
    code, _, err = run("validate", str(broken), "--github-output")
    assert code == 2 and str(broken) in err
    monkeypatch.delenv("GITHUB_OUTPUT")
    code, _, err = run("validate", str(demo), "--github-output")
    assert code == 2 and "needs $GITHUB_OUTPUT" in err
    assert output.read_text() == "evaluation=false\nevaluation=true\n"  # nothing more written
