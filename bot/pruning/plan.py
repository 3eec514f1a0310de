"""The pruner's plan as a value: which source bytes make each output tensor, in which shard.

Pure: from the checkpoint's headers (`Checkpoint`), the family's descriptor and layout, the
config and the kept experts, `plan_prune` returns every output tensor as a job (a
`CopyJob` of byte ranges, or a `DecodeJob` of MXFP4 experts to dequantize) in the source's
file order, split into output shards. Nothing is read; `bot.pruning.execute` runs a plan.

Example:
    >>> plan = plan_prune(descriptor, layout, config, ckpt, kept,
    ...                   dequantize=False, max_shard_bytes=5 * 1024**3)  # doctest: +SKIP
    >>> plan.shards[0].jobs[0].ranges                                    # doctest: +SKIP
    (Range(file=PosixPath('.../model-00000-of-00002.safetensors'), start=1208, length=96),)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.checkpoint.format import Checkpoint, OutTensor, TensorInfo, plan_shards, shard_file_name
from bot.descriptors import ExpertLayout, ModelDescriptor, TensorSpec


@dataclass(frozen=True)
class Range:
    """`length` bytes of source file `file` from absolute offset `start`."""

    file: Path
    start: int
    length: int


@dataclass(frozen=True)
class CopyJob:
    """One output tensor: the bytes of `ranges`, back to back."""

    out: OutTensor
    ranges: tuple[Range, ...]

    @property
    def reads(self) -> tuple[Range, ...]:
        """Every source range the job reads."""
        return self.ranges


@dataclass(frozen=True)
class DecodeJob:
    """One fused BF16 output tensor, dequantized from MXFP4 one kept expert at a time.

    `experts` holds each kept expert's (blocks, scales) ranges; `block_shape` is the shape
    of one expert's blocks (rows, 32-value groups, 16 bytes per group).
    """

    out: OutTensor
    experts: tuple[tuple[Range, Range], ...]
    block_shape: tuple[int, ...]

    @property
    def reads(self) -> tuple[Range, ...]:
        return tuple(r for pair in self.experts for r in pair)


Job = CopyJob | DecodeJob


@dataclass(frozen=True)
class OutputShard:
    """One output safetensors file: its name and its jobs, in the order they are written."""

    name: str
    jobs: tuple[Job, ...]

    @property
    def tensors(self) -> list[OutTensor]:
        return [job.out for job in self.jobs]


@dataclass(frozen=True)
class PrunePlan:
    """Every job of a prune, in the source's file order, and the output shards they fill."""

    jobs: tuple[Job, ...]
    shards: tuple[OutputShard, ...]

    @property
    def decodes(self) -> bool:
        """Whether any job dequantizes (BF16 output of an MXFP4 source)."""
        return any(isinstance(job, DecodeJob) for job in self.jobs)


def plan_prune(
    descriptor: ModelDescriptor,
    layout: ExpertLayout,
    config: dict[str, Any],
    ckpt: Checkpoint,
    kept: dict[int, tuple[int, ...]],
    *,
    dequantize: bool,
    max_shard_bytes: int,
) -> PrunePlan:
    """The jobs of `plan_jobs`, split into shards of at most `max_shard_bytes` (as
    `plan_shards` splits tensors) and named as transformers names them."""
    jobs = plan_jobs(descriptor, layout, config, ckpt, kept, dequantize=dequantize)
    by_name = {job.out.name: job for job in jobs}
    split = plan_shards([job.out for job in jobs], max_shard_bytes)
    return PrunePlan(
        tuple(jobs),
        tuple(
            OutputShard(shard_file_name(i, len(split)), tuple(by_name[t.name] for t in tensors))
            for i, tensors in enumerate(split)
        ),
    )


def plan_jobs(
    descriptor: ModelDescriptor,
    layout: ExpertLayout,
    config: dict[str, Any],
    ckpt: Checkpoint,
    kept: dict[int, tuple[int, ...]],
    *,
    dequantize: bool,
) -> list[Job]:
    """Output tensors in the source's file order, each with the byte ranges it is made of.

    Routers and fused expert tensors keep their kept rows along dim 0 (consecutive experts
    merged into one range); per-expert tensors are renumbered; tensors of dropped prefixes
    go; every other tensor is copied whole. With `dequantize`, MXFP4 blocks become
    `DecodeJob`s and their scales are consumed by them.
    """
    count = len(next(iter(kept.values())))
    handled: set[str] = set()
    jobs: list[Job] = []
    for layer, experts in kept.items():
        for spec in (*descriptor.router_tensors, *([] if layout.per_expert else layout.tensors)):
            info = ckpt.tensors[spec.tensor_name(layer)]
            handled.add(info.name)
            if dequantize and spec.packing == "scales":
                continue
            if dequantize and spec.packing == "blocks":
                jobs.append(_decode_job(descriptor, layout, spec, config, ckpt, layer, experts))
                continue
            out = OutTensor(info.name, info.dtype, (count, *info.shape[1:]))
            jobs.append(CopyJob(out, _expert_ranges(info, experts)))
        if layout.per_expert:
            for new, old in enumerate(experts):
                for spec in layout.tensors:
                    info = ckpt.tensors[spec.tensor_name(layer, old)]
                    out = OutTensor(spec.tensor_name(layer, new), info.dtype, info.shape)
                    jobs.append(CopyJob(out, (_whole(info),)))
            handled.update(
                spec.tensor_name(layer, e)
                for spec in layout.tensors
                for e in range(descriptor.num_experts(config))
            )
    dropped = descriptor.dropped_prefixes(config)
    for info in ckpt.tensors.values():
        if info.name not in handled and not info.name.startswith(dropped):
            jobs.append(CopyJob(OutTensor(info.name, info.dtype, info.shape), (_whole(info),)))
    shard_order = {path: i for i, path in enumerate(ckpt.shards)}
    return sorted(jobs, key=lambda j: _first(j, shard_order))


def _first(job: Job, shard_order: dict[Path, int]) -> tuple[int, int, str]:
    first = min(job.reads, key=lambda r: (shard_order[r.file], r.start))
    return shard_order[first.file], first.start, job.out.name


def _whole(info: TensorInfo) -> Range:
    return Range(info.file, info.start, info.nbytes)


def _expert_ranges(info: TensorInfo, experts: tuple[int, ...]) -> tuple[Range, ...]:
    """Byte ranges of the kept rows along dim 0, consecutive experts merged."""
    ranges: list[Range] = []
    for expert in experts:
        row = _row(info, expert)
        last = ranges[-1] if ranges else None
        if last is not None and last.start + last.length == row.start:
            ranges[-1] = Range(info.file, last.start, last.length + row.length)
        else:
            ranges.append(row)
    return tuple(ranges)


def _row(info: TensorInfo, expert: int) -> Range:
    """One expert's bytes: row `expert` along dim 0."""
    stride = info.nbytes // info.shape[0]
    return Range(info.file, info.start + expert * stride, stride)


def _decode_job(
    descriptor: ModelDescriptor,
    layout: ExpertLayout,
    blocks_spec: TensorSpec,
    config: dict[str, Any],
    ckpt: Checkpoint,
    layer: int,
    experts: tuple[int, ...],
) -> DecodeJob:
    scales_spec = next(
        s
        for s in layout.tensors
        if s.packing == "scales" and s.stands_for == blocks_spec.stands_for
    )
    target = next(
        s
        for s in descriptor.layout(descriptor.dequantized_layout).tensors
        if s.name == blocks_spec.stands_for
    )
    blocks = ckpt.tensors[blocks_spec.tensor_name(layer)]
    scales = ckpt.tensors[scales_spec.tensor_name(layer)]
    shape = descriptor.shape(target, config, len(experts))
    return DecodeJob(
        OutTensor(blocks_spec.model_name(layer), "BF16", shape),
        experts=tuple((_row(blocks, e), _row(scales, e)) for e in experts),
        block_shape=blocks.shape[1:],
    )
