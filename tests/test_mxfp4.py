"""MXFP4 codec: exact round trips, the stored byte layout, and agreement with transformers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, Mxfp4Config
from transformers.integrations.mxfp4 import convert_moe_packed_tensors

from bot.errors import InputError
from bot.fixtures import TinySpec, write_tiny_model
from bot.mxfp4 import (
    FP4_E2M1_VALUES,
    TransposedDecoder,
    dequantize_mxfp4,
    pack_expert_weight,
    quantize_mxfp4,
    unpack_expert_weight,
)


def _representable(*shape: int, seed: int = 0) -> torch.Tensor:
    """Random values that MXFP4 holds exactly: FP4 values times one power of two per block."""
    gen = torch.Generator().manual_seed(seed)
    grid = torch.tensor(FP4_E2M1_VALUES)
    values = grid[torch.randint(0, 8, (*shape[:-1], shape[-1] // 32, 32), generator=gen)]
    values[..., 0] = 6.0  # every block reaches the top of the grid
    signs = torch.where(torch.rand(values.shape, generator=gen) < 0.5, -1.0, 1.0)
    exponents = torch.randint(-20, 20, (*values.shape[:-1], 1), generator=gen)
    return torch.ldexp(values * signs, exponents.float()).reshape(shape)


def test_exactly_representable_values_round_trip() -> None:
    weight = _representable(3, 5, 128)
    blocks, scales = quantize_mxfp4(weight)
    assert blocks.shape == (3, 5, 4, 16) and blocks.dtype == torch.uint8
    assert scales.shape == (3, 5, 4) and scales.dtype == torch.uint8
    assert torch.equal(dequantize_mxfp4(blocks, scales, torch.float32), weight)
    assert torch.equal(dequantize_mxfp4(blocks, scales), weight.to(torch.bfloat16))


def test_block_with_small_maximum_round_trips_exactly() -> None:
    weight = torch.zeros(1, 32)
    weight[0, :4] = torch.tensor([0.5, -3.0, 1.5, 0.0])  # exact at scale 1, largest value 3
    assert torch.equal(dequantize_mxfp4(*quantize_mxfp4(weight), torch.float32), weight)


def test_stored_bytes_low_nibble_first_and_biased_exponent() -> None:
    weight = torch.zeros(1, 32)
    weight[0, 0], weight[0, 1], weight[0, 2] = 1.0, -6.0, 0.5  # codes 2, 8 | 7, 1
    blocks, scales = quantize_mxfp4(weight)
    assert scales.tolist() == [[127]]  # 2**0
    assert blocks[0, 0, :2].tolist() == [0xF2, 0x01]
    assert not blocks[0, 0, 2:].any()
    assert torch.equal(quantize_mxfp4(weight * 8)[0], blocks)
    assert quantize_mxfp4(weight * 8)[1].tolist() == [[130]]


def test_rounds_to_nearest_with_ties_to_even() -> None:
    halfway = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 0.3, 2.6]
    weight = torch.zeros(1, 32)
    weight[0, : len(halfway)] = torch.tensor(halfway)
    weight[0, -1] = 6.0
    decoded = dequantize_mxfp4(*quantize_mxfp4(weight), torch.float32)[0, : len(halfway)]
    assert decoded.tolist() == [0.0, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0, 0.5, 3.0]


def test_requantizing_our_output_gives_the_same_bytes() -> None:
    weight = torch.randn(4, 256, generator=torch.Generator().manual_seed(1))
    blocks, scales = quantize_mxfp4(weight)
    again = quantize_mxfp4(dequantize_mxfp4(blocks, scales))
    assert torch.equal(again[0], blocks) and torch.equal(again[1], scales)


def test_quantization_error_is_within_half_a_step() -> None:
    weight = torch.randn(8, 512, generator=torch.Generator().manual_seed(2))
    decoded = dequantize_mxfp4(*quantize_mxfp4(weight), torch.float32)
    block_max = weight.abs().reshape(8, 16, 32).amax(-1, keepdim=True)
    error = (decoded - weight).abs().reshape(8, 16, 32)
    assert bool((error <= block_max * (1.0 / 3.5) + 1e-6).all())  # half of the 2-unit step


def test_bad_input_raises_input_error() -> None:
    with pytest.raises(InputError, match="multiple of 32"):
        quantize_mxfp4(torch.zeros(2, 40))
    with pytest.raises(InputError, match="non-finite"):
        quantize_mxfp4(torch.full((1, 32), float("nan")))
    with pytest.raises(InputError, match="do not match"):
        dequantize_mxfp4(
            torch.zeros(2, 3, 16, dtype=torch.uint8), torch.zeros(2, dtype=torch.uint8)
        )
    with pytest.raises(InputError, match="uint8"):
        dequantize_mxfp4(torch.zeros(1, 16), torch.zeros(1))


def test_pack_expert_weight_uses_the_checkpoint_layout() -> None:
    e, h, i = 3, 64, 96
    gate_up = _representable(e, 2 * i, h, seed=3).transpose(1, 2)  # fused [E, H, 2I]
    blocks, scales = pack_expert_weight(gate_up)
    assert blocks.shape == (e, 2 * i, h // 32, 16)
    assert scales.shape == (e, 2 * i, h // 32)
    assert torch.equal(unpack_expert_weight(blocks, scales, torch.float32), gate_up)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.float16])
def test_unpack_matches_transformers_on_arbitrary_bytes(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(4)
    blocks = torch.randint(0, 256, (4, 96, 2, 16), dtype=torch.uint8, generator=gen)
    scales = torch.randint(112, 140, (4, 96, 2), dtype=torch.uint8, generator=gen)
    theirs = convert_moe_packed_tensors(blocks, scales, dtype=dtype)
    ours = unpack_expert_weight(blocks, scales, dtype)
    assert ours.shape == theirs.shape == (4, 64, 96)
    assert ours.dtype == dtype and torch.equal(ours, theirs)


def test_slicing_packed_experts_equals_slicing_dequantized() -> None:
    gen = torch.Generator().manual_seed(5)
    blocks = torch.randint(0, 256, (8, 64, 2, 16), dtype=torch.uint8, generator=gen)
    scales = torch.randint(120, 130, (8, 64, 2), dtype=torch.uint8, generator=gen)
    keep = [6, 1, 3]
    assert torch.equal(
        unpack_expert_weight(blocks[keep], scales[keep]), unpack_expert_weight(blocks, scales)[keep]
    )


def test_transformers_loads_mxfp4_fixture_as_unpack_expert_weight(tmp_path: Path) -> None:
    spec = TinySpec(num_layers=1, num_experts=4, hidden_size=32, intermediate_size=64)
    folder = write_tiny_model(tmp_path / "tiny", layout="mxfp4", spec=spec)
    model, info = AutoModelForCausalLM.from_pretrained(
        folder, quantization_config=Mxfp4Config(dequantize=True), output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"]
    experts = model.model.layers[0].mlp.experts
    prefix = "model.layers.0.mlp.experts."
    for proj in ("gate_up_proj", "down_proj"):
        packed = {}
        for shard in folder.glob("*.safetensors"):
            with safe_open(shard, "pt") as f:
                for suffix in ("_blocks", "_scales"):
                    if prefix + proj + suffix in list(f.keys()):
                        packed[suffix] = f.get_tensor(prefix + proj + suffix)
        loaded = getattr(experts, proj).detach()
        expected = unpack_expert_weight(packed["_blocks"], packed["_scales"], loaded.dtype)
        assert torch.equal(loaded, expected), proj


def test_transposed_decoder_equals_dequantize_bit_for_bit() -> None:
    gen = torch.Generator().manual_seed(6)
    blocks = torch.randint(0, 256, (300, 7, 16), dtype=torch.uint8, generator=gen)
    scales = torch.randint(0, 256, (300, 7), dtype=torch.uint8, generator=gen)
    scales[:, :4] = torch.tensor([0, 1, 254, 255], dtype=torch.uint8)  # subnormal, inf, NaN
    expected = dequantize_mxfp4(blocks, scales, torch.bfloat16).t().contiguous()
    decoder = TransposedDecoder()
    for _ in range(2):  # the second call reuses the scratch buffers
        ours = decoder.decode(blocks, scales)
        assert ours.shape == (7 * 32, 300) and ours.dtype == torch.bfloat16
        assert torch.equal(ours.view(torch.int16), expected.view(torch.int16))
    out = torch.empty(7 * 32 * 300, dtype=torch.bfloat16)
    decoder.decode(blocks[:, 2:5], scales[:, 2:5], out[: 3 * 32 * 300])
    assert torch.equal(
        out[: 3 * 32 * 300].view(torch.int16).view(96, 300),
        expected[64:160].view(torch.int16),
    )
    assert bool(expected.isnan().any()) and bool(expected.isinf().any())
    with pytest.raises(InputError, match="must hold"):
        decoder.decode(blocks, scales, torch.empty(5, dtype=torch.bfloat16))
