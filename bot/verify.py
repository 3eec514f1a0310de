"""Structure check of a checkpoint folder, without loading its weights.

The expected tensors come from the family's tensor table over the config (no torch or
transformers import; a test keeps each table equal to what transformers builds and saves),
in the storage layout the checkpoint uses (fused BF16, MXFP4 `_blocks`/`_scales`, one
module per expert, as the Hub holds it). Every expected tensor must be present with its
shape and dtype, and nothing else may be.

Example:
    >>> verify_structure(Path("out/gpt-oss-20b-code-16"))   # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.checkpoint import Checkpoint, open_checkpoint
from bot.descriptors import descriptor_for
from bot.errors import InputError
from bot.inputs import read_config

_FLOAT_DTYPES = {"bfloat16": "BF16", "float16": "F16", "float32": "F32"}

Expected = dict[str, tuple[tuple[int, ...], str]]


def verify_structure(folder: Path) -> None:
    """Raise `InputError` listing every missing, unexpected or mis-shaped tensor in `folder`."""
    folder = Path(folder)
    config = read_config(folder / "config.json")
    ckpt = open_checkpoint(folder)
    check_structure(ckpt, expected_tensors(config, ckpt.tensors.keys()))


def check_structure(ckpt: Checkpoint, expected: Expected) -> None:
    """Compare a checkpoint's tensors with `expected_tensors`; `InputError` lists problems."""
    where = ckpt.index or ckpt.folder
    problems = []
    for name, (shape, dtype) in expected.items():
        info = ckpt.tensors.get(name)
        if info is None:
            problems.append(f"{where}: missing tensor {name} ({dtype} {list(shape)})")
        elif info.shape != shape:
            problems.append(
                f"{info.file}: tensor {name} has shape {list(info.shape)}, the model expects "
                f"{list(shape)}"
            )
        elif info.dtype != dtype:
            problems.append(f"{info.file}: tensor {name} is {info.dtype}, expected {dtype}")
    for name in sorted(ckpt.tensors.keys() - expected.keys()):
        problems.append(f"{ckpt.tensors[name].file}: unexpected tensor {name}")
    if problems:
        raise InputError("\n".join(problems))


def expected_tensors(config: dict[str, Any], names: Any = ()) -> Expected:
    """Name -> (shape, safetensors dtype) of every tensor a checkpoint of `config` stores.

    `names` (the checkpoint's tensor names) only picks between layouts that the config alone
    does not tell apart (fused or one module per expert).
    """
    descriptor = descriptor_for(config)
    layout = descriptor.detect_layout(config, set(names))
    floating = float_dtype(config)
    return {
        name: (shape, floating if dtype is None else dtype)
        for name, (shape, dtype) in descriptor.stored_shapes(config, layout).items()
    }


def float_dtype(config: dict[str, Any]) -> str:
    """The safetensors dtype of a config's floating tensors (`dtype`, default BF16)."""
    name = config.get("dtype") or config.get("torch_dtype") or "bfloat16"
    if name not in _FLOAT_DTYPES:
        raise InputError(f"config: unsupported dtype {name!r}")
    return _FLOAT_DTYPES[name]
