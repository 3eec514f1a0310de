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
device). Per position, the arithmetic runs in float32 on the raw logits (`_compare`): the
log-softmax's normaliser once per model run, then the KL as the base's probabilities times
the difference of log-probabilities, summed. On CUDA with triton it is compiled into fused
kernels (`_fused`), which read the logits a few times instead of writing float32 copies of
them. A variant that computes the base's logits gets exactly the base's figures.

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
    """Running sums of one variant on one set (KL, agreement and negative log-likelihood,
    then the base's), kept on the model's device as float64 so that the loop never waits
    for the device to read them back (on the CPU for MPS, which has no float64:
    `_wide_sum`)."""

    def __init__(self, device: torch.device) -> None:
        device = torch.device("cpu") if device.type == "mps" else device
        self.totals = torch.zeros(4, dtype=torch.float64, device=device)
        self.tokens = 0

    def figures(self) -> Figures:
        n = max(self.tokens, 1)
        kl, agree, nll, base_nll = self.totals.tolist()
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
    current = str(getattr(model.config, "_attn_implementation", None) or "eager")
    device = next(model.parameters()).device
    flex = (
        _compiles(device)
        and current == "eager"
        and bool(getattr(model, "_supports_flex_attn", False))
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
    normaliser, compare = _fused(_normaliser, device), _fused(_compare, device)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), _deterministic(device), bar as advance:
            for text_set in sets:
                if not users[text_set.name]:
                    continue
                for windows in _batches(text_set.windows, batch_size):
                    batch = _Batch(windows, device, width)
                    reference = batch.logits(base())
                    ref_lse = normaliser(reference)
                    ref_top = reference.argmax(-1)
                    nll = _nll(reference, ref_lse, batch.targets)
                    base_nll = _wide_sum(torch.where(batch.scored, nll, 0.0))
                    advance(batch.count)
                    for vid in users[text_set.name]:
                        logits = batch.logits(runs[vid][1]())
                        lse = normaliser(logits)
                        acc = sums[vid][text_set.name]
                        acc.totals[:3] += compare(
                            logits, lse, reference, ref_lse, ref_top, batch.targets, batch.scored
                        )
                        acc.totals[3] += base_nll
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
    """Windows right-padded into one batch on `device` (to `width` if given). Every position
    is computed; `scored` marks those that predict a real next token and `targets` holds
    that token (0 elsewhere), so that no step waits on the device to count them."""

    def __init__(
        self, windows: Sequence[Sequence[int]], device: torch.device, width: int | None = None
    ) -> None:
        width = width or max(len(w) for w in windows)
        ids = torch.zeros((len(windows), width), dtype=torch.long)
        attention = torch.zeros((len(windows), width), dtype=torch.long)
        for row, window in enumerate(windows):
            ids[row, : len(window)] = torch.tensor(window, dtype=torch.long)
            attention[row, : len(window)] = 1
        targets = torch.zeros_like(ids)
        targets[:, :-1] = ids[:, 1:]
        scored = torch.zeros_like(ids, dtype=torch.bool)
        scored[:, :-1] = attention[:, 1:].bool()
        self.count = int(scored.sum())
        self.ids, self.attention = ids.to(device), attention.to(device)
        self.targets, self.scored = targets.view(-1).to(device), scored.view(-1).to(device)

    def logits(self, model: torch.nn.Module) -> torch.Tensor:
        """The model's logits at every position of the batch: [rows * width, vocab]."""
        logits = model(input_ids=self.ids, attention_mask=self.attention, use_cache=False).logits
        return logits.reshape(-1, logits.shape[-1])


def _normaliser(logits: torch.Tensor) -> torch.Tensor:
    """Per position, the log of the softmax's denominator, in float32: [N, V] -> [N]."""
    return torch.logsumexp(logits.float(), dim=-1)


def _nll(logits: torch.Tensor, lse: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per position, minus the log-probability of the actual next token: [N]."""
    return lse - logits.gather(-1, targets[:, None]).squeeze(-1).float()


def _compare(
    logits: torch.Tensor,
    lse: torch.Tensor,
    reference: torch.Tensor,
    ref_lse: torch.Tensor,
    ref_top: torch.Tensor,
    targets: torch.Tensor,
    scored: torch.Tensor,
) -> torch.Tensor:
    """Sums over the scored positions of a variant's KL(base || variant), agreement with the
    base's most likely token, and negative log-likelihood: a [3] tensor.

    log p_base - log p_variant = (reference - logits) - (ref_lse - lse), which is exactly 0
    where the logits are the base's; two [N, V] float32 buffers, modified in place.
    """
    gap = reference.to(torch.float32, copy=True).sub_(logits).sub_((ref_lse - lse)[:, None])
    base_p = reference.to(torch.float32, copy=True).sub_(ref_lse[:, None]).exp_()
    kl = base_p.mul_(gap).sum(-1)
    agree = (logits.argmax(-1) == ref_top).float()
    per = (kl, agree, _nll(logits, lse, targets))
    return torch.stack([_wide_sum(torch.where(scored, v, 0.0)) for v in per])


def _wide_sum(values: torch.Tensor) -> torch.Tensor:
    """The sum of `values` as a float64 scalar, on their device (MPS: summed in float32
    there, then carried to the CPU)."""
    if values.device.type == "mps":
        return values.sum(dtype=torch.float32).cpu().double()
    return values.double().sum()


def _compiles(device: torch.device) -> bool:
    """Whether torch.compile builds kernels for `device` here: CUDA with triton present."""
    import importlib.util

    return device.type == "cuda" and importlib.util.find_spec("triton") is not None


def _fused(fn: Any, device: torch.device) -> Any:
    """`fn` compiled into fused kernels where `_compiles(device)`; where compiling fails, or
    on other devices, `fn` as it is (the same figures, to float32 rounding)."""
    if not _compiles(device):
        return fn
    compiled = torch.compile(fn)
    failed = False

    def run(*args: torch.Tensor) -> torch.Tensor:
        nonlocal failed
        if not failed:
            try:
                return compiled(*args)
            except Exception:  # no kernel for this GPU: the eager operations compute the same
                failed = True
        return fn(*args)

    return run


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
