"""`hubbot build`, `publish` and `demo` leave nothing half-made and touch nothing of the user's.

The folder rule of issue 18 beyond `prune`: a build is staged whole and then put in place,
a build output is replaced only while it holds just what hubbot wrote, a killed publish's
temporary build folder is removed by the next run, and the demo's work folder is one
hubbot made.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from huggingface_hub import HfApi

from bot.cli import cli
from bot.demo import seed_repo
from bot.fixtures import write_tiny_model
from bot.manifest import load_manifest
from bot.provenance import read_provenance
from bot.release import publish_release
from tests.test_prune_safety import tree

ROOT = Path(__file__).resolve().parents[1]


def _release(tmp_path: Path, *, local_base: bool) -> Path:
    """The random tiny release, short generations (base read locally, or from the Hub)."""
    (tmp_path / "manifests").mkdir(parents=True)
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    shutil.copy(ROOT / "tests" / "data" / "tiny-gpt-oss.config.json", tmp_path / "manifests")
    text = (ROOT / "tests" / "data" / "random-release.yaml").read_text()
    text = text.replace("max_new_tokens: 24", "max_new_tokens: 2")
    if local_base:
        write_tiny_model(tmp_path / "base", layout="mxfp4")
        text = text.replace("  revision: main\n", "  revision: main\n  path: ../base\n")
    path = tmp_path / "manifests" / "demo.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def local_release(tmp_path: Path) -> Path:
    return _release(tmp_path, local_base=True)


def build(manifest: Path, out: Path) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli, ["build", str(manifest), "--variant", "math-4", "--out", str(out), "--no-examples"]
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def hidden_siblings(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def _break_the_card(manifest: Path) -> None:
    """A template that parses (so validation passes) but fails to render."""
    template = manifest.parent.parent / "templates" / "model_card.md.j2"
    template.write_text(template.read_text() + "\n{{ no_such_value }}\n")


def test_a_build_whose_card_fails_leaves_no_out_folder(local_release: Path, tmp_path: Path) -> None:
    _break_the_card(local_release)
    out = tmp_path / "staged"
    code, output = build(local_release, out)
    assert code == 2, output
    assert "no_such_value" in output
    assert not out.exists()
    assert hidden_siblings(out) == []


def test_a_build_whose_card_fails_keeps_the_previous_output(
    local_release: Path, tmp_path: Path
) -> None:
    out = tmp_path / "staged"
    assert build(local_release, out)[0] == 0
    before = tree(out)
    _break_the_card(local_release)
    code, output = build(local_release, out)
    assert code == 2, output
    assert tree(out) == before
    assert hidden_siblings(out) == []


def test_a_build_replaces_its_own_output_card_included(local_release: Path, tmp_path: Path) -> None:
    out = tmp_path / "staged"
    assert build(local_release, out)[0] == 0
    listed = set(read_provenance(out).files)
    assert {"README.md", "experts.png", "config.json"} <= listed
    assert {p.name for p in out.iterdir()} == listed | {"hubbot.json"}
    code, output = build(local_release, out)
    assert code == 0, output
    assert hidden_siblings(out) == []


def test_a_build_output_with_a_users_file_added_is_not_replaced(
    local_release: Path, tmp_path: Path
) -> None:
    out = tmp_path / "staged"
    assert build(local_release, out)[0] == 0
    (out / "README.md").write_text("my own card, written by hand")
    (out / "eval.csv").write_text("task,score\n")
    before = tree(out)
    code, output = build(local_release, out)
    assert code == 2, output
    assert "README.md: changed since hubbot wrote it" in output
    assert "eval.csv: not written by hubbot" in output
    assert tree(out) == before


def test_the_other_licence_reaches_the_card(local_release: Path, tmp_path: Path) -> None:
    text = local_release.read_text().replace(
        "  license: apache-2.0\n",
        "  license: other\n  license_name: tiny-licence-1.0\n"
        "  license_link: https://example.org/licence\n",
    )
    local_release.write_text(text)
    out = tmp_path / "staged"
    code, output = build(local_release, out)
    assert code == 0, output
    card = (out / "README.md").read_text()
    assert 'license: "other"' in card and 'license_name: "tiny-licence-1.0"' in card


_KILLED_PUBLISH = """
import os, signal, sys
from pathlib import Path
import bot.release
def kill(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)  # built and staged, killed before the commit
bot.release.publish_folder = kill
from bot.hub.publish import connect
from bot.manifest import load_manifest
manifest = load_manifest(sys.argv[1])
bot.release.publish_release(manifest, connect(), workdir=Path(sys.argv[2]), variant_ids=["math-4"])
"""


def test_a_killed_publish_leaves_staged_weights_that_the_next_run_removes(
    tmp_path: Path, hub_api: HfApi
) -> None:
    manifest_path = _release(tmp_path / "release", local_base=False)
    manifest = load_manifest(manifest_path)
    seed_repo(hub_api, manifest.spec.base.repo, write_tiny_model(tmp_path / "base", layout="mxfp4"))
    work = tmp_path / "work"
    work.mkdir()
    (work / "hubbot-build-1-mine").mkdir()  # not hubbot's (no mark): never removed
    run = subprocess.run(
        [sys.executable, "-c", _KILLED_PUBLISH, str(manifest_path), str(work)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
    )
    assert run.returncode == -signal.SIGKILL, run.stderr
    [left] = [p for p in work.glob("hubbot-build-*") if p.name != "hubbot-build-1-mine"]
    assert list(left.rglob("*.safetensors"))  # the staged weights a killed run leaves

    publish_release(manifest, hub_api, workdir=work, dry_run=True)
    assert sorted(p.name for p in work.iterdir()) == ["hubbot-build-1-mine"]


def test_the_demo_refuses_a_work_folder_that_is_not_its_own(tmp_path: Path) -> None:
    from bot.demo import run_demo

    work = tmp_path / "mine"
    work.mkdir()
    (work / "thesis.tex").write_text("mine")
    with pytest.raises(Exception, match="is not a hubbot demo folder") as info:
        run_demo(work, manifest_path=ROOT / "manifests" / "demo.yaml", echo=lambda _: None)
    assert type(info.value).__name__ == "InputError"
    assert [p.name for p in work.iterdir()] == ["thesis.tex"]


_KILLED_BUILD = """
import os, signal, sys
from pathlib import Path
import bot.card
def kill(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)  # pruned and staged, killed while carding
bot.card.write_card = kill
from bot.build import build_variant
from bot.manifest import load_manifest
manifest = load_manifest(sys.argv[1])
build_variant(manifest, manifest.variant("math-4"), Path(sys.argv[2]), examples=False)
"""


def test_a_killed_build_leaves_the_previous_output_and_the_next_build_cleans_up(
    local_release: Path, tmp_path: Path
) -> None:
    out = tmp_path / "staged"
    assert build(local_release, out)[0] == 0
    before = tree(out)
    run = subprocess.run(
        [sys.executable, "-c", _KILLED_BUILD, str(local_release), str(out)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
    )
    assert run.returncode == -signal.SIGKILL, run.stderr
    assert tree(out) == before
    [left] = hidden_siblings(out)
    assert left.startswith(".staged.build-")  # the dead build's staging folder
    assert build(local_release, out)[0] == 0
    assert hidden_siblings(out) == []
