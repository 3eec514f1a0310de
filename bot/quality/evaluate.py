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

Sums are kept in float64, on the model's device until the end (the loop never waits for the
device); the log-softmax runs in float32 whatever the model's dtype; per position, the KL
is one dot product of the base's probabilities with the difference of log-probabilities.

On CUDA, `evaluation_attention` runs a model whose attention is the eager kind on flex
attention where the model supports it (gpt-oss: eager attention materialises every
window's score matrix; flex computes the same softmax, sinks included, in fused kernels).

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


class _Sums:
    """Running sums of one variant on one set, kept on the model's device as float64 so
    that the loop never waits for the device to read them back (on the CPU for MPS, which
    has no float64: `_wide_sum`)."""

    def __init__(self, device: torch.device) -> None:
        device = torch.device("cpu") if device.type == "mps" else device
        zero = torch.zeros((), dtype=torch.float64, device=device)
        self.kl, self.agree, self.nll, self.base_nll = (zero.clone() for _ in range(4))
        self.tokens = 0

    def figures(self) -> Figures:
        n = max(self.tokens, 1)
        kl, agree, nll, base_nll = (
            float(t) for t in (self.kl, self.agree, self.nll, self.base_nll)
        )
        return Figures(
            kl=kl / n,
            top1=agree / n,
            perplexity=math.exp(nll / n),
            base_perplexity=math.exp(base_nll / n),
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
    Batches are the sets' windows in order, `batch_size` at a time (`_batches`), right-padded:
    the same inputs on the same device give the same figures.
    """
    masks = RouterMasks(model)
    device = next(model.parameters()).device

    def routed(keep: Keep) -> Any:
        prepared = masks.prepared(keep, device)

        def setup() -> torch.nn.Module:
            masks.use(prepared)
            return model

        return setup

    def base() -> torch.nn.Module:
        masks.use(None)
        return model

    runs = {vid: (names, routed(keep)) for vid, (keep, names) in variants.items()}
    try:
        return _measure(model, base, sets, runs, batch_size=batch_size, progress=progress)
    finally:
        masks.remove()  # the hooks off: the model routes as loaded again


@contextmanager
def evaluation_attention(
    model: torch.nn.Module, sets: Sequence[EvalSet], batch_size: int
) -> Iterator[str]:
    """Within the block, `model` runs its fastest exact attention for evaluating `sets`;
    yields the name of the attention it runs (recorded with the figures).

    On CUDA with triton present, a model on eager attention that supports flex attention is
    switched to it, and back afterwards. Flex attention's kernels are compiled per batch
    shape: `evaluate_variants` pads every batch to one width (`_flex_width`), so that only a
    set's last batch (other rows than `batch_size`, see `_batches`) adds a shape; a first
    full batch here compiles them, and where that fails the model stays on eager.
    """
    import importlib.util

    current = str(getattr(model.config, "_attn_implementation", None) or "eager")
    device = next(model.parameters()).device
    flex = (
        device.type == "cuda"
        and current == "eager"
        and bool(getattr(model, "_supports_flex_attn", False))
        and importlib.util.find_spec("triton") is not None
        and any(s.windows for s in sets)
    )
    if not flex:
        yield current
        return
    model.set_attn_implementation("flex_attention")
    try:
        with torch._dynamo.config.patch(automatic_dynamic_shapes=False):
            try:
                with torch.inference_mode():
                    ids = torch.zeros((batch_size, _flex_width(sets)), dtype=torch.long)
                    model(input_ids=ids.to(device), use_cache=False)
            except Exception:  # no kernel for this GPU or shape: eager computes the same
                model.set_attn_implementation(current)
                yield current
                return
            yield "flex_attention"
    finally:
        model.set_attn_implementation(current)


def _flex_width(sets: Sequence[EvalSet]) -> int:
    """The one batch width of a flex-attention run: the longest window, rounded up to flex
    attention's block of 128 tokens."""
    longest = max((len(w) for s in sets for w in s.windows), default=1)
    return -(-longest // 128) * 128


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
    device = next(model.parameters()).device
    sums = {v: {n: _Sums(device) for n in names} for v, (names, _) in runs.items()}
    total = sum(s.tokens * (1 + len(users[s.name])) for s in sets if users[s.name])
    bar = steps(f"evaluating {len(runs)} variant(s)", total=total, unit="tokens", enabled=progress)
    flex = getattr(model.config, "_attn_implementation", None) == "flex_attention"
    width = _flex_width(sets) if flex else None
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), _deterministic(device), bar as advance:
            for text_set in sets:
                if not users[text_set.name]:
                    continue
                for windows in _batches(text_set.windows, batch_size):
                    batch = _Batch(windows, device, width)
                    reference = batch.log_probs(base())
                    base_nll = -_wide_sum(batch.target_log_probs(reference))
                    base_top = reference.argmax(-1)
                    base_p = reference.exp()
                    advance(batch.count)
                    for vid in users[text_set.name]:
                        lp = batch.log_probs(runs[vid][1]())
                        acc = sums[vid][text_set.name]
                        acc.kl += _wide_sum(_row_dot(base_p, reference - lp))
                        acc.agree += _wide_sum((lp.argmax(-1) == base_top).float())
                        acc.nll -= _wide_sum(batch.target_log_probs(lp))
                        acc.base_nll += base_nll
                        acc.tokens += batch.count
                        advance(batch.count)
    finally:
        model.train(was_training)
    return {v: {n: s.figures() for n, s in per.items()} for v, per in sums.items()}


def _batches(windows: Sequence[Sequence[int]], size: int) -> list[Sequence[Sequence[int]]]:
    """`windows` in order, `size` at a time; a last batch of less than half of `size` joins
    the one before (a batch of one window costs almost what a full one does)."""
    starts = list(range(0, len(windows), size))
    if len(starts) > 1 and len(windows) - starts[-1] < size / 2:
        starts.pop()
    ends = [*starts[1:], len(windows)]
    return [windows[a:b] for a, b in zip(starts, ends, strict=True)]


class _Batch:
    """Windows right-padded into one batch on `device` (to `width` if given), with the
    positions that predict a real next token (flat indices, so that selecting them needs no
    device sync)."""

    def __init__(
        self, windows: Sequence[Sequence[int]], device: torch.device, width: int | None = None
    ) -> None:
        width = width or max(len(w) for w in windows)
        ids = torch.zeros((len(windows), width), dtype=torch.long)
        attention = torch.zeros((len(windows), width), dtype=torch.long)
        for row, window in enumerate(windows):
            ids[row, : len(window)] = torch.tensor(window, dtype=torch.long)
            attention[row, : len(window)] = 1
        scored = attention[:, 1:].bool()
        rows, columns = scored.nonzero(as_tuple=True)
        positions = rows * width + columns
        self.count = int(positions.numel())
        self.ids, self.attention = ids.to(device), attention.to(device)
        self.positions = positions.to(device)
        self.targets = ids.view(-1)[positions + 1].to(device)

    def log_probs(self, model: torch.nn.Module) -> torch.Tensor:
        """float32 log-probabilities of the next token at every scored position: [N, vocab]."""
        logits = model(input_ids=self.ids, attention_mask=self.attention, use_cache=False).logits
        flat = logits.reshape(-1, logits.shape[-1]).index_select(0, self.positions)
        return torch.log_softmax(flat, dim=-1, dtype=torch.float32)

    def target_log_probs(self, log_probs: torch.Tensor) -> torch.Tensor:
        """The log-probability of each actual next token: [N]."""
        return log_probs.gather(-1, self.targets[:, None]).squeeze(-1)


def _wide_sum(values: torch.Tensor) -> torch.Tensor:
    """The sum of `values` as a float64 scalar, on their device (MPS: summed in float32
    there, then carried to the CPU)."""
    if values.device.type == "mps":
        return values.sum(dtype=torch.float32).cpu().double()
    return values.double().sum()


def _row_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per row, the sum of `a * b` ([N, V] -> [N]), without an [N, V] product in memory."""
    return torch.bmm(a.unsqueeze(1), b.unsqueeze(2)).view(-1)


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
