"""Model statistics computed from a config and safetensors headers, never typed in.

`parameter_counts` is arithmetic over the family's tensor table (no torch import; a test
keeps it equal to a meta-device count of transformers' model for every family); the
manifest uses it to name variants before any weights exist. `model_stats` describes a
finished checkpoint folder from its `config.json` and the JSON headers of its safetensors
files (the tensor data is never read). Counts are of the dequantized (BF16) model, which is what the
published names use: an MXFP4 `_blocks` byte holds two values, `_scales` are not counted.

Example:
    >>> stats = model_stats(Path("out/all-16"), base_config=base)  # doctest: +SKIP
    >>> stats.total_params, stats.storage_format                   # doctest: +SKIP
    (11355184320, 'MXFP4 experts + BF16')
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.checkpoint import DTYPE_BYTES, TensorInfo, open_checkpoint
from bot.descriptors import descriptor_for
from bot.errors import InputError
from bot.inputs import read_config
from bot.provenance import ModelStats
from bot.verify import float_dtype

_ROPE_NAMES = {
    "yarn": "YaRN",
    "linear": "linear",
    "dynamic": "dynamic NTK",
    "longrope": "LongRoPE",
    "llama3": "Llama 3",
}


@dataclass(frozen=True)
class ParameterCounts:
    """Parameter counts of a MoE model, split into shared and per-expert parts.

    `per_expert` covers one expert in every layer, router rows included; `shared` is
    everything else. A model keeping `k` experts per layer has `shared + k * per_expert`.
    """

    shared: int
    per_expert: int
    experts: int
    top_k: int

    @property
    def total(self) -> int:
        return self.total_for(self.experts)

    def total_for(self, experts: int) -> int:
        return self.shared + experts * self.per_expert


def parameter_counts(config: dict[str, Any]) -> ParameterCounts:
    """Exact parameter counts for a MoE `config.json` (as a dict), from its family's shapes.

    Raises `InputError` for an unknown model type or a config lacking a key a shape needs.
    Buffers (stored, not parameters) are not counted.
    """
    descriptor = descriptor_for(config)

    def numel(experts: int) -> int:
        return sum(
            math.prod(shape)
            for _, shape, spec in descriptor.tensor_table(config, experts=experts)
            if not spec.buffer
        )

    shared = numel(0)
    return ParameterCounts(
        shared=shared,
        per_expert=numel(1) - shared,
        experts=descriptor.num_experts(config),
        top_k=descriptor.top_k(config),
    )


def checkpoint_bytes(config: dict[str, Any], *, experts: int, layout: str | None = None) -> int:
    """Tensor bytes of a checkpoint of `config` keeping `experts` experts per layer.

    `layout` is a descriptor layout name (default: the one the config's quantization
    method implies, as in the published base); headers and small files are not counted.
    """
    descriptor = descriptor_for(config)
    chosen = descriptor.detect_layout(config, ()) if layout is None else descriptor.layout(layout)
    floating = DTYPE_BYTES[float_dtype(config)]
    return sum(
        math.prod(shape) * (floating if dtype is None else DTYPE_BYTES[dtype])
        for shape, dtype in descriptor.stored_shapes(config, chosen, experts).values()
    )


# ---------------------------------------------------------------- checkpoint folders


def dequantized_values(tensor: TensorInfo, packing: str = "plain") -> int:
    """Parameters a tensor holds once dequantized; `packing` is its family layout's word for
    it (MXFP4 `blocks`: two values per byte, `scales`: none)."""
    count = math.prod(tensor.shape)
    if packing == "scales":
        return 0
    if packing == "blocks" and tensor.dtype == "U8":
        return 2 * count
    return count


def model_stats(folder: Path, *, base_config: dict[str, Any]) -> ModelStats:
    """Statistics of the checkpoint in `folder`, pruned from a model with `base_config`.

    Raises `InputError` when the config and the tensors disagree, or a file is truncated.
    """
    config = _read_config(folder)
    descriptor = descriptor_for(config)
    experts_before = descriptor.num_experts(base_config)
    checkpoint = open_checkpoint(folder)
    tensors = list(checkpoint.tensors.values())
    size = 0
    for path in checkpoint.shards:
        actual, expected = path.stat().st_size, max(t.end for t in tensors if t.file == path)
        if actual != expected:
            raise InputError(f"{path}: {actual} bytes on disk, its header describes {expected}")
        size += actual

    layers = descriptor.num_layers(config)
    moe_layers = len(descriptor.moe_layer_indices(config))
    experts = descriptor.num_experts(config)
    top_k = descriptor.top_k(config)
    if not 0 < experts <= experts_before:
        raise InputError(f"{folder}: {experts} experts per layer, base model has {experts_before}")
    layout = descriptor.detect_layout(config, checkpoint.tensors.keys())
    table = {name: spec for name, _, spec in descriptor.tensor_table(config, layout=layout)}
    packing = {name: spec.packing for name, spec in table.items() if spec.packing != "plain"}

    def values(tensor: TensorInfo) -> int:
        return dequantized_values(tensor, packing.get(tensor.name, "plain"))

    counted = [t for t in tensors if not (t.name in table and table[t.name].buffer)]
    total = sum(values(t) for t in counted)
    expert_names = set(descriptor.expert_names(config))
    expert_values = sum(values(t) for t in counted if t.name in expert_names)
    per_expert, rest = divmod(expert_values, moe_layers * experts)
    if rest or not per_expert:
        raise InputError(
            f"{folder}: expert tensors do not split into {moe_layers} MoE layers x "
            f"{experts} experts"
        )
    embedding = 0
    if not config.get("tie_word_embeddings", False):
        embedding = sum(values(t) for t in tensors if t.name in table and table[t.name].embedding)
    active = total - embedding - (experts - top_k) * moe_layers * per_expert
    return ModelStats(
        total_params=total,
        active_params=active,
        params_per_expert=per_expert,
        expert_params_kept_share=experts / experts_before,
        size_bytes=size,
        layers=layers,
        experts_before=experts_before,
        experts_after=experts,
        top_k=top_k,
        storage_format=storage_format(tensors, packing, layout.quant_method),
        model_type=descriptor.model_type,
        **architecture(config),
    )


def architecture(config: dict[str, Any]) -> dict[str, Any]:
    """The `ModelStats` fields a config alone decides: context, heads, attention, norm."""
    return {
        "context_length": int(config["max_position_embeddings"]),
        "query_heads": int(config["num_attention_heads"]),
        "kv_heads": int(config.get("num_key_value_heads") or config["num_attention_heads"]),
        "hidden_size": int(config["hidden_size"]),
        "attention_pattern": attention_pattern(config),
        "positional_encoding": positional_encoding(config),
        "norm": "RMSNorm" if "rms_norm_eps" in config else "LayerNorm",
    }


def _read_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    config = read_config(path)
    try:
        missing = descriptor_for(config).missing_keys(config)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    missing += [
        key
        for key in ("max_position_embeddings", "num_attention_heads", "hidden_size")
        if key not in config
    ]
    if missing:
        raise InputError(f"{path}: lacks {', '.join(missing)}")
    return config


def attention_pattern(config: dict[str, Any]) -> str:
    """Attention layout in words, from `layer_types` and `sliding_window`."""
    window = config.get("sliding_window")
    kinds = list(config.get("layer_types") or [])
    if not kinds:
        kinds = ["sliding_attention" if window else "full_attention"]
    sliding = f"sliding-window ({window} tokens)"
    if set(kinds) == {"full_attention"}:
        return "full attention"
    if set(kinds) == {"sliding_attention"}:
        return f"{sliding} attention"
    alternating = all(a != b for a, b in itertools.pairwise(kinds))
    if alternating and set(kinds) == {"sliding_attention", "full_attention"}:
        return f"alternating {sliding} and full attention"
    n_sliding = kinds.count("sliding_attention")
    n_full = kinds.count("full_attention")
    return f"{n_sliding} {sliding} and {n_full} full-attention layers"


def positional_encoding(config: dict[str, Any]) -> str:
    """Position encoding in words, e.g. `RoPE (YaRN, factor 32)`."""
    rope = config.get("rope_scaling") or config.get("rope_parameters") or {}
    kind = rope.get("rope_type") or rope.get("type") or "default"
    if kind == "default":
        return "RoPE"
    name = _ROPE_NAMES.get(kind, kind)
    factor = rope.get("factor")
    if factor is None:
        return f"RoPE ({name})"
    return f"RoPE ({name}, factor {float(factor):g})"


def storage_format(
    tensors: list[TensorInfo], packing: dict[str, str] | None = None, method: str | None = None
) -> str:
    """How the weights are stored, e.g. `MXFP4 experts + BF16`.

    `packing` names the packed tensors (name -> `blocks`/`scales`) of the quantization
    `method` the layout has; without them every tensor is plain.
    """
    packed = packing or {}
    others = sorted({t.dtype for t in tensors if t.name not in packed})
    plain = " + ".join(others)
    return f"{method.upper()} experts + {plain}" if packed and method else plain
