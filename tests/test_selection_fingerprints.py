"""The fingerprint summaries: the shipped copy, the raw layout, and the published rule."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest

from bot.errors import InputError
from bot.manifest import load_manifest
from bot.selection.check import check_statistics
from bot.selection.fingerprints import packed_table, raw_table
from bot.selection.select import domain_ranking, select_experts
from bot.selection.spec import FingerprintStatistics
from bot.selection.strategies import ranking

ROOT = Path(__file__).resolve().parents[1]
RAW = ROOT.parent / "shared" / "data" / "expert-fingerprints"
MANIFEST = ROOT / "manifests" / "gpt-oss-20b.yaml"
needs_raw = pytest.mark.skipif(not RAW.is_dir(), reason="raw fingerprint data not present")


# ---------------------------------------------------------------- an independent reading


@functools.cache
def _raw_json(rel: str) -> dict:
    return json.loads((RAW / "summaries" / rel).read_text())


def _reference_rankings(subsets: list[str] | None) -> dict[int, list[tuple[int, float]]]:
    """The data README's rule, written plainly over the raw JSON: layer -> [(expert, score)]."""
    table = _raw_json("map.json")
    groups = [(f"{b}/{c}", buckets) for b, cats in table.items() for c, buckets in cats.items()]
    if subsets is not None:
        by_name = dict(groups)
        groups = [(name, by_name[name]) for name in subsets]
    sums: dict[int, dict[int, float]] = {}
    weight: dict[int, float] = {}
    for _, buckets in groups:
        for entry in buckets.values():
            summary = _raw_json(entry["summary_file_path"])
            w = entry["sample_count"]
            for phase in ("think_expert_analytics", "answer_expert_analytics"):
                for layer_key, experts in (summary.get(phase) or {}).items():
                    layer = int(layer_key.removeprefix("layer_"))
                    weight[layer] = weight.get(layer, 0.0) + w
                    layer_sums = sums.setdefault(layer, {})
                    for expert, values in experts.items():
                        e = int(expert)
                        layer_sums[e] = layer_sums.get(e, 0.0) + values["count_frequency"] * w * 0.5
    out = {}
    for layer, layer_sums in sums.items():
        scores = {e: s / weight[layer] for e, s in layer_sums.items()}
        out[layer] = [(e, scores[e]) for e in sorted(scores, key=lambda e: -scores[e])]
    return out


def _reference_interleave(domain: list[int], general: list[int]) -> list[int]:
    taken: list[int] = []
    for i in range(max(len(domain), len(general))):
        for source in (domain, general):
            if i < len(source) and source[i] not in taken:
                taken.append(source[i])
    return taken


@needs_raw
def test_the_real_manifest_reproduces_the_published_rule() -> None:
    manifest = load_manifest(MANIFEST)
    published = json.loads((RAW / "domain_subsets.json").read_text())
    general = _reference_rankings(None)
    expected = {"all": {layer: [e for e, _ in r] for layer, r in general.items()}}
    for name in ("science", "law", "safety"):
        spec = manifest.domain(name).statistics
        assert isinstance(spec, FingerprintStatistics)
        assert spec.subsets == published[name]
        ranked = _reference_rankings(published[name])
        expected[name] = {
            layer: _reference_interleave([e for e, _ in r], expected["all"][layer])
            for layer, r in ranked.items()
        }
        got = domain_ranking(manifest, name)
        for layer, r in ranked.items():  # scores of the ranked experts, to the last bit
            assert [got.scores[layer, e] for e, _ in r] == [s for _, s in r]
    expected["harmful"] = {layer: order[::-1] for layer, order in expected["safety"].items()}
    assert {len(r) for r in _reference_rankings(published["safety"]).values()} != {32}
    for name, orders in expected.items():
        got = domain_ranking(manifest, name)
        assert {layer: got.order[layer].tolist() for layer in orders} == orders, name
        for n in (4, 13, 31, 32):
            record = select_experts(manifest, manifest.variant(f"{name}-{n}"))
            assert record.kept_experts == {str(k): sorted(v[:n]) for k, v in orders.items()}


@needs_raw
def test_the_manifest_domains_list_the_published_subsets() -> None:
    manifest = load_manifest(MANIFEST)
    published = json.loads((RAW / "domain_subsets.json").read_text())
    for name, subsets in published.items():
        spec = manifest.domain(name.replace(" ", "_")).statistics
        assert isinstance(spec, FingerprintStatistics)
        assert spec.subsets == subsets, name


@needs_raw
def test_the_raw_folder_and_the_shipped_copy_agree() -> None:
    raw, packed = raw_table(RAW.resolve(), 32), packed_table()
    assert raw.subsets == packed.subsets
    for subsets in ("*", ["mmlu_test/virology", "sorry_bench_base/Self-Harm"]):
        assert raw.statistics(subsets).digest == packed.statistics(subsets).digest


def test_the_shipped_copy_covers_the_whole_study() -> None:
    table = packed_table()
    stats = table.statistics("*")
    assert (len(table.files), len(table.subsets)) == (703, 291)
    assert sum(f.sample_count for f in table.files) == 36000
    assert (stats.num_layers, stats.num_experts) == (24, 32)
    assert stats.met.all()
    assert "36000 samples" in stats.source


# ---------------------------------------------------------------- a small raw folder


def _write_raw(folder: Path, *, extra: dict | None = None) -> Path:
    """Two subsets; in map.json order `bench/x` (2 samples) comes before `bench/y` (1)."""
    files = {
        "bench/x/A.json": {
            "sample_count": 2,
            "num_think_tokens": 10.0,
            "num_answer_tokens": 5.0,
            "think_expert_analytics": {
                "layer_0": {
                    "1": {"count_frequency": 1.5, "prob_density": 0.4},
                    "0": {"count_frequency": 1.0, "prob_density": 0.3},
                }
            },
            "answer_expert_analytics": {
                "layer_0": {"2": {"count_frequency": 2.0, "prob_density": 0.5}}
            },
        },
        "bench/y/B.json": {
            "sample_count": 1,
            "num_think_tokens": 8.0,
            "think_expert_analytics": {
                "layer_0": {
                    "2": {"count_frequency": 2.0, "prob_density": 0.6},
                    "0": {"count_frequency": 1.0, "prob_density": 0.1},
                }
            },
            "answer_expert_analytics": {},
        },
        **(extra or {}),
    }
    table: dict = {}
    for rel, summary in files.items():
        bench, cat, name = rel.split("/")
        path = folder / "summaries" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(summary))
        table.setdefault(bench, {}).setdefault(cat, {})[name[:-5]] = {
            "sample_count": summary["sample_count"],
            "summary_file_path": rel,
        }
    (folder / "summaries" / "map.json").write_text(json.dumps(table))
    return folder


def test_the_rule_on_a_small_folder(tmp_path: Path) -> None:
    table = raw_table(_write_raw(tmp_path / "raw").resolve(), 4)
    listed = table.statistics(["bench/y", "bench/x"])
    # weight: B think (1) + A think (2) + A answer (2); B's empty answer is skipped.
    assert listed.weight.tolist() == [5.0]
    assert listed.selections.tolist() == [[1.5, 1.5, 3.0, 0.0]]
    assert listed.tokens == 2 * 15 + 8
    # Experts 0 and 1 tie: the one met first wins, so the subset order decides.
    assert ranking(listed.frequency(), listed.tie_rank) == [[2, 0, 1]]
    everything = table.statistics("*")
    assert ranking(everything.frequency(), everything.tie_rank) == [[2, 1, 0]]
    assert everything.tie_rank.tolist() == [[1, 0, 2, -1]]


def test_raw_errors_name_the_file_layer_and_expert(tmp_path: Path) -> None:
    bad = {"bench/z/C.json": {"sample_count": 1, "think_expert_analytics": {"layer_0": {"9": {}}}}}
    folder = _write_raw(tmp_path / "raw", extra=bad).resolve()
    message = r"C.json: think analytics, layer 0, expert '9': not an expert of the base"
    with pytest.raises(InputError, match=message):
        raw_table(folder, 4)
    (folder / "summaries" / "bench" / "z" / "C.json").unlink()
    with pytest.raises(InputError, match=r"summary file .*C.json does not exist"):
        raw_table(folder, 4)
    with pytest.raises(InputError, match=r"no summaries/map\.json"):
        raw_table(tmp_path.resolve(), 4)


def test_check_reports_unknown_and_repeated_subsets_with_a_hint(tmp_path: Path) -> None:
    spec = FingerprintStatistics(
        source="fingerprints",
        subsets=["mmlu_test/virology", "mmlu_test/virolgy", "mmlu_test/virology", "nope/x"],
    )
    config = {"model_type": "gpt_oss", "num_hidden_layers": 24, "num_local_experts": 32}
    assert check_statistics(spec, tmp_path, config) == [
        (("subsets", 2), "subset 'mmlu_test/virology' is listed twice"),
        (("subsets", 1), "unknown fingerprint subset 'mmlu_test/virolgy' (did you mean "
         "'mmlu_test/virology'?)"),
        (("subsets", 3), "unknown fingerprint subset 'nope/x'"),
    ]  # fmt: skip


def test_check_compares_layers_and_experts_with_the_base_config(tmp_path: Path) -> None:
    _write_raw(tmp_path / "raw")
    spec = FingerprintStatistics(source="fingerprints", subsets="*", path="raw")
    assert (
        check_statistics(
            spec,
            tmp_path,
            {"model_type": "gpt_oss", "num_hidden_layers": 1, "num_local_experts": 4},
        )
        == []
    )
    problems = check_statistics(
        spec, tmp_path, {"model_type": "gpt_oss", "num_hidden_layers": 2, "num_local_experts": 2}
    )
    assert problems == [
        (("path",), problems[0][1]),
    ]
    assert "layer 0, expert '2': not an expert of the base model (0..1)" in problems[0][1]
    shipped = FingerprintStatistics(source="fingerprints", subsets="*")
    assert check_statistics(
        shipped,
        tmp_path,
        {"model_type": "gpt_oss", "num_hidden_layers": 36, "num_local_experts": 128},
    )
    missing = FingerprintStatistics(source="fingerprints", subsets="*", path="gone")
    assert check_statistics(missing, tmp_path, {}) == [
        (("path",), "fingerprint folder gone does not exist")
    ]


def test_layer_count_mismatch_is_reported(tmp_path: Path) -> None:
    _write_raw(tmp_path / "raw")
    spec = FingerprintStatistics(source="fingerprints", subsets="*", path="raw")
    problems = check_statistics(
        spec, tmp_path, {"model_type": "gpt_oss", "num_hidden_layers": 24, "num_local_experts": 4}
    )
    assert problems == [((), "the fingerprints have 1 layers, the base model 24")]
    assert np.isfinite(raw_table((tmp_path / "raw").resolve(), 4).count_frequency).all()
