"""Quality figures that mean something: the trained tiny model, pruned for one domain or another.

Bounds leave wide margins under the figures measured on the shipped model, so that they hold
on any machine and still fail for a random model or a wrong mask.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bot.examples import LoadedModel, load_model
from bot.fixtures.trained import (
    calibration_texts,
    held_out_problems,
    render_chat,
    trained_model_folder,
)
from bot.prune import prune_checkpoint
from bot.quality.evaluate import Figures, evaluate_checkpoint, evaluate_variants
from bot.quality.texts import EvalSet, make_set
from bot.selection.calibrate import calibrate
from bot.selection.strategies import final_orders, ranking

KEPT = 8  # of 16 experts per layer (at 4 every variant is far from the base)


@pytest.fixture(scope="module")
def base() -> LoadedModel:
    return load_model(trained_model_folder(), device="cpu")


@pytest.fixture(scope="module")
def keeps(base: LoadedModel) -> dict[str, dict[int, list[int]]]:
    """The first KEPT experts of each layer by selection frequency, per domain."""
    out = {}
    for domain in ("arithmetic", "python"):
        texts = calibration_texts(domain)
        stats = calibrate(base.model, base.tokenizer, texts, progress=False)
        orders = final_orders(ranking(stats.frequency(), stats.tie_rank), stats.num_experts)
        out[domain] = {layer: sorted(order[:KEPT].tolist()) for layer, order in enumerate(orders)}
    return out


@pytest.fixture(scope="module")
def sets(base: LoadedModel) -> list[EvalSet]:
    """Held-out arithmetic chats: problems the model never saw, in the harmony format."""
    chats = [render_chat(p.question, p.answer) for p in held_out_problems(64)]
    return [make_set("arithmetic", "", chats, base.tokenizer, tokens=1024, sequence_length=256)]


@pytest.fixture(scope="module")
def figures(base, keeps, sets) -> dict[str, Figures]:
    variants = {d: (keep, ["arithmetic"]) for d, keep in keeps.items()}
    figures = evaluate_variants(base.model, sets, variants, progress=False)
    return {d: per["arithmetic"] for d, per in figures.items()}


def test_pruned_for_arithmetic_stays_closer_to_the_base_on_arithmetic(figures) -> None:
    own, other = figures["arithmetic"], figures["python"]
    assert own.kl < 0.8 * other.kl  # measured: 2.3 against 3.8 nats/token
    assert own.top1 > other.top1 + 0.05  # measured: 70% against 58%
    assert own.perplexity < other.perplexity
    assert own.base_perplexity == other.base_perplexity


def test_the_pruned_mxfp4_checkpoint_gives_the_masked_figures(
    base, keeps, sets, figures, tmp_path: Path
) -> None:
    pruned = prune_checkpoint(trained_model_folder(), tmp_path / "pruned", keeps["arithmetic"])
    model = load_model(pruned.path, device="cpu").model
    direct = evaluate_checkpoint(base.model, model, sets)["arithmetic"]
    for field in dataclasses.fields(Figures):
        a, b = getattr(figures["arithmetic"], field.name), getattr(direct, field.name)
        assert a == pytest.approx(b, rel=1e-5, abs=1e-5), field.name
