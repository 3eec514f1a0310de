"""End to end: the demo release through plan, build and publish against the local Hub.

Everything is real: the tiny MXFP4 base model is uploaded to the local server, pulled back
with `snapshot_download`, pruned, run, carded and published with `HfApi`; the published
repos are loaded with transformers.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from huggingface_hub import HfApi, hf_hub_download

from bot.cli import cli
from bot.demo import seed_repo
from bot.fixtures import write_tiny_model
from bot.hub.plan import Action
from bot.localhub.server import HubServer
from bot.manifest import load_manifest
from bot.provenance import read_provenance
from bot.release import plan_release, publish_release, regenerate_cards
from bot.selection.select import select_experts
from tests.fresh_process import heavy_imports

ROOT = Path(__file__).resolve().parents[1]
CARD_FILES = {"README.md", "hubbot.json", "experts.png"}

NEW_DOMAIN = """\
  - id: code
    title: Code
    description: experts the base model routes to most on programming questions
    statistics:
      source: calibration
      prompts: ["Write a Python function that adds two numbers."]
    experts: {counts: [5]}
    examples: ["Print hello in Python."]
"""


@pytest.fixture
def release(tmp_path: Path, hub_api: HfApi) -> Path:
    """A copy of the demo release (short generations) with its base model on the Hub."""
    (tmp_path / "manifests").mkdir()
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    shutil.copy(ROOT / "tests" / "data" / "tiny-gpt-oss.config.json", tmp_path / "manifests")
    text = (ROOT / "tests" / "data" / "random-release.yaml").read_text()
    path = tmp_path / "manifests" / "demo.yaml"
    path.write_text(text.replace("max_new_tokens: 24", "max_new_tokens: 6"))
    manifest = load_manifest(path)
    assert manifest.spec.base.repo is not None
    seed_repo(hub_api, manifest.spec.base.repo, write_tiny_model(tmp_path / "base", layout="mxfp4"))
    return path


def head(api: HfApi, repo_id: str) -> str:
    return str(api.model_info(repo_id).sha)


def test_release_round_trip(
    release: Path, hub_api: HfApi, hub_server: HubServer, tmp_path: Path
) -> None:
    manifest = load_manifest(release)

    # First publish: every variant is created, in one commit each.
    first = publish_release(manifest, hub_api, workdir=tmp_path)
    assert [o.error for o in first] == [None] * 4
    assert [o.action for o in first] == [Action.CREATE] * 4
    assert all(o.result and o.result.commit for o in first)
    variant = manifest.variants[0]
    files = set(hub_api.list_repo_files(variant.repo_id))
    assert CARD_FILES | {"config.json", "model.safetensors.index.json", "tokenizer.json"} <= files

    # What was published loads in transformers and says where it came from.
    from transformers import AutoModelForCausalLM, Mxfp4Config

    model, info = AutoModelForCausalLM.from_pretrained(
        variant.repo_id,
        quantization_config=Mxfp4Config(dequantize=True),
        output_loading_info=True,
    )
    assert not any(info.values()), info
    assert model.config.num_local_experts == variant.experts
    record = read_provenance(Path(hf_hub_download(variant.repo_id, "hubbot.json")))
    assert record.selection.kept_experts == select_experts(manifest, variant).kept_experts
    assert record.examples is not None and len(record.examples.examples) == 2

    # Unchanged manifest: every variant is a no-op; publishing again commits nothing.
    assert {row.action for row in plan_release(manifest, hub_api)} == {Action.NO_OP}
    heads = {v.repo_id: head(hub_api, v.repo_id) for v in manifest.variants}
    hub_server.stats.reset()
    again = publish_release(manifest, hub_api, workdir=tmp_path)
    assert all(o.result is None and o.error is None for o in again)
    assert hub_server.stats["commit"] == 0 and hub_server.stats["lfs_upload"] == 0
    assert heads == {v.repo_id: head(hub_api, v.repo_id) for v in manifest.variants}

    # One manifest entry added: exactly one new repo.
    release.write_text(release.read_text() + NEW_DOMAIN)
    grown = load_manifest(release)
    plan = {row.variant.id: row.action for row in plan_release(grown, hub_api)}
    assert plan.pop("code-5") == Action.CREATE
    assert set(plan.values()) == {Action.NO_OP}
    outcomes = publish_release(grown, hub_api, workdir=tmp_path)
    assert [o.variant.id for o in outcomes if o.result and o.result.commit] == ["code-5"]

    # A domain's text changed: its cards are re-rendered, its weights are left alone.
    text = release.read_text().replace(
        "description: experts the base model routes to most on everyday questions",
        "description: experts for everyday questions, chosen by calibration",
    )
    release.write_text(text)
    edited = load_manifest(release)
    plan = {row.variant.id: row.action for row in plan_release(edited, hub_api)}
    assert plan == {
        "general-4": Action.CARD_ONLY,
        "general-6": Action.CARD_ONLY,
        "math-4": Action.NO_OP,
        "math-6": Action.NO_OP,
        "code-5": Action.NO_OP,
    }
    for outcome in publish_release(edited, hub_api, workdir=tmp_path):
        if outcome.variant.domain == "general":
            assert outcome.result is not None and outcome.result.commit
            assert set(outcome.result.uploaded) <= CARD_FILES
    readme = Path(hf_hub_download(variant.repo_id, "README.md")).read_text()
    assert "chosen by calibration" in readme

    # Nightly after a template change: one commit per repo, card files only; then none.
    template = release.parent.parent / "templates" / "model_card.md.j2"
    template.write_text(template.read_text() + "\n<!-- nightly marker -->\n")
    edited = load_manifest(release)
    nightly = regenerate_cards(edited, hub_api)
    assert [o.error for o in nightly] == [None] * 5
    for outcome in nightly:
        assert outcome.result is not None and outcome.result.commit
        assert set(outcome.result.uploaded) <= CARD_FILES
    hub_server.stats.reset()
    quiet = regenerate_cards(edited, hub_api)
    assert all(o.result is not None and o.result.commit is None for o in quiet)
    assert hub_server.stats.total <= 2 * len(quiet)

    # The CLI reads the same state: nothing to do, and the matrix is empty.
    runner = CliRunner()
    result = runner.invoke(cli, ["plan", str(release), "--hub", "--json"])
    assert result.exit_code == 0, result.output
    assert {row["action"] for row in json.loads(result.stdout)} == {"no-op"}
    result = runner.invoke(cli, ["matrix", str(release)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"include": []}


def test_nightly_reports_a_broken_repo_and_goes_on(
    release: Path, hub_api: HfApi, tmp_path: Path
) -> None:
    manifest = load_manifest(release)
    publish_release(manifest, hub_api, workdir=tmp_path, variant_ids=["math-4"])
    broken = manifest.variant("math-6").repo_id
    hub_api.create_repo(broken)
    hub_api.upload_file(path_or_fileobj=b"{not json", path_in_repo="hubbot.json", repo_id=broken)

    runner = CliRunner()
    result = runner.invoke(cli, ["cards", str(release), "--regen", "--json"])
    assert result.exit_code == 1
    rows = {row["variant"]: row for row in json.loads(result.stdout)}
    assert rows["math-4"]["error"] is None
    assert rows["math-6"]["error"] and "hubbot.json" in rows["math-6"]["error"]
    assert rows["general-4"]["error"]  # never published: reported, skipped

    # The nightly job starts fast: rendering cards from hubbot.json needs no model library.
    codes, heavy = heavy_imports(["cards", str(release), "--regen", "--json"])
    assert (codes, heavy) == ([1], [])


def test_matrix_lists_only_variants_needing_work(release: Path, hub_api: HfApi) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["matrix", str(release), "--chunks", "2"])
    assert result.exit_code == 0, result.output
    chunks = json.loads(result.stdout)
    jobs = [job for chunk in chunks for job in chunk["include"]]
    assert [j["variant"] for j in jobs] == ["general-4", "general-6", "math-4", "math-6"]
    assert {j["action"] for j in jobs} == {"create"}
    assert {j["runner"] for j in jobs} == {"ubuntu-latest"}
    assert all(len(chunk["include"]) == 2 for chunk in chunks)


def test_a_failed_collection_step_is_reported_and_repaired_next_time(
    release: Path, hub_api: HfApi, hub_server: HubServer, tmp_path: Path
) -> None:
    manifest = load_manifest(release)
    (title,) = manifest.spec.hub.collections
    hub_server.faults.add("collections", status=403, times=1)
    (outcome,) = publish_release(manifest, hub_api, workdir=tmp_path, variant_ids=["math-4"])
    assert outcome.error is not None
    assert "landed" in outcome.error and "next publish" in outcome.error
    repo_id = manifest.variant("math-4").repo_id
    assert "hubbot.json" in hub_api.list_repo_files(repo_id)  # the commit itself is whole

    (again,) = publish_release(manifest, hub_api, workdir=tmp_path, variant_ids=["math-4"])
    assert again.action == Action.NO_OP and again.error is None
    (collection,) = [c for c in hub_api.list_collections(owner="hubbot-demo") if c.title == title]
    items = hub_api.get_collection(collection.slug).items
    assert [item.item_id for item in items] == [repo_id]


def test_a_grouped_job_fetches_the_base_once_and_stages_one_variant_at_a_time(
    release: Path, hub_api: HfApi, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import bot.release as release_module

    fetches: list[Path] = []
    staged_before_each_build: list[list[str]] = []
    real_fetch, real_build = release_module.fetch_manifest_base, release_module.build_variant

    def fetch(manifest):  # type: ignore[no-untyped-def]
        fetches.append(real_fetch(manifest))
        return fetches[-1]

    def build(manifest, variant, out, **kwargs):  # type: ignore[no-untyped-def]
        # every entry of the scratch folder but its mark (which says hubbot made it)
        staged = [p.name for p in Path(out).parent.iterdir() if p.name != ".hubbot-partial"]
        staged_before_each_build.append(sorted(staged))
        return real_build(manifest, variant, out, **kwargs)

    monkeypatch.setattr(release_module, "fetch_manifest_base", fetch)
    monkeypatch.setattr(release_module, "build_variant", build)
    result = CliRunner().invoke(cli, ["publish", str(release), "--variant", "general-4,math-6"])

    assert result.exit_code == 0, result.output
    assert len(fetches) == 1
    assert staged_before_each_build == [[], []]  # the first output was gone before the second
    manifest = load_manifest(release)
    for variant in ("general-4", "math-6"):
        files = set(hub_api.list_repo_files(manifest.variant(variant).repo_id))
        assert files >= CARD_FILES

    # The next matrix keeps the group's name and lists only what still needs work.
    chunk = json.loads(
        CliRunner().invoke(cli, ["matrix", str(release), "--group", "domain"]).stdout
    )
    runner = {"count": 1, "runner": "ubuntu-latest"}
    assert chunk["include"] == [
        {"job": "general-4..general-6", "variants": "general-6", **runner},
        {"job": "math-4..math-6", "variants": "math-4", **runner},
    ]
