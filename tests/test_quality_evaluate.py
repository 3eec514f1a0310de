"""Quality figures on the tiny fixtures: masked base vs pruned checkpoint, batching, budget."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from bot.errors import InputError
from bot.fixtures import TinySpec, write_tiny_model
from bot.prune import prune_checkpoint
from bot.quality.evaluate import evaluate_checkpoint, evaluate_variants
from bot.quality.texts import make_set

SPEC = TinySpec()  # 2 layers, 8 experts, top-2
KEEP = {0: [1, 3, 5, 6], 1: [0, 2, 4, 7]}
TEXTS = [
    "The quick brown fox jumps over the lazy dog. " * 3,
    "def add(a, b):\n    return a + b\n",
    "Seventeen plus twenty-five is forty-two.",
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("tiny") / "base", spec=SPEC)


@pytest.fixture(scope="module")
def base(folder: Path) -> torch.nn.Module:
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def text(folder: Path):
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return make_set("prose", "3 prompts", TEXTS, tokenizer, tokens=120, sequence_length=24)


def _close(a, b, tol: float = 1e-5) -> None:
    for field in dataclasses.fields(a):
        x, y = getattr(a, field.name), getattr(b, field.name)
        assert x == pytest.approx(y, rel=tol, abs=tol), field.name


def test_masked_base_gives_the_pruned_checkpoints_figures(
    folder: Path, base: torch.nn.Module, text, tmp_path: Path
) -> None:
    pruned = prune_checkpoint(folder, tmp_path / "pruned", KEEP)
    model = AutoModelForCausalLM.from_pretrained(pruned.path, dtype=torch.float32).eval()
    direct = evaluate_checkpoint(base, model, [text], batch_size=3)["prose"]
    masked = evaluate_variants(base, [text], {"v": (KEEP, ["prose"])}, batch_size=3)
    figures = masked["v"]["prose"]
    _close(figures, direct)
    assert figures.tokens == direct.tokens == 120
    assert figures.kl > 1e-3  # the pruned model does differ from the base
    assert 0 < figures.top1 < 1
    assert figures.perplexity != figures.base_perplexity


def test_keeping_every_expert_is_the_base(base: torch.nn.Module, text) -> None:
    every = {layer: list(range(SPEC.num_experts)) for layer in range(SPEC.num_layers)}
    figures = evaluate_variants(base, [text], {"all": (every, ["prose"])}, progress=False)
    result = figures["all"]["prose"]
    assert (result.kl, result.top1) == (0.0, 1.0)
    assert result.perplexity == result.base_perplexity


def test_batching_changes_nothing_and_runs_repeat_exactly(base: torch.nn.Module, text) -> None:
    variants = {"a": (KEEP, ["prose"]), "b": ({0: [0, 1], 1: [2, 3]}, ["prose"])}
    one = evaluate_variants(base, [text], variants, batch_size=1, progress=False)
    four = evaluate_variants(base, [text], variants, batch_size=4, progress=False)
    again = evaluate_variants(base, [text], variants, batch_size=4, progress=False)
    assert four == again
    for vid in variants:
        _close(one[vid]["prose"], four[vid]["prose"])
    assert four["b"]["prose"].kl > four["a"]["prose"].kl  # 2 experts lose more than 4


def test_the_base_router_is_restored(base: torch.nn.Module, text) -> None:
    ids = torch.tensor([text.windows[0]])
    with torch.inference_mode():
        logits = base(input_ids=ids).logits
    before = [layer.mlp.router.bias.clone() for layer in base.model.layers]
    evaluate_variants(base, [text], {"a": (KEEP, ["prose"])}, progress=False)
    after = [layer.mlp.router.bias for layer in base.model.layers]
    assert all(torch.equal(x, y) for x, y in zip(before, after, strict=True))
    assert all(not layer.mlp.router._forward_hooks for layer in base.model.layers)
    with torch.inference_mode():
        assert torch.equal(base(input_ids=ids).logits, logits)  # routes as loaded again


def test_keeping_fewer_than_top_k_is_refused(base: torch.nn.Module, text) -> None:
    with pytest.raises(InputError, match=r"layer 0: cannot keep experts \[3\] \(top-2 of 8\)"):
        evaluate_variants(base, [text], {"a": ({0: [3], 1: [0, 1]}, ["prose"])}, progress=False)


def test_the_token_budget_cuts_windows_text_by_text(folder: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(folder)
    lengths = [len(tokenizer(t)["input_ids"]) for t in TEXTS]
    full = make_set("p", "", TEXTS, tokenizer, tokens=10_000, sequence_length=8)
    assert full.tokens == sum(n - 1 - (n - 1) // 8 for n in lengths)  # no window spans texts
    assert all(2 <= len(w) <= 8 for w in full.windows)
    cut = make_set("p", "", TEXTS, tokenizer, tokens=13, sequence_length=8)
    assert cut.tokens == 13
    *whole, last = cut.windows
    assert list(whole) == list(full.windows[: len(whole)])
    assert full.windows[len(whole)][: len(last)] == last
    assert cut.text_digest == full.text_digest and cut.tokens_digest != full.tokens_digest


def test_a_batch_padded_to_a_fixed_width_scores_the_same(base: torch.nn.Module, text) -> None:
    """Flex attention runs every batch at one width: columns of padding added to a batch
    leave each scored position's log-probabilities and targets as they were."""
    from bot.quality.evaluate import _Batch

    windows = text.windows[:2]
    plain = _Batch(windows, torch.device("cpu"))
    padded = _Batch(windows, torch.device("cpu"), 128)
    assert padded.ids.shape == (2, 128) and padded.count == plain.count
    assert torch.equal(padded.targets[padded.scored], plain.targets[plain.scored])
    with torch.inference_mode():
        a, b = plain.logits(base)[plain.scored], padded.logits(base)[padded.scored]
    assert a.shape[0] == plain.count and torch.allclose(a, b, atol=1e-5)


def test_a_short_last_batch_joins_the_one_before() -> None:
    """Every window is scored once, in order; a remainder under half a batch is not a batch
    of its own, one of half a batch or more is."""
    from bot.quality.evaluate import _batches

    windows = [(i,) for i in range(17)]
    assert [len(b) for b in _batches(windows, 8)] == [8, 9]
    assert [len(b) for b in _batches(windows[:12], 8)] == [8, 4]
    assert [len(b) for b in _batches(windows[:5], 8)] == [5]
    assert [len(b) for b in _batches(windows[:16], 8)] == [8, 8]
    assert [w for b in _batches(windows, 8) for w in b] == windows


@pytest.mark.skipif(
    shutil.which("g++") is None and shutil.which("clang++") is None,
    reason="torch.compile on the CPU needs a C++ compiler",
)
def test_the_compiled_comparison_is_the_eager_one() -> None:
    """On CUDA the per-position arithmetic runs compiled (`_fused`); compiled here on the CPU
    it gives the eager figures to float32 rounding, and still exactly 0 KL for the base."""
    from bot.quality.evaluate import _compare, _normaliser

    gen = torch.Generator().manual_seed(0)
    reference = (torch.randn(64, 512, generator=gen) * 3).bfloat16()
    logits = (reference.float() + torch.randn(64, 512, generator=gen) * 0.3).bfloat16()
    targets = torch.randint(0, 512, (64,), generator=gen)
    scored = torch.arange(64) % 5 != 0
    normaliser, compare = torch.compile(_normaliser), torch.compile(_compare)

    def figures(fn_lse, fn, x):
        ref_lse = fn_lse(reference)
        return fn(x, fn_lse(x), reference, ref_lse, reference.argmax(-1), targets, scored)

    with torch.inference_mode():
        eager = figures(_normaliser, _compare, logits)
        compiled = figures(normaliser, compare, logits)
        same = figures(normaliser, compare, reference)
    assert eager[0] > 1  # the variant differs
    assert torch.allclose(compiled, eager, rtol=1e-5)
    assert same[0].item() == 0.0 and same[1].item() == int(scored.sum())
