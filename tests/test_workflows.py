"""The GitHub Actions workflows lint clean and hold no logic beyond calling nox sessions."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
NOX_SESSIONS = set(re.findall(r"^def (\w+)\(session", (ROOT / "noxfile.py").read_text(), re.M))


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
