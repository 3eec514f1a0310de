"""The quality floor against the local Hub: held in plan, skipped by publish, out of the matrix."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from huggingface_hub import HfApi

from bot.cli import cli
from bot.hub.plan import Action
from bot.manifest import load_manifest
from bot.quality.release import evaluate_release
from bot.release import plan_release, publish_release
from tests.quality_release import write_release


def _with_floor(path: Path, max_kl: float) -> None:
    text = path.read_text()
    start = text.index("domains:\n")
    head = text[:start].split("quality: ")[0]
    path.write_text(f"{head}quality: {{max_kl: {max_kl:.6f}}}\n{text[start:]}")


def test_variants_below_the_floor_are_held_and_never_deleted(
    tmp_path: Path, hub_api: HfApi
) -> None:
    path = write_release(tmp_path / "release")
    manifest = load_manifest(path)
    kl = {
        vid: point.domain_text.kl
        for vid, point in evaluate_release(manifest, device="cpu", progress=False).points().items()
    }
    ranked = sorted(kl, key=kl.get)
    floor = (kl[ranked[2]] + kl[ranked[3]]) / 2
    _with_floor(path, floor)
    held = set(ranked[3:])
    runner = CliRunner()

    # Offline, measured: the plan shows each held variant with its figure and the floor.
    result = runner.invoke(cli, ["plan", str(path), "--eval", "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["variant"]: row for row in json.loads(result.stdout)}
    assert {v for v, row in rows.items() if row.get("action") == "held"} == held
    for vid in held:
        assert f"KL {kl[vid]:.3f} > max_kl {floor:.3f}" in rows[vid]["reason"]
        assert rows[vid]["quality"]["domain_text"]["kl"] == kl[vid]
    text = runner.invoke(cli, ["plan", str(path), "--eval", "--device", "cpu"]).stdout
    assert f"max_kl {floor:.3f}" in text and "held" in text

    # Saved figures: matrix leaves the held variants out.
    saved = tmp_path / "quality.json"
    result = runner.invoke(cli, ["eval", str(path), "--device", "cpu", "--save", str(saved)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["matrix", str(path), "--all", "--quality", str(saved)])
    assert result.exit_code == 0, result.output
    jobs = {job["variant"] for job in json.loads(result.stdout)["include"]}
    assert jobs == set(kl) - held

    # Publish: the held variants are built, measured, and not published.
    outcomes = publish_release(load_manifest(path), hub_api, workdir=tmp_path, device="cpu")
    by_id = {o.variant.id: o for o in outcomes}
    assert {v for v, o in by_id.items() if o.action == Action.HELD} == held
    assert all(o.error is None for o in outcomes)
    for vid in held:
        assert by_id[vid].result is None and f"max_kl {floor:.3f}" in (by_id[vid].reason or "")
        assert not hub_api.repo_exists(by_id[vid].variant.repo_id)
    published = set(kl) - held
    assert all(hub_api.repo_exists(by_id[v].variant.repo_id) for v in published)
    result = runner.invoke(cli, ["matrix", str(path), "--quality", str(saved)])
    assert json.loads(result.stdout) == {"include": []}

    # A stricter floor: one published variant now falls below it. Reported, never deleted.
    worst = max(published, key=kl.get)
    _with_floor(path, (kl[worst] + kl[ranked[1]]) / 2)
    stricter = load_manifest(path)
    repo_id = stricter.variant(worst).repo_id
    before = (hub_api.model_info(repo_id).sha, sorted(hub_api.list_repo_files(repo_id)))
    plan = {row.variant.id: row for row in plan_release(stricter, hub_api)}
    assert plan[worst].action == Action.HELD
    assert "left as it is (not deleted)" in plan[worst].reason
    result = runner.invoke(cli, ["publish", str(path), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert f"held      {worst}: KL {kl[worst]:.3f} > max_kl" in result.output
    after = (hub_api.model_info(repo_id).sha, sorted(hub_api.list_repo_files(repo_id)))
    assert after == before
    result = runner.invoke(cli, ["matrix", str(path)])
    assert worst not in result.stdout

    # The other published cards say what the new floor holds back: their family tables
    # mark the held counts of their domain (a card-only update, weights untouched).
    assert {plan[v].action for v in published - {worst}} == {Action.CARD_ONLY}
    now_held = held | {worst}
    for vid in published - {worst}:
        variant = stricter.variant(vid)
        card = Path(hub_api.hf_hub_download(variant.repo_id, "README.md")).read_text()
        assert "A row marked *held* is below it: measured, not published." in card
        assert f"KL at most {(kl[worst] + kl[ranked[1]]) / 2:.3f}" in card
        for other in stricter.variants:
            if other.domain == variant.domain and other.id != vid:
                marked = f"| {other.experts} (held) |" in card
                assert marked == (other.id in now_held), (vid, other.id)

    # Nightly: every published card, figures and picture included, re-renders from its
    # hubbot.json to the very same bytes: no commit.
    result = runner.invoke(cli, ["cards", str(path), "--regen", "--json"])
    rows = {row["variant"]: row for row in json.loads(result.stdout)}
    for vid in published:
        assert rows[vid]["error"] is None and rows[vid]["commit"] is None, rows[vid]
    assert "quality.png" in hub_api.list_repo_files(repo_id)

    # Nightly with the saved figures: the held variants, never published, are reported
    # as held with their figure, not as failures; the published cards stay as they are.
    args = ["cards", str(path), "--regen", "--json", "--quality", str(saved)]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    rows = {row["variant"]: row for row in json.loads(result.stdout)}
    for vid in held:
        assert rows[vid]["action"] == "held" and rows[vid]["error"] is None, rows[vid]
        assert f"KL {kl[vid]:.3f} > max_kl" in rows[vid]["reason"]
    for vid in published:
        assert rows[vid]["error"] is None and rows[vid]["commit"] is None, rows[vid]
