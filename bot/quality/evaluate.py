"""Measure variants against their base model, all in one loaded base model.

A variant is evaluated by masking the removed experts' router logits in the base model
(forward hooks apply the family's routing rule with them unchoosable, see
`bot.families.hooks`): routing then never picks them, and the weights over the chosen k are
the pruned model's, so the masked base computes what the pruned checkpoint computes
(`tests/test_quality_evaluate.py` checks it within 1e-5, `tests/test_families.py` for
every family). One load serves every variant of a release; each batch of text runs once
through the base and once per variant.

Per text set and variant, over every scored next-token position:

- `kl`: mean KL(base || variant) of the next-token distributions, nats per token;
- `top1`: share of positions where both models' most likely next token is the same;
- `perplexity`, `base_perplexity`: exp of the mean negative log-likelihood of the actual
  next token under the variant and under the base.

Sums are kept in float64; the log-softmax runs in float32 whatever the model's dtype.

Example:
    >>> keep = {0: [1, 3, 5, 6], 1: [0, 2, 4, 7]}        # layer -> kept experts
    >>> runs = {"math-4": (keep, ["math"])}             # variant -> (keep, text sets)
    >>> figures = evaluate_variants(model, [math_set], runs)            # doctest: +SKIP
    >>> figures["math-4"]["math"].kl                                    # doctest: +SKIP
    0.031...
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from bot.errors import InputError
from bot.families.hooks import RouterMasks
from bot.progress import steps
from bot.quality.texts import EvalSet

Keep = Mapping[int, Sequence[int]]
"""Layer -> kept original expert indices."""


@dataclass(frozen=True)
class Figures:
    """One variant on one text set."""

    kl: float
    top1: float
    perplexity: float
    base_perplexity: float
    tokens: int


class RouterMask:
    """Masks the removed experts of one variant at a time in a loaded model: each MoE
    layer's router then routes only to the kept experts, by its family's rule
    (`bot.families.hooks.RouterMasks`)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self._masks = RouterMasks(model)

    def apply(self, keep: Keep | None) -> None:
        """Route as the variant keeping `keep` would (None: the base, every expert)."""
        self._masks.apply(keep)

    def restore(self) -> None:
        self.apply(None)

    @contextmanager
    def restored_after(self) -> Iterator[RouterMask]:
        try:
            yield self
        finally:
            self.restore()
            self._masks.remove()


class _Sums:
    def __init__(self) -> None:
        self.kl = self.agree = self.nll = self.base_nll = 0.0
        self.tokens = 0

    def figures(self) -> Figures:
        n = max(self.tokens, 1)
        return Figures(
            kl=self.kl / n,
            top1=self.agree / n,
            perplexity=math.exp(self.nll / n),
            base_perplexity=math.exp(self.base_nll / n),
            tokens=self.tokens,
        )


def evaluate_variants(
    model: torch.nn.Module,
    sets: Sequence[EvalSet],
    variants: Mapping[str, tuple[Keep, Sequence[str]]],
    *,
    batch_size: int = 8,
    progress: bool = True,
) -> dict[str, dict[str, Figures]]:
    """Figures of every variant on each text set it names: `{variant: {set: Figures}}`.

    `variants` maps an id to its kept experts and the names of the sets to measure it on.
    Batches are the sets' windows in order, `batch_size` at a time, right-padded: the same
    inputs on the same device give the same figures.
    """
    masks = RouterMask(model)

    def routed(keep: Keep) -> Any:
        def setup() -> torch.nn.Module:
            masks.apply(keep)
            return model

        return setup

    def base() -> torch.nn.Module:
        masks.apply(None)
        return model

    runs = {vid: (names, routed(keep)) for vid, (keep, names) in variants.items()}
    with masks.restored_after():
        return _measure(model, base, sets, runs, batch_size=batch_size, progress=progress)


def evaluate_checkpoint(
    base: torch.nn.Module,
    other: torch.nn.Module,
    sets: Sequence[EvalSet],
    *,
    batch_size: int = 8,
) -> dict[str, Figures]:
    """Figures of a separately loaded model (a pruned checkpoint) against `base`, per set."""
    names = [s.name for s in sets]
    runs = {"checkpoint": (names, lambda: other)}
    figures = _measure(base, lambda: base, sets, runs, batch_size=batch_size, progress=False)
    return figures["checkpoint"]


def _measure(
    model: torch.nn.Module,
    base: Any,
    sets: Sequence[EvalSet],
    runs: Mapping[str, tuple[Sequence[str], Any]],
    *,
    batch_size: int,
    progress: bool,
) -> dict[str, dict[str, Figures]]:
    """The loop: per batch, the base once, then each run on it (`setup()` gives its model)."""
    by_name = {s.name for s in sets}
    for vid, (names, _) in runs.items():
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise InputError(f"variant {vid!r}: no evaluation text {unknown[0]!r}")
    users = {s.name: [v for v, (names, _) in runs.items() if s.name in names] for s in sets}
    sums = {v: {n: _Sums() for n in names} for v, (names, _) in runs.items()}
    device = next(model.parameters()).device
    total = sum(s.tokens * (1 + len(users[s.name])) for s in sets if users[s.name])
    bar = steps(f"evaluating {len(runs)} variant(s)", total=total, unit="tokens", enabled=progress)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), _deterministic(device), bar as advance:
            for text_set in sets:
                if not users[text_set.name]:
                    continue
                for start in range(0, len(text_set.windows), batch_size):
                    batch = text_set.windows[start : start + batch_size]
                    ids, attention, valid = _pad(batch, device)
                    targets = ids[:, 1:][valid]
                    reference = _log_probs(base(), ids, attention, valid)
                    base_nll = float(-reference.gather(-1, targets[:, None]).double().sum())
                    base_top = reference.argmax(-1)
                    base_p = reference.exp()
                    count = int(targets.numel())
                    advance(count)
                    for vid in users[text_set.name]:
                        lp = _log_probs(runs[vid][1](), ids, attention, valid)
                        acc = sums[vid][text_set.name]
                        acc.kl += float((base_p * (reference - lp)).sum(-1).double().sum())
                        acc.agree += float((lp.argmax(-1) == base_top).sum())
                        acc.nll += float(-lp.gather(-1, targets[:, None]).double().sum())
                        acc.base_nll += base_nll
                        acc.tokens += count
                        advance(count)
    finally:
        model.train(was_training)
    return {v: {n: s.figures() for n, s in per.items()} for v, per in sums.items()}


def _log_probs(
    model: torch.nn.Module, ids: torch.Tensor, attention: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """float32 log-probabilities of the next token at every scored position: [N, vocab]."""
    logits = model(input_ids=ids, attention_mask=attention, use_cache=False).logits
    return torch.log_softmax(logits[:, :-1][valid].float(), dim=-1)


def _pad(
    batch: Sequence[Sequence[int]], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids, attention mask, and which of positions 0..L-2 predict a real token."""
    width = max(len(w) for w in batch)
    ids = torch.zeros((len(batch), width), dtype=torch.long)
    attention = torch.zeros((len(batch), width), dtype=torch.long)
    for row, window in enumerate(batch):
        ids[row, : len(window)] = torch.tensor(window, dtype=torch.long)
        attention[row, : len(window)] = 1
    valid = attention[:, 1:].bool()
    return ids.to(device), attention.to(device), valid.to(device)


@contextmanager
def _deterministic(device: torch.device) -> Iterator[None]:
    """Deterministic kernels on CUDA (index_add_ without atomics) for the duration."""
    if device.type != "cuda":
        yield
        return
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)
