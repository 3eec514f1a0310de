"""MXFP4 as stored in gpt-oss checkpoints.

Each block of 32 values along the last axis shares one power-of-two scale, stored as a uint8
exponent biased by 127. Each value is a 4-bit FP4 E2M1 code (sign bit, then an index into
0, 0.5, 1, 1.5, 2, 3, 4, 6); two codes share a byte, the even element in the low nibble.

gpt-oss keeps its expert weights packed with the input features last: ``gate_up_proj_blocks``
is ``[E, 2I, H/32, 16]`` while transformers computes with ``gate_up_proj`` ``[E, H, 2I]``.
`pack_expert_weight` and `unpack_expert_weight` convert between the two, exactly as
transformers dequantizes (``Mxfp4Config(dequantize=True)``).

Example:
    >>> w = torch.tensor([[0.5, -3.0] * 16])
    >>> blocks, scales = quantize_mxfp4(w)
    >>> blocks.shape, scales.shape
    (torch.Size([1, 1, 16]), torch.Size([1, 1]))
    >>> torch.equal(dequantize_mxfp4(blocks, scales, torch.float32), w)
    True
"""

from __future__ import annotations

import functools

import torch

from bot.errors import InputError

BLOCK_SIZE = 32
"""Values that share one scale."""

SCALE_BIAS = 127
"""Bias of the uint8 block exponent: byte 127 means a scale of 1."""

FP4_E2M1_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
"""Magnitudes of the codes 0..7; codes 8..15 are the same values negated."""

_FP4_MAX = 6.0
_ROWS_PER_CHUNK = 1 << 20  # blocks decoded at a time, bounding the float32 working set

# Midpoints between neighbouring magnitudes, and whether a tie there rounds up: ties go to
# the even code (round half to even on the FP4 grid).
_MIDPOINTS = ((0.25, False), (0.75, True), (1.25, False), (1.75, True), (2.5, False),
              (3.5, True), (5.0, False))  # fmt: skip


def _code_values() -> torch.Tensor:
    """Float32 value of each of the 16 codes."""
    magnitudes = torch.tensor(FP4_E2M1_VALUES, dtype=torch.float32)
    return torch.cat([magnitudes, -magnitudes])


def quantize_mxfp4(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize the last axis: ``[..., n]`` -> blocks ``[..., n/32, 16]``, scales ``[..., n/32]``.

    Each block's power-of-two scale puts its largest magnitude in [3.5, 7), so that value
    rounds to 4 or 6 (above 6 it clips to 6); values round to the nearest FP4 value, ties to
    even. Exactly representable values round-trip exactly, and so does our own output:
    ``quantize_mxfp4(dequantize_mxfp4(b, s))`` gives back ``b, s``.
    """
    if not weight.is_floating_point():
        raise InputError(f"quantize_mxfp4: expected a floating-point tensor, got {weight.dtype}")
    if weight.ndim == 0 or weight.shape[-1] % BLOCK_SIZE:
        raise InputError(
            f"quantize_mxfp4: last axis must be a multiple of {BLOCK_SIZE}, got shape "
            f"{list(weight.shape)}"
        )
    values = weight.detach().to(torch.float32)
    if not torch.isfinite(values).all():
        raise InputError("quantize_mxfp4: tensor holds non-finite values")

    grouped = values.reshape(*values.shape[:-1], -1, BLOCK_SIZE)
    amax = grouped.abs().amax(dim=-1)
    # Scale 2**e puts amax in [3.5, 7): with amax = m * 2**k, m in [0.5, 1), e = k - 3 gives
    # 8m in [4, 8); one step up when 8m >= 7.
    mantissa, exponent = torch.frexp(amax)
    exponent = exponent - 3 + (mantissa >= 0.875).to(exponent.dtype)
    exponent = torch.where(amax > 0, exponent, torch.zeros_like(exponent))
    exponent = exponent.clamp(-SCALE_BIAS, 255 - SCALE_BIAS)

    scaled = torch.ldexp(grouped, -exponent.unsqueeze(-1).to(torch.float32))
    magnitude = scaled.abs().clamp(max=_FP4_MAX)
    codes = torch.zeros(magnitude.shape, dtype=torch.uint8)
    for midpoint, tie_up in _MIDPOINTS:
        above = magnitude >= midpoint if tie_up else magnitude > midpoint
        codes += above.to(torch.uint8)
    codes |= torch.signbit(scaled).to(torch.uint8) << 3

    codes = codes.reshape(*codes.shape[:-1], BLOCK_SIZE // 2, 2)
    blocks = codes[..., 0] | (codes[..., 1] << 4)
    scales = (exponent + SCALE_BIAS).to(torch.uint8)
    return blocks.contiguous(), scales.contiguous()


def dequantize_mxfp4(
    blocks: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype = torch.bfloat16
) -> torch.Tensor:
    """Decode MXFP4: blocks ``[..., g, 16]`` and scales ``[..., g]`` -> values ``[..., 32g]``.

    Computes as transformers does, so results match its dequantization bit for bit.
    """
    if blocks.dtype != torch.uint8 or scales.dtype != torch.uint8:
        raise InputError(
            f"dequantize_mxfp4: blocks and scales must be uint8, got {blocks.dtype} and "
            f"{scales.dtype}"
        )
    if blocks.ndim < 2 or blocks.shape[-1] != BLOCK_SIZE // 2 or blocks.shape[:-1] != scales.shape:
        raise InputError(
            f"dequantize_mxfp4: blocks {list(blocks.shape)} do not match scales "
            f"{list(scales.shape)} (expected blocks = scales + [{BLOCK_SIZE // 2}])"
        )
    table = _code_values()
    rows = blocks.reshape(-1, BLOCK_SIZE // 2)
    exponents = (scales.reshape(-1, 1).to(torch.int32) - SCALE_BIAS).to(torch.float32)
    out = torch.empty(rows.shape[0], BLOCK_SIZE, dtype=dtype)
    for start in range(0, rows.shape[0], _ROWS_PER_CHUNK):
        chunk = rows[start : start + _ROWS_PER_CHUNK]
        values = torch.empty(chunk.shape[0], BLOCK_SIZE, dtype=torch.float32)
        values[:, 0::2] = table[(chunk & 0x0F).long()]
        values[:, 1::2] = table[(chunk >> 4).long()]
        out[start : start + _ROWS_PER_CHUNK] = torch.ldexp(
            values, exponents[start : start + _ROWS_PER_CHUNK]
        )
    return out.reshape(*scales.shape[:-1], -1)


@functools.cache
def _pair_table() -> torch.Tensor:
    """``scale byte << 8 | packed byte`` -> the byte's two BF16 values (low nibble in the low
    half), as one int32, computed by `dequantize_mxfp4` itself: 256 KiB, cache-resident."""
    codes = torch.arange(256, dtype=torch.uint8)
    blocks = torch.zeros(256 * 256, 1, BLOCK_SIZE // 2, dtype=torch.uint8)
    blocks[:, 0, 0] = codes.repeat(256)
    scales = codes.repeat_interleave(256).view(-1, 1)
    pairs = dequantize_mxfp4(blocks, scales, torch.bfloat16)[:, :2].contiguous()
    return pairs.view(torch.int32).view(-1)


class TransposedDecoder:
    """``dequantize_mxfp4(blocks, scales).T`` in BF16, bit for bit, several times faster.

    For one expert's run of packed rows, ``blocks [rows, g, 16]`` and ``scales [rows, g]``,
    `decode` gives ``[32g, rows]``: rows of the fused weight as transformers holds it
    (`unpack_expert_weight`). Dequantization is elementwise, so one gather per packed byte
    from `_pair_table` gives the same bits as the arithmetic, extreme scales (NaN, inf,
    subnormals) included. The packed bytes are transposed first (4x less data than the
    output), so the gather writes whole output rows; scratch buffers are kept between calls
    so that no pass pays for fresh pages. Not thread-safe: one decoder per thread.
    """

    def __init__(self) -> None:
        self._scratch: dict[str, torch.Tensor] = {}

    def _buffer(self, name: str, count: int, dtype: torch.dtype) -> torch.Tensor:
        buffer = self._scratch.get(name)
        if buffer is None or buffer.numel() < count:
            buffer = self._scratch[name] = torch.empty(count, dtype=dtype)
        return buffer[:count]

    def decode(
        self, blocks: torch.Tensor, scales: torch.Tensor, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """BF16 ``[32g, rows]`` (into `out`, any tensor of that many BF16 values, if given)."""
        if blocks.dtype != torch.uint8 or scales.dtype != torch.uint8:
            raise InputError(
                f"TransposedDecoder: blocks and scales must be uint8, got {blocks.dtype} and "
                f"{scales.dtype}"
            )
        if (
            blocks.ndim != 3
            or blocks.shape[2] != BLOCK_SIZE // 2
            or blocks.shape[:2] != scales.shape
        ):
            raise InputError(
                f"TransposedDecoder: expected blocks [rows, g, 16] and scales [rows, g], got "
                f"{list(blocks.shape)} and {list(scales.shape)}"
            )
        rows, groups, width = blocks.shape
        lines = groups * width  # packed bytes per row = output rows / 2
        if out is None:
            out = torch.empty(2 * lines, rows, dtype=torch.bfloat16)
        elif out.dtype != torch.bfloat16 or out.numel() != 2 * lines * rows:
            raise InputError(
                f"TransposedDecoder: out must hold {2 * lines * rows} BF16 values, got "
                f"{out.numel()} {out.dtype}"
            )
        packed = self._buffer("packed", lines * rows, torch.uint8).view(groups, width, rows)
        packed.copy_(blocks.permute(1, 2, 0))
        shifted = self._buffer("shifted", groups * rows, torch.int32).view(groups, 1, rows)
        shifted.copy_(scales.t().unsqueeze(1))
        shifted.bitwise_left_shift_(8)
        index = self._buffer("index", lines * rows, torch.int32)
        torch.bitwise_or(shifted, packed, out=index.view(groups, width, rows))
        pairs = self._buffer("pairs", lines * rows, torch.int32)
        torch.index_select(_pair_table(), 0, index, out=pairs)
        # pairs [line, row, 2] -> out [line, 2, row]: each byte's low value, then its high one
        values = out.view(torch.int16).view(lines, 2, rows)
        values.copy_(pairs.view(torch.int16).view(lines, rows, 2).transpose(1, 2))
        return out.view(2 * lines, rows)


def pack_expert_weight(fused: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused expert weight, as transformers holds it -> the checkpoint's ``_blocks``, ``_scales``.

    ``gate_up_proj [E, H, 2I]`` -> ``[E, 2I, H/32, 16]`` and ``[E, 2I, H/32]``;
    ``down_proj [E, I, H]`` -> ``[E, H, I/32, 16]`` and ``[E, H, I/32]``.
    """
    if fused.ndim < 2:
        raise InputError(f"pack_expert_weight: expected [E, in, out], got {list(fused.shape)}")
    return quantize_mxfp4(fused.transpose(-1, -2))


def unpack_expert_weight(
    blocks: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype = torch.bfloat16
) -> torch.Tensor:
    """Packed ``_blocks``/``_scales`` -> fused weight, as ``Mxfp4Config(dequantize=True)`` loads it.

    ``gate_up_proj_blocks [E, 2I, H/32, 16]`` -> ``gate_up_proj [E, H, 2I]``.
    """
    if blocks.ndim < 3:
        raise InputError(
            f"unpack_expert_weight: expected blocks [E, out, in/32, 16], got {list(blocks.shape)}"
        )
    return dequantize_mxfp4(blocks, scales, dtype).transpose(-1, -2).contiguous()
