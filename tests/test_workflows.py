"""The GitHub Actions workflows lint clean and hold no logic beyond calling nox sessions.

A manifest with evaluation text is measured once (quality.yml's eval job) and every later
job reads the figures (`--quality quality.json`); the hubbot commands of those steps are
run here as the workflows run them, on a small release and the local Hub.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from huggingface_hub import HfApi

from bot.cli import cli
from bot.manifest import load_manifest
from bot.provenance import read_provenance
from bot.quality import release as release_module
from bot.quality.saved import current_record
from tests.quality_release import write_release

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def _nox_sessions() -> dict[str, tuple[str, ...]]:
    """Each nox session by name (`name=` or the function's), with the hubbot command it
    runs (the string arguments of its `session.run("hubbot", ...)`; () if none)."""
    sessions = {}
    for node in ast.parse((ROOT / "noxfile.py").read_text()).body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            if isinstance(decorator, ast.Call) and ast.unparse(decorator.func) == "nox.session":
                named = [k.value for k in decorator.keywords if k.arg == "name"]
                name = ast.literal_eval(named[0]) if named else node.name
                command: tuple[str, ...] = ()
                for call in ast.walk(node):
                    if isinstance(call, ast.Call) and ast.unparse(call.func) == "session.run":
                        words = [a.value for a in call.args if isinstance(a, ast.Constant)]
                        if words and words[0] == "hubbot":
                            command = tuple(words[1:])
                sessions[name] = command
    return sessions


SESSIONS = _nox_sessions()
NOX_SESSIONS = set(SESSIONS)
QUALITY = "--quality quality.json"
MEASURED = "needs.quality.outputs.evaluation == 'true'"
NOT_MEASURED = "needs.quality.outputs.evaluation != 'true'"


def test_workflows_pass_actionlint() -> None:
    binary = shutil.which("actionlint")
    if binary is None:
        pytest.fail("actionlint is not installed (it is in the [test] extra)")
    result = subprocess.run(
        [binary, "-no-color", *map(str, WORKFLOWS)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_every_run_step_is_pip_install_nox_or_a_nox_session(workflow: Path) -> None:
    doc = yaml.safe_load(workflow.read_text())
    runs = [
        step["run"]
        for job in doc["jobs"].values()
        for step in job.get("steps", [])
        if "run" in step
    ]
    for command in runs:
        if command == "python -m pip install nox":
            continue
        match = re.fullmatch(r"nox -s (\w+)( -- .*)?", command.strip())
        assert match, f"{workflow.name}: step holds logic of its own: {command!r}"
        assert match.group(1) in NOX_SESSIONS, f"{workflow.name}: no nox session {match.group(1)}"


def test_publish_jobs_never_publish_one_repo_twice_at_once() -> None:
    doc = yaml.safe_load((ROOT / ".github/workflows/publish-variants.yml").read_text())
    job = doc["jobs"]["variants"]
    # grouped jobs: a repo always falls in the same job (tests/test_release.py checks)
    assert job["concurrency"]["group"] == "publish-${{ matrix.job }}"
    assert job["concurrency"]["cancel-in-progress"] is False
    assert job["runs-on"] == "${{ matrix.runner }}"


# ---------------------------------------------------------------- quality figures


def _doc(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())


def _on(doc: dict[str, Any]) -> dict[str, Any]:
    return doc.get("on") or doc[True]  # YAML 1.1 reads the key `on` as True


def _steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return job["steps"]


def _run(step: dict[str, Any]) -> str:
    return " ".join(step["run"].split())


def _runs(job: dict[str, Any], needle: str) -> list[dict[str, Any]]:
    return [s for s in _steps(job) if needle in s.get("run", "")]


def test_nox_sessions_are_parsed_with_the_commands_they_run() -> None:
    assert {"eval", "validate", "matrix", "publish", "cards"} <= NOX_SESSIONS
    assert SESSIONS["eval"] == ("eval",) and SESSIONS["cards"] == ("cards", "--regen")


def test_the_eval_job_runs_once_and_only_for_a_manifest_with_evaluation_text() -> None:
    doc = _doc("quality.yml")
    inputs = _on(doc)["workflow_call"]["inputs"]
    assert inputs["runner"]["default"] == "ubuntu-latest"
    manifest, evaluate = doc["jobs"]["manifest"], doc["jobs"]["eval"]
    check = next(s for s in _steps(manifest) if s.get("id") == "validate")
    assert _run(check) == 'nox -s validate -- "$MANIFEST" --github-output'
    assert manifest["outputs"]["evaluation"] == "${{ steps.validate.outputs.evaluation }}"
    assert _on(doc)["workflow_call"]["outputs"]["evaluation"]["value"] == (
        "${{ jobs.manifest.outputs.evaluation }}"
    )
    assert evaluate["needs"] == "manifest"
    assert evaluate["if"] == "needs.manifest.outputs.evaluation == 'true'"
    assert evaluate["runs-on"] == "${{ inputs.runner }}"
    assert [_run(s) for s in _runs(evaluate, "nox -s eval")] == [
        'nox -s eval -- "$MANIFEST" --save quality.json'
    ]
    upload = next(s for s in _steps(evaluate) if "upload-artifact" in s.get("uses", ""))
    assert upload["with"]["name"] == "quality" and upload["with"]["path"] == "quality.json"
    # the eval job is the only one that measures
    for workflow in WORKFLOWS:
        if workflow.name != "quality.yml":
            assert "nox -s eval" not in workflow.read_text(), workflow.name


def _downloads_before(job: dict[str, Any], step: dict[str, Any], condition: str) -> None:
    steps = _steps(job)
    before = steps[: steps.index(step)]
    download = [s for s in before if "download-artifact" in s.get("uses", "")]
    assert len(download) == 1 and download[0]["with"]["name"] == "quality"
    assert download[0]["if"] == condition == step["if"]


@pytest.mark.parametrize("name", ["publish.yml", "nightly.yml"])
def test_a_release_is_measured_first_and_its_figures_reach_every_job(name: str) -> None:
    doc = _doc(name)
    quality = doc["jobs"]["quality"]
    assert quality["uses"] == "./.github/workflows/quality.yml"
    assert quality["with"]["manifest"] == doc["env"]["MANIFEST"]
    assert "'ubuntu-latest'" in quality["with"]["runner"]
    assert "vars.HUBBOT_EVAL_RUNNER" in quality["with"]["runner"]
    assert "eval-runner" in _on(doc)["workflow_dispatch"]["inputs"]
    job = doc["jobs"]["plan" if name == "publish.yml" else "cards"]
    assert job["needs"] == "quality"
    session = "matrix" if name == "publish.yml" else "cards"
    steps = _runs(job, f"nox -s {session}")
    measured = [s for s in steps if s["if"] == MEASURED]
    plain = [s for s in steps if s["if"] == NOT_MEASURED]
    assert len(measured) == len(plain) == 1 and len(steps) == 2
    assert _run(measured[0]) == f"{_run(plain[0])} {QUALITY}"
    assert QUALITY not in _run(plain[0])
    _downloads_before(job, measured[0], MEASURED)
    if name == "publish.yml":
        for i in range(4):
            assert job["outputs"][f"chunk-{i}"] == (
                f"${{{{ steps.{plain[0]['id']}.outputs.chunk-{i} || "
                f"steps.{measured[0]['id']}.outputs.chunk-{i} }}}}"
            )
            chunk = doc["jobs"][f"chunk-{i}"]
            assert set(chunk["needs"]) == {"quality", "plan"}
            assert chunk["with"]["quality"] == f"${{{{ {MEASURED} }}}}"
            assert chunk["with"]["manifest"] == doc["env"]["MANIFEST"]


def test_every_publish_job_reads_the_figures_when_given() -> None:
    doc = _doc("publish-variants.yml")
    assert _on(doc)["workflow_call"]["inputs"]["quality"] == {
        "description": "Pass the `quality` artifact (quality.json) to publish as --quality",
        "type": "boolean",
        "default": False,
    }
    job = doc["jobs"]["variants"]
    steps = _runs(job, "nox -s publish")
    measured = next(s for s in steps if s["if"] == "inputs.quality")
    plain = next(s for s in steps if s["if"] == "${{ !inputs.quality }}")
    assert len(steps) == 2
    assert _run(measured) == f"{_run(plain)} {QUALITY}"
    _downloads_before(job, measured, "inputs.quality")


def _hubbot(step: dict[str, Any], values: dict[str, str]) -> list[str]:
    """The hubbot arguments a step's `nox -s SESSION -- ...` runs, values filled in."""
    text = _run(step)
    for key, value in values.items():
        text = text.replace(f"${{{{ {key} }}}}", value).replace(f"${key}", value)
    words = shlex.split(text)
    assert words[:2] == ["nox", "-s"] and words[3] == "--", text
    return [*SESSIONS[words[2]], *words[4:]]


def _outputs(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines() if path.exists() else []
    path.unlink(missing_ok=True)
    return dict(line.split("=", 1) for line in lines)


def _step(job: dict[str, Any], session: str, condition: str) -> dict[str, Any]:
    return next(s for s in _runs(job, f"nox -s {session}") if s["if"] == condition)


def test_the_workflow_commands_publish_a_measured_release_measuring_it_once(
    tmp_path: Path, hub_api: HfApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    quality, publish = _doc("quality.yml")["jobs"], _doc("publish.yml")
    variants, nightly = _doc("publish-variants.yml")["jobs"]["variants"], _doc("nightly.yml")
    output = tmp_path / "github-output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))
    runner = CliRunner()

    def invoke(args: list[str]) -> str:
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, (args, result.output)
        return result.stdout

    check = next(s for s in _steps(quality["manifest"]) if s.get("id") == "validate")
    # The seed manifest names no evaluation text: no eval job, the plain steps run.
    invoke(_hubbot(check, {"MANIFEST": str(ROOT / "manifests" / "gpt-oss-20b.yaml")}))
    assert _outputs(output) == {"evaluation": "false"}

    manifest = write_release(tmp_path / "release")
    values = {**publish["env"], "MANIFEST": str(manifest), "inputs.manifest": str(manifest)}
    monkeypatch.chdir(tmp_path)  # the jobs' working folder: quality.json is relative
    invoke(_hubbot(check, values))
    assert _outputs(output) == {"evaluation": "true"}
    (eval_step,) = _runs(quality["eval"], "nox -s eval")
    invoke(_hubbot(eval_step, values))  # the best device there is: here, the CPU
    assert (tmp_path / "quality.json").is_file()

    # From here on nothing measures: every job reads quality.json.
    monkeypatch.setattr(release_module, "evaluate_release", _no_model_run)
    invoke(_hubbot(_step(publish["jobs"]["plan"], "matrix", MEASURED), values))
    chunks = {k: json.loads(v) for k, v in _outputs(output).items() if v}
    jobs = [job for chunk in chunks.values() for job in chunk["include"]]
    assert [job["job"] for job in jobs] == ["prose-2..prose-6", "math-2..math-6"]
    publish_step = _step(variants, "publish", "inputs.quality")
    for job in jobs:
        invoke(_hubbot(publish_step, {**values, "matrix.variants": job["variants"]}))
    figures = current_record(tmp_path / "quality.json", load_manifest(manifest))
    for variant in load_manifest(manifest).variants:
        folder = tmp_path / "published" / variant.id
        hub_api.snapshot_download(variant.repo_id, local_dir=folder, allow_patterns=["*.json"])
        assert read_provenance(folder).quality == figures
    invoke(_hubbot(_step(publish["jobs"]["plan"], "matrix", MEASURED), values))
    assert not any(_outputs(output).values())  # nothing left to do

    # Nightly: the cards job reads the same figures, and nothing needs a commit.
    cards = _step(nightly["jobs"]["cards"], "cards", MEASURED)
    rows = json.loads(invoke([*_hubbot(cards, values), "--json"]))
    assert all(row["error"] is None and row["commit"] is None for row in rows), rows


def _no_model_run(*args: object, **kwargs: object) -> None:
    raise AssertionError("measured again: the job should read quality.json")
