"""Statistics of gpt-oss-20b's real layout, from config and safetensors headers alone.

The shards here are header-only sparse files: each has a header with the published
checkpoint's tensor names, dtypes and shapes (see shared/reference/gpt-oss-20b/README.md)
and the size it implies, but no data, so the test shows that `model_stats` never needs
tensor bytes.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import pytest

from bot.errors import InputError
from bot.model_stats import model_stats, parameter_counts

CONFIG = Path(__file__).resolve().parents[1] / "manifests" / "gpt-oss-20b.config.json"

H, INTER, VOCAB, Q, KV = 2880, 2880, 201088, 4096, 512
_BYTES = {"BF16": 2, "U8": 1}


def _table(experts: int) -> dict[str, tuple[str, list[int]]]:
    """dtype and shape of each tensor of the real checkpoint (reference README's table)."""
    return {
        "model.embed_tokens.weight": ("BF16", [VOCAB, H]),
        "lm_head.weight": ("BF16", [VOCAB, H]),
        "model.norm.weight": ("BF16", [H]),
        "input_layernorm.weight": ("BF16", [H]),
        "post_attention_layernorm.weight": ("BF16", [H]),
        "self_attn.q_proj.weight": ("BF16", [Q, H]),
        "self_attn.q_proj.bias": ("BF16", [Q]),
        "self_attn.k_proj.weight": ("BF16", [KV, H]),
        "self_attn.k_proj.bias": ("BF16", [KV]),
        "self_attn.v_proj.weight": ("BF16", [KV, H]),
        "self_attn.v_proj.bias": ("BF16", [KV]),
        "self_attn.o_proj.weight": ("BF16", [H, Q]),
        "self_attn.o_proj.bias": ("BF16", [H]),
        "self_attn.sinks": ("BF16", [64]),
        "mlp.router.weight": ("BF16", [experts, H]),
        "mlp.router.bias": ("BF16", [experts]),
        "mlp.experts.gate_up_proj_blocks": ("U8", [experts, 2 * INTER, 90, 16]),
        "mlp.experts.gate_up_proj_scales": ("U8", [experts, 2 * INTER, 90]),
        "mlp.experts.gate_up_proj_bias": ("BF16", [experts, 2 * INTER]),
        "mlp.experts.down_proj_blocks": ("U8", [experts, H, 90, 16]),
        "mlp.experts.down_proj_scales": ("U8", [experts, H, 90]),
        "mlp.experts.down_proj_bias": ("BF16", [experts, H]),
    }


_LEAVES = list(_table(1))


def _shape(name: str, experts: int) -> tuple[str, list[int]]:
    return _table(experts)[re.sub(r"^model\.layers\.\d+\.", "", name)]


def _header_only_checkpoint(folder: Path, experts: int) -> int:
    """Write config, index and sparse header-only shards; return the bytes of tensor data."""
    folder.mkdir()
    config = json.loads(CONFIG.read_text())
    config["num_local_experts"] = experts
    (folder / "config.json").write_text(json.dumps(config))
    weight_map = _weight_map()
    shards: dict[str, dict[str, object]] = {}
    data_bytes = 0
    for name, shard in sorted(weight_map.items()):
        dtype, shape = _shape(name, experts)
        header = shards.setdefault(shard, {"__end__": 0})
        start = int(header["__end__"])  # type: ignore[call-overload]
        size = _BYTES[dtype]
        for dim in shape:
            size *= dim
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [start, start + size]}
        header["__end__"] = start + size
        data_bytes += size
    for shard, header in shards.items():
        end = int(header.pop("__end__"))  # type: ignore[call-overload]
        raw = json.dumps(header).encode()
        with (folder / shard).open("wb") as handle:
            handle.write(struct.pack("<Q", len(raw)) + raw)
            handle.truncate(8 + len(raw) + end)
    index = {"metadata": {"total_size": data_bytes}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return data_bytes


def _weight_map() -> dict[str, str]:
    """The 459 tensor names of the real checkpoint, spread over three shards by layer."""
    names = {"model.embed_tokens.weight": 0, "model.norm.weight": 2, "lm_head.weight": 2}
    per_layer = [leaf for leaf in _LEAVES if not leaf.startswith(("model.", "lm_head"))]
    for layer in range(24):
        for leaf in per_layer:
            names[f"model.layers.{layer}.{leaf}"] = layer // 9
    return {name: f"model-{i:05d}-of-00002.safetensors" for name, i in names.items()}


BASE = json.loads(CONFIG.read_text())


def test_full_model_matches_the_published_facts(tmp_path: Path) -> None:
    data_bytes = _header_only_checkpoint(tmp_path / "full", 32)
    assert data_bytes == 13_761_264_768  # the real index's total_size: the shapes are right

    stats = model_stats(tmp_path / "full", base_config=BASE)

    assert stats.total_params == 20_914_757_184
    assert stats.total_params == parameter_counts(BASE).total
    assert round(stats.active_params / 1e9, 1) == 3.6  # OpenAI's figure: embedding rows aside
    assert stats.params_per_expert * 24 == parameter_counts(BASE).per_expert
    assert stats.expert_params_kept_share == 1.0
    assert 13_761_264_768 < stats.size_bytes < 13_761_264_768 + 3 * 100_000
    assert (stats.layers, stats.top_k, stats.context_length) == (24, 4, 131072)
    assert (stats.query_heads, stats.kv_heads, stats.hidden_size) == (64, 8, 2880)
    assert stats.attention_pattern == "alternating sliding-window (128 tokens) and full attention"
    assert stats.positional_encoding == "RoPE (YaRN, factor 32)"
    assert stats.norm == "RMSNorm"
    assert stats.storage_format == "MXFP4 experts + BF16"


def test_sixteen_experts(tmp_path: Path) -> None:
    _header_only_checkpoint(tmp_path / "half", 16)

    stats = model_stats(tmp_path / "half", base_config=BASE)

    assert stats.total_params == parameter_counts(BASE).total_for(16)
    assert f"{stats.total_params / 1e9:.1f}" == "11.4"
    assert (stats.experts_before, stats.experts_after) == (32, 16)
    assert stats.expert_params_kept_share == 0.5
    assert round(stats.active_params / 1e9, 1) == 3.6  # top-4 routing: unchanged by pruning


def test_truncated_shard_is_refused(tmp_path: Path) -> None:
    _header_only_checkpoint(tmp_path / "cut", 4)
    shard = sorted((tmp_path / "cut").glob("*.safetensors"))[0]
    with shard.open("r+b") as handle:
        handle.truncate(shard.stat().st_size - 1)

    with pytest.raises(InputError, match="truncated"):
        model_stats(tmp_path / "cut", base_config=BASE)


def test_config_disagreeing_with_tensors_is_refused(tmp_path: Path) -> None:
    _header_only_checkpoint(tmp_path / "odd", 4)
    config = json.loads((tmp_path / "odd" / "config.json").read_text())
    config["num_local_experts"] = 5
    (tmp_path / "odd" / "config.json").write_text(json.dumps(config))

    with pytest.raises(InputError, match="do not split"):
        model_stats(tmp_path / "odd", base_config=BASE)


def test_bf16_layout_and_plain_rope() -> None:
    from bot.checkpoint import TensorInfo
    from bot.model_stats import attention_pattern, positional_encoding, storage_format

    plain = TensorInfo("a.weight", "BF16", (2, 2), Path("a.safetensors"), 8, 16)
    assert storage_format([plain]) == "BF16"
    assert positional_encoding({"rope_theta": 10000}) == "RoPE"
    v5_style = {"rope_parameters": {"rope_type": "yarn", "factor": 32.0, "rope_theta": 1.5e5}}
    assert positional_encoding(v5_style) == "RoPE (YaRN, factor 32)"
    assert attention_pattern({"layer_types": ["full_attention"] * 3}) == "full attention"


@pytest.mark.parametrize("layout", ["bf16", "mxfp4"])
def test_tiny_checkpoints_match_the_meta_device_count(tmp_path: Path, layout: str) -> None:
    from bot.fixtures import tiny_config, write_tiny_model

    folder = write_tiny_model(tmp_path / layout, layout=layout)

    stats = model_stats(folder, base_config=tiny_config())

    assert stats.total_params == parameter_counts(tiny_config()).total
    assert stats.storage_format == ("BF16" if layout == "bf16" else "MXFP4 experts + BF16")
    assert stats.size_bytes == sum(p.stat().st_size for p in folder.glob("*.safetensors"))
