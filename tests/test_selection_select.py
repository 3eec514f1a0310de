"""Selection through a manifest: every strategy on saved statistics of known answer, the
routing coverage, manifest errors, and the real release's 232 variants."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bot.errors import InputError
from bot.fixtures import TinySpec, tiny_config
from bot.manifest import Manifest, load_manifest
from bot.selection.select import domain_ranking, domain_statistics, select_experts
from bot.selection.statistics import make_statistics, save_statistics

ROOT = Path(__file__).resolve().parents[1]
CONFIG = tiny_config(TinySpec(num_layers=2, num_experts=8, top_k=2))


def _save(folder: Path, name: str, selections: list[list[float]], **extra: object) -> None:
    args: dict = {"mass": selections, "weight": [10.0, 10.0], "tokens": 10, "source": name}
    args.update(extra)
    save_statistics(make_statistics(selections, **args), folder / f"{name}.safetensors")


def _domain(name: str, selection: str = "{strategy: frequency}", stats: str | None = None) -> str:
    stats = stats or f"{{source: file, path: {name}.safetensors}}"
    return f"""
  - id: {name}
    title: {name}
    description: test domain
    statistics: {stats}
    selection: {selection}
    examples: ["hi"]"""


def _manifest(folder: Path, domains: str) -> Path:
    (folder / "base.config.json").write_text(json.dumps(CONFIG))
    shutil.copy(ROOT / "templates" / "model_card.md.j2", folder / "card.md.j2")  # in the repo
    path = folder / "release.yaml"
    path.write_text(
        "base: {repo: tester/base, path: base, config: base.config.json}\n"
        "card: {template: card.md.j2}\n"
        'naming: "tiny-{domain}-{experts}"\n'
        "hub: {namespace: tester}\n"
        "experts: {min: 2, max: 8}\n"
        f"domains:{domains}\n"
    )
    return path


@pytest.fixture
def release(tmp_path: Path) -> Manifest:
    # gen: layer 0 ranks 0..7, layer 1 ranks 7..0; its router mass runs the other way.
    _save(
        tmp_path,
        "gen",
        [[8, 7, 6, 5, 4, 3, 2, 1], [1, 2, 3, 4, 5, 6, 7, 8]],
        mass=[[1, 2, 3, 4, 5, 6, 7, 8], [8, 7, 6, 5, 4, 3, 2, 1]],
    )
    # niche met only experts 3, 5 (layer 0) and 0, 1 (layer 1, a tie that 1 met first).
    _save(
        tmp_path,
        "niche",
        [[0, 0, 0, 2, 0, 4, 0, 0], [3, 3, 0, 0, 0, 0, 0, 0]],
        tie_rank=[[-1, -1, -1, 0, -1, 1, -1, -1], [1, 0, -1, -1, -1, -1, -1, -1]],
    )
    _save(tmp_path, "short", [[0, 0, 1, 0, 0, 0, 5, 0], [0, 0, 0, 0, 2, 2, 0, 0]])
    domains = (
        _domain("gen")
        + _domain("mass", "{strategy: router_mass}", "{source: file, path: gen.safetensors}")
        + _domain("niche", "{strategy: interleave, with: gen}")
        + _domain("short")
        + """
  - id: anti
    title: anti
    description: test domain
    selection: {strategy: inverse, of: niche}
    examples: ["hi"]"""
    )
    return load_manifest(_manifest(tmp_path, domains))


def _orders(manifest: Manifest, domain: str) -> list[list[int]]:
    return domain_ranking(manifest, domain).order.tolist()


def test_frequency_ranks_by_selection_count(release: Manifest) -> None:
    assert _orders(release, "gen") == [list(range(8)), list(range(7, -1, -1))]
    record = select_experts(release, release.variant("gen-3"))
    assert record.kept_experts == {"0": [0, 1, 2], "1": [5, 6, 7]}
    assert record.scores == {"0": [0.8, 0.7, 0.6], "1": [0.6, 0.7, 0.8]}
    assert record.strategy == "frequency"


def test_router_mass_ranks_by_summed_probability(release: Manifest) -> None:
    assert _orders(release, "mass") == [list(range(7, -1, -1)), list(range(8))]
    record = select_experts(release, release.variant("mass-2"))
    assert record.kept_experts == {"0": [6, 7], "1": [0, 1]}
    assert record.scores == {"0": [0.7, 0.8], "1": [0.8, 0.7]}


def test_interleave_alternates_with_the_other_domain_and_fills_from_it(release: Manifest) -> None:
    assert _orders(release, "niche") == [[5, 0, 3, 1, 2, 4, 6, 7], [1, 7, 0, 6, 5, 4, 3, 2]]
    record = select_experts(release, release.variant("niche-3"))
    assert record.kept_experts == {"0": [0, 3, 5], "1": [0, 1, 7]}
    assert record.strategy == "interleave(with=gen)"
    # Scores are the domain's own: experts its data never met score 0.
    assert record.scores == {"0": [0.0, 0.2, 0.4], "1": [0.3, 0.3, 0.0]}


def test_inverse_reverses_the_other_domains_final_order(release: Manifest) -> None:
    assert _orders(release, "anti") == [[7, 6, 4, 2, 1, 3, 0, 5], [2, 3, 4, 5, 6, 0, 7, 1]]
    record = select_experts(release, release.variant("anti-2"))
    assert record.kept_experts == {"0": [6, 7], "1": [2, 3]}
    niche = select_experts(release, release.variant("niche-2"))
    assert record.statistics_digest == niche.statistics_digest
    assert record.strategy == "inverse(of=niche)"


def test_counts_beyond_the_ranked_experts_take_never_met_ones_lowest_index_first(
    release: Manifest,
) -> None:
    # Layer 1: experts 4 and 5 tie (lower index first), then the never-met ones.
    assert _orders(release, "short") == [[6, 2, 0, 1, 3, 4, 5, 7], [4, 5, 0, 1, 2, 3, 6, 7]]
    record = select_experts(release, release.variant("short-3"))
    assert record.kept_experts == {"0": [0, 2, 6], "1": [0, 4, 5]}


def test_routing_coverage_is_the_share_of_routing_on_kept_experts(release: Manifest) -> None:
    coverage = select_experts(release, release.variant("niche-2")).routing_coverage
    assert coverage is not None
    # Layer 0 keeps 5 and 0: 4 of niche's 6 selections; layer 1 keeps 1 and 7: 3 of 6.
    assert coverage.per_layer == pytest.approx([4 / 6, 3 / 6])
    assert coverage.mean == pytest.approx((4 / 6 + 3 / 6) / 2)
    full = select_experts(release, release.variant("gen-8")).routing_coverage
    assert full is not None and full.per_layer == [1.0, 1.0]


def test_records_name_the_statistics_read(release: Manifest) -> None:
    gen = select_experts(release, release.variant("gen-2"))
    niche = select_experts(release, release.variant("niche-2"))
    assert gen.statistics_source == "gen"
    assert gen.statistics_digest == domain_statistics(release, "gen").digest
    assert niche.statistics_source == "niche + gen"
    assert niche.statistics_digest not in (gen.statistics_digest, "")
    with pytest.raises(InputError, match="domain 'anti' has no statistics of its own"):
        domain_statistics(release, "anti")


def test_scores_json_lists_each_layer_in_final_order(release: Manifest) -> None:
    data = domain_ranking(release, "niche").to_json(layer=1)
    assert [row["layer"] for row in data["layers"]] == [1]
    top = data["layers"][0]["ranking"][:2]
    assert top == [
        {"rank": 1, "expert": 1, "score": 0.3, "measured": True},
        {"rank": 2, "expert": 7, "score": 0.0, "measured": False},
    ]
    with pytest.raises(InputError, match="no layer 5"):
        domain_ranking(release, "niche").to_json(layer=5)


def test_statistics_that_do_not_fit_the_base_model_are_manifest_errors(tmp_path: Path) -> None:
    _save(tmp_path, "wide", [[1.0] * 9, [1.0] * 9])
    path = _manifest(tmp_path, _domain("wide") + _domain("gone"))
    with pytest.raises(InputError) as err:
        load_manifest(path)
    text = str(err.value)
    assert "the statistics have 9 experts per layer, the base model 8" in text
    assert "statistics file gone.safetensors does not exist" in text
    assert all(p.line > 1 for p in err.value.problems)


def test_an_unknown_subset_is_a_located_manifest_error_with_a_hint(tmp_path: Path) -> None:
    config = {**CONFIG, "num_hidden_layers": 24, "num_local_experts": 32}
    config["layer_types"] = ["sliding_attention", "full_attention"] * 12
    stats = '{source: fingerprints, subsets: ["mmlu_test/virology", "mmlu_test/anatomyy"]}'
    path = _manifest(tmp_path, _domain("med", stats=stats))
    (tmp_path / "base.config.json").write_text(json.dumps(config))
    with pytest.raises(InputError) as err:
        load_manifest(path)
    (problem,) = err.value.problems
    assert problem.message == (
        "unknown fingerprint subset 'mmlu_test/anatomyy' (did you mean 'mmlu_test/anatomy'?)"
    )
    line = path.read_text().splitlines()[problem.line - 1]
    assert line[problem.column - 1 :].startswith('"mmlu_test/anatomyy"')


def test_the_real_release_selects_all_232_variants_consistently() -> None:
    manifest = load_manifest(ROOT / "manifests" / "gpt-oss-20b.yaml")
    records = {v.id: select_experts(manifest, v) for v in manifest.variants}
    assert len(records) == 232
    for domain in {v.domain for v in manifest.variants}:
        previous: set[tuple[int, int]] = set()
        digests = set()
        for n in range(4, 33):
            record = records[f"{domain}-{n}"]
            kept = {(int(k), e) for k, row in record.kept_experts.items() for e in row}
            assert all(len(row) == n and row == sorted(row) for row in record.kept_experts.values())
            assert previous < kept  # a larger variant keeps everything a smaller one does
            previous = kept
            digests.add(record.statistics_digest)
        assert len(digests) == 1
        assert records[f"{domain}-32"].routing_coverage.mean == pytest.approx(1.0)
    harmful, safety = records["harmful-4"], records["safety-4"]
    assert harmful.routing_coverage.mean < safety.routing_coverage.mean
    assert select_experts(manifest, manifest.variant("law-9")) == records["law-9"]
