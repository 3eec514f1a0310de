"""GPT-OSS (openai/gpt-oss-20b, -120b): routers and experts in their three storage layouts.

- `bf16`: transformers' fused parameters (`mlp.experts.gate_up_proj [E, H, 2I]`, gate and
  up interleaved on the last axis; `down_proj [E, I, H]`; biases `[E, 2I]`, `[E, H]`);
- `mxfp4`: the released checkpoint: each fused weight packed along its input axis as
  `_blocks [E, out, in/32, 16]` and `_scales [E, out, in/32]` (uint8), biases as in `bf16`;
- `per_expert`: one module per expert, `experts.{e}.gate_up_proj.weight [2I, H]` (the
  fused weight transposed), `.bias [2I]`, `down_proj.weight [H, I]`, `.bias [H]`.
"""

from __future__ import annotations

from bot.descriptors.base import ExpertLayout, ModelDescriptor, TensorSpec

_MLP = "model.layers.{layer_idx}.mlp"
_FUSED = f"{_MLP}.experts"
_ONE = f"{_MLP}.experts.{{expert_idx}}"
E, H, I2, IN = "num_local_experts", "hidden_size", "2*intermediate_size", "intermediate_size"

BF16 = ExpertLayout(
    name="bf16",
    tensors=(
        TensorSpec(f"{_FUSED}.gate_up_proj", (E, H, I2)),
        TensorSpec(f"{_FUSED}.gate_up_proj_bias", (E, I2)),
        TensorSpec(f"{_FUSED}.down_proj", (E, IN, H)),
        TensorSpec(f"{_FUSED}.down_proj_bias", (E, H)),
    ),
)

MXFP4 = ExpertLayout(
    name="mxfp4",
    quant_method="mxfp4",
    tensors=(
        TensorSpec(
            f"{_FUSED}.gate_up_proj_blocks",
            (E, I2, f"{H}/32", "16"),
            dtype="U8",
            stands_for=f"{_FUSED}.gate_up_proj",
            packing="blocks",
        ),
        TensorSpec(
            f"{_FUSED}.gate_up_proj_scales",
            (E, I2, f"{H}/32"),
            dtype="U8",
            stands_for=f"{_FUSED}.gate_up_proj",
            packing="scales",
        ),
        TensorSpec(f"{_FUSED}.gate_up_proj_bias", (E, I2)),
        TensorSpec(
            f"{_FUSED}.down_proj_blocks",
            (E, H, f"{IN}/32", "16"),
            dtype="U8",
            stands_for=f"{_FUSED}.down_proj",
            packing="blocks",
        ),
        TensorSpec(
            f"{_FUSED}.down_proj_scales",
            (E, H, f"{IN}/32"),
            dtype="U8",
            stands_for=f"{_FUSED}.down_proj",
            packing="scales",
        ),
        TensorSpec(f"{_FUSED}.down_proj_bias", (E, H)),
    ),
)

PER_EXPERT = ExpertLayout(
    name="per_expert",
    per_expert=True,
    tensors=(
        TensorSpec(f"{_ONE}.gate_up_proj.weight", (I2, H), stands_for=f"{_FUSED}.gate_up_proj"),
        TensorSpec(f"{_ONE}.gate_up_proj.bias", (I2,), stands_for=f"{_FUSED}.gate_up_proj_bias"),
        TensorSpec(f"{_ONE}.down_proj.weight", (H, IN), stands_for=f"{_FUSED}.down_proj"),
        TensorSpec(f"{_ONE}.down_proj.bias", (H,), stands_for=f"{_FUSED}.down_proj_bias"),
    ),
)

GPT_OSS = ModelDescriptor(
    model_type="gpt_oss",
    router_module=f"{_MLP}.router",
    router_tensors=(
        TensorSpec(f"{_MLP}.router.weight", (E, H)),
        TensorSpec(f"{_MLP}.router.bias", (E,)),
    ),
    layouts=(BF16, MXFP4, PER_EXPERT),
    expert_axis=0,
    num_layers_key="num_hidden_layers",
    num_experts_key="num_local_experts",
    top_k_keys=("num_experts_per_tok", "experts_per_token"),
    dequantized_layout="bf16",
)
