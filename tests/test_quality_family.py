"""Family tables stay current: a new expert count updates its published siblings' cards.

Each card shows every expert count of its domain, from the figures of its `hubbot.json`.
With figures saved by `hubbot eval --save` (`--quality`), `plan` shows the published
siblings of a new count as `card-only` ("family table: +1 count (6)"), `matrix` lists them,
and `publish` commits only their card files; without `--quality`, nothing is measured.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from huggingface_hub import HfApi

from bot.card import _figure
from bot.cli import cli
from bot.hub.plan import CARD, is_card_file
from bot.quality import release as release_module
from bot.quality.saved import FamilyChange
from tests.quality_release import write_release

SIBLINGS = ["prose-2", "prose-4", "math-2", "math-4"]
NEW = ["prose-6", "math-6"]


def _no_model_run(*args: object, **kwargs: object) -> None:
    raise AssertionError("a plan without --quality must not measure quality")


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def _plan(path: Path, *extra: str) -> dict[str, dict]:
    rows = json.loads(_invoke("plan", str(path), "--hub", "--json", *extra))
    return {row["variant"]: row for row in rows}


def _readme(api: HfApi, repo_id: str) -> str:
    return Path(api.hf_hub_download(repo_id, CARD)).read_text(encoding="utf-8")


def test_a_new_count_updates_the_family_table_of_its_published_siblings(
    tmp_path: Path, hub_api: HfApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_release(tmp_path / "release")
    full = path.read_text()
    path.write_text(full.replace("counts: [2, 4, 6]", "counts: [2, 4]"))
    first, second = tmp_path / "quality-1.json", tmp_path / "quality-2.json"
    _invoke("eval", str(path), "--device", "cpu", "--save", str(first))
    published = json.loads(_invoke("publish", str(path), "--quality", str(first), "--json"))
    assert {row["action"] for row in published} == {"create"}
    repos = {row["variant"]: row["repo_id"] for row in published}
    before = {vid: hub_api.model_info(repos[vid]).sha for vid in SIBLINGS}
    assert "| 6 |" not in _readme(hub_api, repos["math-2"])

    # A maintainer adds a count; the release is measured again and saved.
    path.write_text(full)
    _invoke("eval", str(path), "--device", "cpu", "--save", str(second))

    # Without --quality the plan measures nothing and changes no action, but says why the
    # family tables are behind.
    with monkeypatch.context() as patch:
        patch.setattr(release_module, "evaluate_release", _no_model_run)
        plain = _plan(path)
    for vid in SIBLINGS:
        assert plain[vid]["action"] == "no-op"
        assert "the family table is behind (+1 count (6))" in plain[vid]["reason"]
        assert "pass `--quality F` for a card-only update" in plain[vid]["reason"]
    assert {plain[v]["action"] for v in NEW} == {"create"}

    # With the saved figures: the siblings need a card update, and the plan says why.
    plan = _plan(path, "--quality", str(second))
    for vid in SIBLINGS:
        assert plan[vid]["action"] == "card-only", plan[vid]
        assert "family table: +1 count (6)" in plan[vid]["reason"]
    assert {plan[v]["action"] for v in NEW} == {"create"}
    text = _invoke("plan", str(path), "--hub", "--quality", str(second))
    assert "4 card-only" in text and "2 create" in text
    matrix = json.loads(_invoke("matrix", str(path), "--quality", str(second)))
    assert {job["variant"] for job in matrix["include"]} == set(SIBLINGS + NEW)

    # Publish: the siblings get one commit each holding only card files; no weights.
    outcomes = json.loads(_invoke("publish", str(path), "--quality", str(second), "--json"))
    by_id = {row["variant"]: row for row in outcomes}
    for vid in SIBLINGS:
        row = by_id[vid]
        assert row["action"] == "card-only" and row["commit"], row
        assert row["uploaded"] and all(is_card_file(p) for p in row["uploaded"]), row
        assert CARD in row["uploaded"]
        assert hub_api.model_info(repos[vid]).sha != before[vid]
    assert {by_id[v]["action"] for v in NEW} == {"create"}
    saved = json.loads(second.read_text())["quality"]["family"]
    six = next(p for p in saved if p["variant"] == "math-6")["domain_text"]["kl"]
    readme = _readme(hub_api, repos["math-2"])
    assert "| **2 (this model)** |" in readme and f"| 6 | {_figure(six)} |" in readme

    # Then every repo is current, and nightly re-renders the very same bytes.
    assert {row["action"] for row in _plan(path, "--quality", str(second)).values()} == {"no-op"}
    nightly = json.loads(_invoke("cards", str(path), "--regen", "--json"))
    assert all(row["error"] is None and row["commit"] is None for row in nightly), nightly

    # Figures measured again (another device, say) that differ but list the same counts
    # change no card.
    data = json.loads(second.read_text())
    for point in data["quality"]["family"]:
        point["domain_text"]["kl"] *= 1.001
    remeasured = tmp_path / "quality-3.json"
    remeasured.write_text(json.dumps(data))
    assert {row["action"] for row in _plan(path, "--quality", str(remeasured)).values()} == {
        "no-op"
    }

    # A count taken out of the manifest: its row leaves the siblings' tables (its repo
    # stays, as ever).
    path.write_text(full.replace("counts: [2, 4, 6]", "counts: [2, 4]"))
    plan = _plan(path, "--quality", str(second))
    assert set(plan) == set(SIBLINGS)
    for vid in SIBLINGS:
        assert plan[vid]["action"] == "card-only"
        assert plan[vid]["reason"].endswith("family table: -1 count (6)"), plan[vid]
    outcomes = json.loads(_invoke("publish", str(path), "--quality", str(second), "--json"))
    assert {row["action"] for row in outcomes} == {"card-only"}
    assert all(is_card_file(p) for row in outcomes for p in row["uploaded"])
    assert "| 6 |" not in _readme(hub_api, repos["math-2"])
    assert hub_api.repo_exists(by_id["math-6"]["repo_id"])


def test_a_family_change_says_which_counts_come_and_go() -> None:
    change = FamilyChange(added=(6, 8), removed=(4,), measured=True)
    assert change.reason == "family table: +2 counts (6, 8), -1 count (4)"
    behind = FamilyChange(added=(6,), removed=(), measured=False).reason
    assert behind.startswith("the family table is behind (+1 count (6)): measure with")
