"""`hubbot build`: one variant staged from a local copy of its base model."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.desired import desired_digests
from bot.fixtures import write_tiny_model
from bot.manifest import load_manifest
from bot.provenance import read_provenance
from bot.selection.select import select_experts

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def local_release(tmp_path: Path) -> Path:
    """The demo manifest reading its base model from a local folder, short generations."""
    (tmp_path / "manifests").mkdir()
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    shutil.copy(ROOT / "tests" / "data" / "tiny-gpt-oss.config.json", tmp_path / "manifests")
    write_tiny_model(tmp_path / "base", layout="mxfp4")
    text = (ROOT / "tests" / "data" / "random-release.yaml").read_text()
    text = text.replace("  revision: main\n", "  revision: main\n  path: ../base\n")
    path = tmp_path / "manifests" / "demo.yaml"
    path.write_text(text.replace("max_new_tokens: 24", "max_new_tokens: 4"))
    return path


def test_build_stages_a_complete_repo_folder(local_release: Path, tmp_path: Path) -> None:
    out = tmp_path / "staged"
    result = CliRunner().invoke(
        cli, ["build", str(local_release), "--variant", "math-4", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    names = {p.name for p in out.iterdir()}
    assert {"README.md", "hubbot.json", "experts.png", "config.json", "tokenizer.json"} <= names
    record = read_provenance(out)
    assert record.release is not None and record.release.base_model == "hubbot-demo/tiny-gpt-oss"
    assert record.stats is not None and record.stats.experts_after == 4
    assert record.examples is not None and len(record.examples.examples) == 2
    assert json.loads((out / "config.json").read_text())["num_local_experts"] == 4
    assert "hubbot-demo/tiny-gpt-oss" in (out / "README.md").read_text()


def test_build_never_deletes_a_folder_it_did_not_write(local_release: Path, tmp_path: Path) -> None:
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    result = CliRunner().invoke(
        cli, ["build", str(local_release), "--variant", "math-4", "--out", str(out)]
    )
    assert result.exit_code == 2
    assert (out / "notes.txt").read_text() == "keep me"


def test_digests_do_not_depend_on_the_working_directory(
    local_release: Path, tmp_path: Path
) -> None:
    manifest = load_manifest(local_release)
    variant = manifest.variant("general-4")
    before = Path.cwd()
    digests = []
    try:
        for folder in (before, tmp_path):
            os.chdir(folder)
            digests.append(desired_digests(manifest, variant, select_experts(manifest, variant)))
    finally:
        os.chdir(before)
    assert digests[0] == digests[1]
