"""The pruner's plan as a value: which byte ranges make each output tensor, in which order,
in which output shard. Built from headers written as values: no file is read (the paths
below do not exist)."""

from __future__ import annotations

import math
from pathlib import Path

from bot.checkpoint import DTYPE_BYTES, Checkpoint, OutTensor, TensorInfo
from bot.descriptors import descriptor_for
from bot.pruning.plan import CopyJob, DecodeJob, PrunePlan, Range, plan_prune

FOLDER = Path("/nonexistent/base")
A = FOLDER / "model-00000-of-00001.safetensors"
B = FOLDER / "model-00001-of-00001.safetensors"
HEADER = 100  # each shard's data starts at byte 100
CONFIG = {
    "model_type": "gpt_oss",
    "architectures": ["GptOssForCausalLM"],
    "num_hidden_layers": 1,
    "num_local_experts": 4,
    "num_experts_per_tok": 2,
    "hidden_size": 32,
    "intermediate_size": 32,
    "vocab_size": 8,
}
DESCRIPTOR = descriptor_for(CONFIG)
KEPT = {0: (0, 1, 3)}
L0 = "model.layers.0"
EXPERTS = f"{L0}.mlp.experts"


def _checkpoint(shards: dict[Path, list[tuple[str, str, tuple[int, ...]]]]) -> Checkpoint:
    """Tensors stored back to back after a `HEADER`-byte header, as a parsed header gives them."""
    tensors = {}
    for file, entries in shards.items():
        offset = HEADER
        for name, dtype, shape in entries:
            end = offset + math.prod(shape) * DTYPE_BYTES[dtype]
            tensors[name] = TensorInfo(name, dtype, shape, file, offset, end)
            offset = end
    return Checkpoint(FOLDER, FOLDER / "index.json", tuple(shards), tensors, 2 * HEADER)


FRONT = [
    ("model.embed_tokens.weight", "BF16", (8, 32)),  # 512 bytes at 100
    (f"{L0}.mlp.router.weight", "BF16", (4, 32)),  # 256 bytes at 612, 64 per expert
    (f"{L0}.mlp.router.bias", "BF16", (4,)),  # 8 bytes at 868, 2 per expert
]
BACK = [("model.norm.weight", "BF16", (32,)), ("lm_head.weight", "BF16", (8, 32))]


def _plan(ckpt: Checkpoint, layout: str, *, dequantize: bool = False, limit: int = 1 << 30):
    return plan_prune(
        DESCRIPTOR,
        DESCRIPTOR.layout(layout),
        CONFIG,
        ckpt,
        KEPT,
        dequantize=dequantize,
        max_shard_bytes=limit,
    )


def _ranges(plan: PrunePlan) -> dict[str, tuple[tuple[Path, int, int], ...]]:
    return {
        job.out.name: tuple((r.file, r.start, r.length) for r in job.reads) for job in plan.jobs
    }


BF16 = _checkpoint(
    {
        A: FRONT,
        B: [
            (f"{EXPERTS}.gate_up_proj", "BF16", (4, 32, 64)),  # 16384 at 100, 4096 per expert
            (f"{EXPERTS}.gate_up_proj_bias", "BF16", (4, 64)),  # 512 at 16484, 128 per expert
            (f"{EXPERTS}.down_proj", "BF16", (4, 32, 32)),  # 8192 at 16996, 2048 per expert
            (f"{EXPERTS}.down_proj_bias", "BF16", (4, 32)),  # 256 at 25188, 64 per expert
            *BACK,  # 64 at 25444, 512 at 25508
        ],
    }
)


def test_kept_rows_are_ranges_in_file_order_with_neighbours_merged() -> None:
    plan = _plan(BF16, "bf16")
    assert all(isinstance(job, CopyJob) for job in plan.jobs)
    # file order (shard, then offset), not name order: lm_head comes last
    assert _ranges(plan) == {
        "model.embed_tokens.weight": ((A, 100, 512),),
        f"{L0}.mlp.router.weight": ((A, 612, 128), (A, 804, 64)),  # experts 0-1 merged, 3
        f"{L0}.mlp.router.bias": ((A, 868, 4), (A, 874, 2)),
        f"{EXPERTS}.gate_up_proj": ((B, 100, 8192), (B, 12388, 4096)),
        f"{EXPERTS}.gate_up_proj_bias": ((B, 16484, 256), (B, 16868, 128)),
        f"{EXPERTS}.down_proj": ((B, 16996, 4096), (B, 23140, 2048)),
        f"{EXPERTS}.down_proj_bias": ((B, 25188, 128), (B, 25380, 64)),
        "model.norm.weight": ((B, 25444, 64),),
        "lm_head.weight": ((B, 25508, 512),),
    }
    assert list(_ranges(plan)) == [job.out.name for job in plan.jobs]
    outs = {job.out.name: job.out for job in plan.jobs}
    assert outs[f"{L0}.mlp.router.weight"] == OutTensor(f"{L0}.mlp.router.weight", "BF16", (3, 32))
    assert outs[f"{EXPERTS}.gate_up_proj"].shape == (3, 32, 64)
    assert outs["lm_head.weight"].shape == (8, 32)
    # every output byte comes from exactly one planned range
    assert all(job.out.nbytes == sum(r.length for r in job.reads) for job in plan.jobs)


def test_jobs_fill_shards_in_order_up_to_the_limit() -> None:
    one = _plan(BF16, "bf16")
    assert [shard.name for shard in one.shards] == ["model-00001-of-00001.safetensors"]
    # 512 + 192 + 6 + 12288 = 12998 bytes fit under 13000; the next tensor does not
    two = _plan(BF16, "bf16", limit=13_000)
    assert [(shard.name, [t.name for t in shard.tensors]) for shard in two.shards] == [
        (
            "model-00001-of-00002.safetensors",
            [
                "model.embed_tokens.weight",
                f"{L0}.mlp.router.weight",
                f"{L0}.mlp.router.bias",
                f"{EXPERTS}.gate_up_proj",
            ],
        ),
        (
            "model-00002-of-00002.safetensors",
            [
                f"{EXPERTS}.gate_up_proj_bias",
                f"{EXPERTS}.down_proj",
                f"{EXPERTS}.down_proj_bias",
                "model.norm.weight",
                "lm_head.weight",
            ],
        ),
    ]
    # the same jobs, only split differently, and written in file order (all aligned here)
    assert two.jobs == one.jobs
    assert [job for shard in two.shards for job in shard.jobs] == list(one.jobs)


MXFP4 = _checkpoint(
    {
        A: FRONT,
        B: [
            (f"{EXPERTS}.gate_up_proj_blocks", "U8", (4, 64, 1, 16)),  # 4096 at 100, 1024 each
            (f"{EXPERTS}.gate_up_proj_scales", "U8", (4, 64, 1)),  # 256 at 4196, 64 each
            (f"{EXPERTS}.gate_up_proj_bias", "BF16", (4, 64)),  # 512 at 4452
            (f"{EXPERTS}.down_proj_blocks", "U8", (4, 32, 1, 16)),  # 2048 at 4964, 512 each
            (f"{EXPERTS}.down_proj_scales", "U8", (4, 32, 1)),  # 128 at 7012, 32 each
            (f"{EXPERTS}.down_proj_bias", "BF16", (4, 32)),  # 256 at 7140
            *BACK,
        ],
    }
)


def test_mxfp4_stays_packed_unless_dequantized() -> None:
    packed = _ranges(_plan(MXFP4, "mxfp4"))
    assert packed[f"{EXPERTS}.gate_up_proj_blocks"] == ((B, 100, 2048), (B, 3172, 1024))
    assert packed[f"{EXPERTS}.gate_up_proj_scales"] == ((B, 4196, 128), (B, 4388, 64))


def test_dequantizing_decodes_each_kept_expert_from_its_blocks_and_scales() -> None:
    plan = _plan(MXFP4, "mxfp4", dequantize=True)
    names = [job.out.name for job in plan.jobs]
    assert not [name for name in names if name.endswith(("_blocks", "_scales"))]
    decode = {job.out.name: job for job in plan.jobs if isinstance(job, DecodeJob)}
    assert list(decode) == [f"{EXPERTS}.gate_up_proj", f"{EXPERTS}.down_proj"]
    gate_up = decode[f"{EXPERTS}.gate_up_proj"]
    assert gate_up.out == OutTensor(f"{EXPERTS}.gate_up_proj", "BF16", (3, 32, 64))
    assert gate_up.block_shape == (64, 1, 16)
    # one (blocks, scales) pair per kept expert, in kept order, never merged
    assert gate_up.experts == (
        (Range(B, 100, 1024), Range(B, 4196, 64)),
        (Range(B, 1124, 1024), Range(B, 4260, 64)),
        (Range(B, 3172, 1024), Range(B, 4388, 64)),
    )
    assert decode[f"{EXPERTS}.down_proj"].out.shape == (3, 32, 32)
    assert plan.decodes and not _plan(MXFP4, "mxfp4").decodes
    # the biases are copied as in the packed plan; order stays the source's
    assert names.index(f"{EXPERTS}.gate_up_proj") < names.index(f"{EXPERTS}.gate_up_proj_bias")
    bias = next(job for job in plan.jobs if job.out.name == f"{EXPERTS}.gate_up_proj_bias")
    assert isinstance(bias, CopyJob)
    assert bias.ranges == (Range(B, 4452, 256), Range(B, 4836, 128))


def test_per_expert_tensors_are_renumbered_whole() -> None:
    entries = []
    for e in range(4):
        entries += [
            (f"{EXPERTS}.{e}.gate_up_proj.weight", "BF16", (64, 32)),  # 4096 bytes
            (f"{EXPERTS}.{e}.gate_up_proj.bias", "BF16", (64,)),  # 128
            (f"{EXPERTS}.{e}.down_proj.weight", "BF16", (32, 32)),  # 2048
            (f"{EXPERTS}.{e}.down_proj.bias", "BF16", (32,)),  # 64
        ]
    ckpt = _checkpoint({A: FRONT, B: [*entries, *BACK]})
    ranges = _ranges(_plan(ckpt, "per_expert"))
    per = 4096 + 128 + 2048 + 64  # one expert's four tensors
    experts = {name: r for name, r in ranges.items() if name.startswith(f"{EXPERTS}.")}
    assert experts == {
        f"{EXPERTS}.0.gate_up_proj.weight": ((B, 100, 4096),),  # old expert 0
        f"{EXPERTS}.0.gate_up_proj.bias": ((B, 4196, 128),),
        f"{EXPERTS}.0.down_proj.weight": ((B, 4324, 2048),),
        f"{EXPERTS}.0.down_proj.bias": ((B, 6372, 64),),
        f"{EXPERTS}.1.gate_up_proj.weight": ((B, 100 + per, 4096),),  # old expert 1
        f"{EXPERTS}.1.gate_up_proj.bias": ((B, 4196 + per, 128),),
        f"{EXPERTS}.1.down_proj.weight": ((B, 4324 + per, 2048),),
        f"{EXPERTS}.1.down_proj.bias": ((B, 6372 + per, 64),),
        f"{EXPERTS}.2.gate_up_proj.weight": ((B, 100 + 3 * per, 4096),),  # old expert 3
        f"{EXPERTS}.2.gate_up_proj.bias": ((B, 4196 + 3 * per, 128),),
        f"{EXPERTS}.2.down_proj.weight": ((B, 4324 + 3 * per, 2048),),
        f"{EXPERTS}.2.down_proj.bias": ((B, 6372 + 3 * per, 64),),
    }
    assert list(ranges)[-2:] == ["model.norm.weight", "lm_head.weight"]
