"""The shipped trained model: its release layout, its answers, and what pruning does to them.

Figures measured on the shipped model (CPU, greedy, `scripts/measure_tiny_moe.py`) are in
bot/data/tiny-moe/README.md; the bounds here leave wide margins under them, so that they
hold on any machine, and still fail for a random or a badly pruned model.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors import safe_open

from bot.examples import LoadedModel, load_model
from bot.fixtures.trained import (
    DOMAINS,
    TEXT_DOMAINS,
    arithmetic_accuracy,
    calibration_texts,
    held_out_problems,
    held_out_texts,
    perplexity,
    render_chat,
    top_k_overlap,
    trained_model_folder,
)
from bot.prune import prune_checkpoint
from bot.selection.calibrate import calibrate
from bot.selection.statistics import ExpertStatistics
from bot.selection.strategies import final_orders, ranking

EVAL_PROBLEMS = 48
KEPT = 4
TEXTS = 8
MAX_TOKENS = 128
PERPLEXITY_BOUND = {"python": 200, "prose": 600, "legal": 600}
"""About twice what the shipped model measures on these texts (85, 289, 287); a model that
knew nothing of a domain would sit near the vocabulary size, 4096, or far above it."""


@pytest.fixture(scope="module")
def base() -> LoadedModel:
    return load_model(trained_model_folder(), device="cpu")


@pytest.fixture(scope="module")
def statistics(base: LoadedModel) -> dict[str, ExpertStatistics]:
    return {
        domain: calibrate(
            base.model,
            base.tokenizer,
            calibration_texts(domain, TEXTS),
            max_tokens=MAX_TOKENS,
            progress=False,
        )
        for domain in DOMAINS
    }


def _orders(stats: ExpertStatistics) -> list[list[int]]:
    return final_orders(ranking(stats.frequency(), stats.tie_rank), stats.num_experts).tolist()


def test_release_layout_is_the_real_one() -> None:
    folder = trained_model_folder()
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "gpt_oss"
    assert config["quantization_config"]["quant_method"] == "mxfp4"
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) >= 3
    dtypes = {}
    for shard in shards:
        with safe_open(str(folder / shard), "pt") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open has no __iter__)
                dtypes[name] = f.get_slice(name).get_dtype()
    assert set(dtypes) == set(index["weight_map"])
    experts = {n for n in dtypes if ".mlp.experts." in n and n.endswith(("_blocks", "_scales"))}
    assert len(experts) == 4 * config["num_hidden_layers"]
    assert {dtypes[n] for n in experts} == {"U8"}
    assert {dtypes[n] for n in set(dtypes) - experts} == {"BF16"}
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
                 "generation_config.json", "NOTICE"):  # fmt: skip
        assert (folder / name).is_file(), name
    assert sum(p.stat().st_size for p in folder.iterdir()) <= 15_000_000


def test_demo_manifest_pins_the_shipped_config() -> None:
    pinned = Path(__file__).resolve().parents[1] / "manifests" / "tiny-moe.config.json"
    assert pinned.read_text() == (trained_model_folder() / "config.json").read_text()


def test_chat_template_renders_what_training_saw(base: LoadedModel) -> None:
    text = base.tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 2 + 3?"}],
        tokenize=False,
        add_generation_prompt=True,
        reasoning_effort="low",
    )
    assert text == render_chat("What is 2 + 3?")


def test_answers_held_out_arithmetic(base: LoadedModel) -> None:
    assert arithmetic_accuracy(base, held_out_problems(EVAL_PROBLEMS)) >= 0.8


@pytest.mark.parametrize("domain", TEXT_DOMAINS)
def test_continues_held_out_text(base: LoadedModel, domain: str) -> None:
    texts = held_out_texts(domain)[:TEXTS]
    assert perplexity(base, texts, max_tokens=MAX_TOKENS) < PERPLEXITY_BOUND[domain]


def test_routing_differs_by_domain(statistics: dict[str, ExpertStatistics]) -> None:
    overlaps = {
        (a, b): top_k_overlap(statistics[a], statistics[b], KEPT)
        for a in DOMAINS
        for b in DOMAINS
        if a < b
    }
    mean = {pair: sum(v) / len(v) for pair, v in overlaps.items()}
    # Arithmetic shares at most half its top experts with any other domain (measured:
    # a quarter or less); no two domains route alike.
    assert all(m <= 0.5 for pair, m in mean.items() if "arithmetic" in pair), mean
    assert all(m < 1.0 for m in mean.values()), mean


def _pruned(src: Path, dst: Path, orders: list[list[int]]) -> LoadedModel:
    keep = {layer: sorted(order[:KEPT]) for layer, order in enumerate(orders)}
    prune_checkpoint(src, dst, keep)
    return load_model(dst, device="cpu")


def test_pruning_for_arithmetic_keeps_arithmetic(
    statistics: dict[str, ExpertStatistics], tmp_path: Path
) -> None:
    src = trained_model_folder()
    problems = held_out_problems(EVAL_PROBLEMS)
    own = _orders(statistics["arithmetic"])
    accuracy = {
        "arithmetic": arithmetic_accuracy(_pruned(src, tmp_path / "own", own), problems),
        "legal": arithmetic_accuracy(
            _pruned(src, tmp_path / "legal", _orders(statistics["legal"])), problems
        ),
        "inverse": arithmetic_accuracy(
            _pruned(src, tmp_path / "inverse", [o[::-1] for o in own]), problems
        ),
    }
    assert accuracy["arithmetic"] >= 0.5, accuracy
    assert accuracy["arithmetic"] >= accuracy["legal"] + 0.3, accuracy
    assert accuracy["arithmetic"] >= accuracy["inverse"] + 0.3, accuracy
