"""The safetensors format as values: tensor entries, header parsing and encoding, the index.

Pure: these functions take and return bytes and values, never open a file, so what a header
means (and what makes one corrupt) is testable without a checkpoint on disk.

Example:
    >>> header = encode_header([OutTensor("a", "BF16", (2, 3))])
    >>> parse_header(Path("a.safetensors"), header[8:], len(header) + 12)["a"].nbytes
    12
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.errors import InputError
from bot.inputs import json_depth_exceeds

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"

DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip
MAX_HEADER = 100 * 1024 * 1024
_MAX_HEADER_DEPTH = 8  # a header nests 3 deep: {name: {"shape": [...]}}


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor's bytes are: `file`, absolute offsets `[start, end)`."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    file: Path
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Checkpoint:
    """A folder's weights: shard files (in index order) and every tensor the index names."""

    folder: Path
    index: Path | None
    shards: tuple[Path, ...]
    tensors: dict[str, TensorInfo]
    header_bytes: int


@dataclass(frozen=True)
class OutTensor:
    """A tensor to write: name, safetensors dtype, shape."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * DTYPE_BYTES[self.dtype]


def header_length(path: Path, head: bytes, size: int) -> int:
    """The header length the first 8 bytes of a `size`-byte file give; `InputError` if bad."""
    if len(head) < 8:
        raise InputError(f"{path}: truncated safetensors file ({size} bytes, no header)")
    (length,) = struct.unpack("<Q", head)
    if length > min(size - 8, MAX_HEADER):
        raise InputError(
            f"{path}: corrupt safetensors header: length {length} but the file has {size} bytes"
        )
    return length


def parse_header(path: Path, raw: bytes, size: int) -> dict[str, TensorInfo]:
    """The tensors (in file order) of header JSON `raw` of a `size`-byte file at `path`.

    Checked: JSON shape, dtypes, shapes, that offsets lie in the file, hold their dtype and
    shape, and leave no gap or overlap. `InputError` names the file and tensor.
    """
    if json_depth_exceeds(raw, _MAX_HEADER_DEPTH):
        raise InputError(
            f"{path}: corrupt safetensors header: JSON nested deeper than "
            f"{_MAX_HEADER_DEPTH} levels"
        )
    try:
        header = json.loads(raw)
    except RecursionError:
        raise InputError(f"{path}: corrupt safetensors header: JSON nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: corrupt safetensors header: not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise InputError(f"{path}: corrupt safetensors header: not a JSON object")
    base, data_size = 8 + len(raw), size - 8 - len(raw)
    tensors = [
        _tensor_info(path, name, entry, base, data_size)
        for name, entry in header.items()
        if name != "__metadata__"
    ]
    tensors.sort(key=lambda t: (t.start, t.end))
    position = base
    for t in tensors:
        if t.start != position:
            raise InputError(
                f"{path}: corrupt safetensors file: tensor {t.name} starts at byte "
                f"{t.start - base} of the data, expected {position - base}"
            )
        position = t.end
    return {t.name: t for t in tensors}


def _tensor_info(path: Path, name: str, entry: object, base: int, data_size: int) -> TensorInfo:
    where = f"{path}: tensor {name}"
    if not isinstance(entry, dict):
        raise InputError(f"{where}: header entry is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPE_BYTES:
        raise InputError(f"{where}: unknown dtype {dtype!r}")
    if not (isinstance(shape, list) and all(_natural(d) for d in shape)):
        raise InputError(f"{where}: bad shape {shape!r}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_natural, offsets))):
        raise InputError(f"{where}: bad data_offsets {offsets!r}")
    begin, end = offsets
    if not begin <= end <= data_size:
        raise InputError(
            f"{where}: data offsets [{begin}, {end}] lie outside the file (its data section "
            f"has {data_size} bytes; truncated?)"
        )
    if end - begin != math.prod(shape) * DTYPE_BYTES[dtype]:
        raise InputError(f"{where}: {end - begin} bytes do not hold {dtype} {shape}")
    return TensorInfo(name, dtype, tuple(shape), path, base + begin, base + end)


def _natural(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def weight_map_of(path: Path, data: object) -> dict[str, str]:
    """The `weight_map` (tensor -> shard file) of index JSON `data` read from `path`."""
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise InputError(f"{path}: no 'weight_map' of tensor name -> shard file")
    for name, shard in weight_map.items():
        parts = Path(shard).parts
        if Path(shard).is_absolute() or ".." in parts or not parts:
            raise InputError(f"{path}: tensor {name}: shard {shard!r} is outside the folder")
    return weight_map


def plan_shards(tensors: Sequence[OutTensor], max_shard_bytes: int) -> list[list[OutTensor]]:
    """Split tensors, in order, into shards of at most `max_shard_bytes` tensor bytes.

    A tensor larger than the limit gets a shard of its own (as in transformers). Within a
    shard, tensors keep their order unless a tensor would start unaligned for its dtype;
    then that shard is ordered by element size, largest first.
    """
    shards: list[list[OutTensor]] = [[]]
    size = 0
    for tensor in tensors:
        if shards[-1] and size + tensor.nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(tensor)
        size += tensor.nbytes
    return [_aligned(shard) for shard in shards if shard]


def _aligned(shard: list[OutTensor]) -> list[OutTensor]:
    offset = 0
    for tensor in shard:
        if offset % DTYPE_BYTES[tensor.dtype]:
            return sorted(shard, key=lambda t: -DTYPE_BYTES[t.dtype])
        offset += tensor.nbytes
    return shard


def shard_file_name(index: int, count: int) -> str:
    """transformers' shard name: `model-00001-of-00003.safetensors` (1-based)."""
    return f"model-{index + 1:05d}-of-{count:05d}.safetensors"


def encode_header(tensors: Sequence[OutTensor]) -> bytes:
    """A safetensors header for tensors stored back to back in this order, padded to 8."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for t in tensors:
        header[t.name] = {
            "dtype": t.dtype,
            "shape": list(t.shape),
            "data_offsets": [offset, offset + t.nbytes],
        }
        offset += t.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


def encode_index(shards: Sequence[tuple[str, Sequence[OutTensor]]]) -> bytes:
    """`model.safetensors.index.json` for (file name, tensors) pairs, as transformers writes it."""
    weight_map = {t.name: name for name, tensors in shards for t in tensors}
    total = sum(t.nbytes for _, tensors in shards for t in tensors)
    data = {"metadata": {"total_size": total}, "weight_map": weight_map}
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()
