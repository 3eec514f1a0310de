"""`hubbot validate` and manifest loading: every rejection names file, line and problem."""

from __future__ import annotations

import json
import shutil
import time
import tracemalloc
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.manifest import load_manifest

ROOT = Path(__file__).resolve().parents[1]
REAL_CONFIG = ROOT / "manifests" / "gpt-oss-20b.config.json"

GOOD = """\
base:
  repo: openai/gpt-oss-20b
  revision: 6cee5e81ee83917806bbde320786a8fb61efebee
  config: base.config.json
naming: "gpt-oss-{params_b}b-specialized-{domain}-pruned-moe-only-{experts}-experts"
hub:
  namespace: someone
experts:
  counts: [4, 16]
domains:
  - id: science
    title: Science
    description: physics and chemistry
    statistics: {source: calibration, prompts: ["What is an atom?"]}
    examples: ["Why is the sky blue?"]
  - id: law
    title: Law
    description: the law
    statistics: {source: calibration, prompts: ["What is a contract?"]}
    selection: {strategy: interleave, with: science}
    examples: ["What is a tort?"]
card:
  template: card.md.j2
"""


def write(tmp_path: Path, text: str) -> Path:
    shutil.copy(REAL_CONFIG, tmp_path / "base.config.json")
    shutil.copy(ROOT / "templates" / "model_card.md.j2", tmp_path / "card.md.j2")
    path = tmp_path / "release.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def validate(path: Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["validate", str(path)])
    return result.exit_code, result.output


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_good_manifest_is_valid_and_expands_purely(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    code, out = validate(path)
    assert code == 0, out
    assert "ok (4 variants)" in out
    first, second = load_manifest(path), load_manifest(path)
    assert first.variants == second.variants
    assert [v.id for v in first.variants] == ["science-4", "science-16", "law-4", "law-16"]
    sixteen = first.variant("science-16")
    assert sixteen.repo_id == (
        "someone/gpt-oss-11.4b-specialized-science-pruned-moe-only-16-experts"
    )
    assert sixteen.total_params == 11_355_184_320


def test_yaml_syntax_error_has_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("  namespace: someone", "  namespace: [someone"))
    code, out = validate(path)
    assert code == 2
    assert f"{path}:" in out and "YAML syntax error" in out
    assert "Traceback" not in out


def test_document_must_be_a_mapping(tmp_path: Path) -> None:
    code, out = validate(write(tmp_path, "- just\n- a list\n"))
    assert code == 2
    assert ":1:1: the document must be a mapping" in out


def test_duplicate_keys_are_rejected(tmp_path: Path) -> None:
    text = GOOD.replace("  namespace: someone\n", "  namespace: someone\n  namespace: other\n")
    code, out = validate(write(tmp_path, text))
    assert code == 2
    assert f":{line_of(text, 'namespace: other')}:3: duplicate key 'namespace'" in out


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    text = GOOD.replace("  namespace: someone\n", "  namespace: someone\n  visibilty: public\n")
    code, out = validate(write(tmp_path, text))
    assert code == 2
    line = line_of(text, "visibilty")
    assert f":{line}:3: unknown key 'visibilty'; did you mean 'visibility'?" in out


def test_wrong_type_names_the_field(tmp_path: Path) -> None:
    text = GOOD.replace("counts: [4, 16]", "counts: [4, sixteen]")
    code, out = validate(write(tmp_path, text))
    assert code == 2
    assert f":{line_of(text, 'sixteen')}:" in out
    assert "experts.counts[1]" in out and "integer" in out


def test_every_problem_is_reported_not_only_the_first(tmp_path: Path) -> None:
    text = GOOD.replace("namespace: someone", "namespace: 7, extra: 1").replace(
        "title: Law", "titel: Law"
    )
    text = text.replace("  namespace: 7, extra: 1", "  namespace: [1]\n  extra: 1")
    code, out = validate(write(tmp_path, text))
    assert code == 2
    assert "unknown key 'extra'" in out
    assert "unknown key 'titel'; did you mean 'title'?" in out
    assert "hub.namespace" in out


def test_empty_domain_list(tmp_path: Path) -> None:
    text = GOOD.split("domains:")[0] + "domains: []\n"
    code, out = validate(write(tmp_path, text))
    assert code == 2
    assert f":{line_of(text, 'domains: []')}:10: domains:" in out
    assert "at least 1 item" in out


@pytest.mark.parametrize(("count", "bound"), [(3, "4..32"), (33, "4..32")])
def test_expert_count_outside_top_k_and_expert_count(
    tmp_path: Path, count: int, bound: str
) -> None:
    text = GOOD.replace("counts: [4, 16]", f"counts: [4, {count}]")
    code, out = validate(write(tmp_path, text))
    assert code == 2
    line = line_of(text, "counts:")
    assert f":{line}:" in out
    assert f"expert count {count} is outside {bound}" in out


def test_range_bounds_are_checked_too(tmp_path: Path) -> None:
    text = GOOD.replace("counts: [4, 16]", "min: 2\n  max: 8")
    code, out = validate(write(tmp_path, text))
    assert code == 2
    assert f":{line_of(text, 'min: 2')}:8: expert count 2 is outside 4..32" in out


def test_duplicate_domain_ids(tmp_path: Path) -> None:
    text = GOOD.replace("- id: law", "- id: science").replace("with: science", "with: science")
    code, out = validate(write(tmp_path, text))
    assert code == 2
    second = [i for i, line in enumerate(text.splitlines(), 1) if "id: science" in line][1]
    assert f":{second}:" in out and "duplicate domain id 'science'" in out


def test_repo_names_colliding_after_expansion(tmp_path: Path) -> None:
    text = GOOD.replace("gpt-oss-{params_b}b-", "gpt-oss-").replace("-{experts}-experts", "")
    code, out = validate(write(tmp_path, text))
    assert code == 2
    assert f":{line_of(text, 'naming:')}:9:" in out
    assert "get the same repo name" in out


def test_repo_name_the_hub_would_refuse(tmp_path: Path) -> None:
    text = GOOD.replace('naming: "gpt-oss', 'naming: "gpt oss')
    code, out = validate(write(tmp_path, text))
    assert code == 2
    assert "the Hub would refuse repo id" in out
    long_name = GOOD.replace('naming: "gpt-oss', 'naming: "' + "x" * 90 + "-gpt-oss")
    code, out = validate(write(tmp_path, long_name))
    assert code == 2
    assert "the Hub would refuse repo id" in out


def test_unknown_placeholder(tmp_path: Path) -> None:
    text = GOOD.replace("{domain}", "{domian}")
    code, out = validate(write(tmp_path, text))
    assert code == 2
    assert f":{line_of(text, 'naming:')}:9: unknown placeholder {{domian}}" in out
    assert "did you mean {domain}?" in out


def test_selection_must_name_an_existing_domain(tmp_path: Path) -> None:
    text = GOOD.replace("with: science", "with: sciense")
    code, out = validate(write(tmp_path, text))
    assert code == 2
    assert "unknown domain 'sciense' (did you mean 'science'?)" in out


def test_tags_that_build_objects_are_refused(tmp_path: Path) -> None:
    text = GOOD.replace("namespace: someone", "namespace: !!python/object/apply:os.system [ls]")
    code, out = validate(write(tmp_path, text))
    assert code == 2
    assert f":{line_of(text, 'python/object')}:14: tag" in out and "is not allowed" in out


def test_alias_bomb_is_answered_quickly_in_bounded_memory(tmp_path: Path) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    path = write(tmp_path, "\n".join(lines) + "\n")
    tracemalloc.start()
    started = time.perf_counter()
    code, out = validate(path)
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert code == 2
    assert "alias bomb" in out
    assert elapsed < 10 and peak < 200 * 1024 * 1024  # generous: the real bomb is 387M nodes


def test_missing_config_snapshot(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("base.config.json", "nope.json"))
    code, out = validate(path)
    assert code == 2
    assert f":{line_of(GOOD, 'config:')}:11: base config snapshot" in out


def test_plan_json_lists_variants_with_computed_parameters(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    result = CliRunner().invoke(cli, ["plan", str(path), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["variant"] for r in rows] == ["science-4", "science-16", "law-4", "law-16"]
    by_id = {r["variant"]: r for r in rows}
    assert by_id["law-16"]["total_params"] == 11_355_184_320
    assert by_id["law-16"]["domain"] == "law" and by_id["law-16"]["experts"] == 16


def test_unknown_model_type_in_the_base_config(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    config = json.loads((tmp_path / "base.config.json").read_text())
    (tmp_path / "base.config.json").write_text(json.dumps({**config, "model_type": "gpt_osss"}))
    code, out = validate(path)
    assert code == 2
    assert f":{line_of(GOOD, 'config:')}:11:" in out
    assert "gpt_osss" in out and "did you mean 'gpt_oss'" in out
    assert "Traceback" not in out


def test_base_config_that_is_not_an_object(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    (tmp_path / "base.config.json").write_text("5")
    code, out = validate(path)
    assert code == 2
    assert "is not a JSON object" in out


def test_missing_card_template(tmp_path: Path) -> None:
    text = GOOD.replace("card.md.j2", "nowhere.md.j2")
    code, out = validate(write(tmp_path, text))
    assert code == 2
    assert f":{line_of(text, 'nowhere')}:13: card template" in out and "does not exist" in out
