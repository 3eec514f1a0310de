"""GPT-OSS (openai/gpt-oss-20b, -120b): routers and experts in their three storage layouts.

- `bf16`: transformers' fused parameters (`mlp.experts.gate_up_proj [E, H, 2I]`, gate and
  up interleaved on the last axis; `down_proj [E, I, H]`; biases `[E, 2I]`, `[E, H]`);
- `mxfp4`: the released checkpoint: each fused weight packed along its input axis as
  `_blocks [E, out, in/32, 16]` and `_scales [E, out, in/32]` (uint8), biases as in `bf16`;
- `per_expert`: one module per expert, `experts.{e}.gate_up_proj.weight [2I, H]` (the
  fused weight transposed), `.bias [2I]`, `down_proj.weight [H, I]`, `.bias [H]`.

Attention, norms, embeddings and head are as in transformers' `GptOssForCausalLM`
(`q_proj [heads*head_dim, H]`, `sinks [heads]`, biases when `attention_bias`, no
`lm_head` when `tie_word_embeddings`).
"""

from __future__ import annotations

from bot.descriptors.base import ExpertLayout, ModelDescriptor, TensorSpec

_MLP = "model.layers.{layer_idx}.mlp"
_FUSED = f"{_MLP}.experts"
_ONE = f"{_MLP}.experts.{{expert_idx}}"
_ATTN = "model.layers.{layer_idx}.self_attn"
E, H, I2, IN = "num_local_experts", "hidden_size", "2*intermediate_size", "intermediate_size"
Q, KV, V = "num_attention_heads*head_dim", "num_key_value_heads*head_dim", "vocab_size"
_BIAS = "attention_bias"

ATTENTION_AND_NORMS = (
    TensorSpec(f"{_ATTN}.sinks", ("num_attention_heads",)),
    TensorSpec(f"{_ATTN}.q_proj.weight", (Q, H)),
    TensorSpec(f"{_ATTN}.q_proj.bias", (Q,), present_if=_BIAS),
    TensorSpec(f"{_ATTN}.k_proj.weight", (KV, H)),
    TensorSpec(f"{_ATTN}.k_proj.bias", (KV,), present_if=_BIAS),
    TensorSpec(f"{_ATTN}.v_proj.weight", (KV, H)),
    TensorSpec(f"{_ATTN}.v_proj.bias", (KV,), present_if=_BIAS),
    TensorSpec(f"{_ATTN}.o_proj.weight", (H, Q)),
    TensorSpec(f"{_ATTN}.o_proj.bias", (H,), present_if=_BIAS),
    TensorSpec("model.layers.{layer_idx}.input_layernorm.weight", (H,)),
    TensorSpec("model.layers.{layer_idx}.post_attention_layernorm.weight", (H,)),
)

EMBEDDINGS_AND_HEAD = (
    TensorSpec("model.embed_tokens.weight", (V, H)),
    TensorSpec("model.norm.weight", (H,)),
    TensorSpec("lm_head.weight", (V, H), present_if="!tie_word_embeddings"),
)

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
    layer_tensors=ATTENTION_AND_NORMS,
    model_tensors=EMBEDDINGS_AND_HEAD,
    # GptOssConfig's defaults for keys a config.json may leave out
    config_defaults=(("attention_bias", True), ("tie_word_embeddings", False), ("head_dim", 64)),
    expert_axis=0,
    num_layers_key="num_hidden_layers",
    num_experts_key="num_local_experts",
    top_k_keys=("num_experts_per_tok", "experts_per_token"),
    dequantized_layout="bf16",
)
