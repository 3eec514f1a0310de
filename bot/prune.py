"""The pruning stage: keep some experts per layer of a MoE checkpoint, in a new folder.

Only safetensors headers and the byte ranges of kept experts are read (the expert axis is
dim 0, so each kept expert is one contiguous range), in file order, and written straight
into new shards; the model is never materialised. MXFP4 stays MXFP4 unless `dtype="bf16"`
asks for a dequantized checkpoint, which is still produced one expert at a time. The plan
is checked against the tensors the model class expects (`bot.verify`) before anything is
written; output is built in a temporary folder beside `dst`, read back, then put in place
(`bot.folders`: only a destination hubbot can prove it wrote is replaced): a failed or
killed run leaves the old `dst` or none, and a rerun gives byte-identical files.

This module is the stage's sequence; its parts live in `bot.pruning`: the checks
(`checks`), the plan as a value (`plan`), the executor that writes it (`execute`) and the
MXFP4 -> BF16 step (`decode`).

Example:
    >>> pruned = prune_checkpoint(Path("gpt-oss-20b"), Path("out/code-16"),
    ...                           {layer: list(range(16)) for layer in range(24)})  # doctest: +SKIP
    >>> pruned.files["config.json"]                                               # doctest: +SKIP
    '3f1c...'
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bot import __version__
from bot.checkpoint import (
    INDEX_FILE,
    Checkpoint,
    encode_index,
    open_checkpoint,
    return_freed_buffers,
)
from bot.descriptors import descriptor_for
from bot.errors import HubbotError, InputError
from bot.folders import Claim, check_disjoint, claim_destination, new_partial, replace_folder
from bot.provenance import FILENAME, BaseRef, Provenance, SelectionRecord, write_provenance
from bot.pruning.checks import check_keep, check_plan, check_tensors
from bot.pruning.execute import write_shards
from bot.pruning.plan import PrunePlan, plan_prune
from bot.verify import check_structure, expected_tensors, read_config

OutputDtype = Literal["source", "bf16"]

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5", ".msgpack")
_NOT_COPIED = {"config.json", "README.md", FILENAME}


@dataclass(frozen=True)
class PrunedModel:
    """A pruned checkpoint folder and what it took to write it."""

    path: Path
    kept: dict[int, tuple[int, ...]]
    output_format: str
    bytes_read: int
    bytes_written: int
    files: dict[str, str] = field(default_factory=dict)
    """Output file -> sha256 (every file but `hubbot.json`, which lists them)."""
    provenance: Provenance | None = None
    """What the pruned folder's `hubbot.json` records: base files read, output format,
    selection and output files (also when `write_record=False` left the file unwritten)."""


@dataclass(frozen=True)
class Origin:
    """Where a pruned model comes from, for its `hubbot.json`.

    `repo` and `revision` name the base (no repo: the source folder's path); `selection`
    says why these experts (none: an explicit keep list); its `kept_experts` must be the
    keep list.
    """

    repo: str | None = None
    revision: str | None = None
    selection: SelectionRecord | None = None


def prune_checkpoint(
    src: Path,
    dst: Path,
    keep: dict[int, list[int]],
    *,
    dtype: OutputDtype = "source",
    max_shard_bytes: int = 5 * 1024**3,
    origin: Origin | None = None,
    write_record: bool = True,
) -> PrunedModel:
    """Write a copy of checkpoint `src` keeping, in each layer, the experts `keep` lists.

    `dtype="bf16"` dequantizes an MXFP4 checkpoint (transformers' fused BF16 names);
    `"source"` keeps the storage format. `origin` names the base and the selection for
    the record (`PrunedModel.provenance`); with `write_record` (the low-level `hubbot prune`)
    it is written as `hubbot.json`, without it the caller writes a fuller one (the build,
    once, from its typed values). Bad input raises `InputError` before anything is written.
    """
    src, dst = Path(src), Path(dst)
    if dtype not in ("source", "bf16"):
        raise InputError(f"dtype must be 'source' or 'bf16', got {dtype!r}")
    if max_shard_bytes < 1:
        raise InputError(f"max_shard_bytes must be positive, got {max_shard_bytes}")
    config = read_config(src / "config.json")
    try:
        descriptor = descriptor_for(config)
        # the sizes every later loop runs over must be in bounds
        descriptor.num_layers(config), descriptor.num_experts(config), descriptor.top_k(config)
    except InputError as exc:
        raise InputError(f"{src / 'config.json'}: {exc}") from None
    ckpt = open_checkpoint(src)
    try:  # every size the config gives, resolved once: a bad one is named with its file
        expected_tensors(config, ckpt.tensors.keys())
    except InputError as exc:
        raise InputError(f"{src / 'config.json'}: {exc}") from None
    layout = descriptor.detect_layout(config, ckpt.tensors.keys())
    check_tensors(descriptor, layout, config, ckpt)
    kept = check_keep(keep, descriptor, config)
    dequantize = dtype == "bf16" and layout.quantized
    out_layout = descriptor.layout(descriptor.dequantized_layout) if dequantize else layout
    plan = plan_prune(
        descriptor,
        layout,
        config,
        ckpt,
        kept,
        dequantize=dequantize,
        max_shard_bytes=max_shard_bytes,
    )
    count = len(next(iter(kept.values())))
    out_config = descriptor.rewrite_config(config, count, drop_quantization=dequantize)
    draft = _provenance_draft(origin or Origin(), kept, src, out_layout.name)
    claim = _check_destination(src, dst)
    try:
        expected = expected_tensors(out_config, [job.out.name for job in plan.jobs])
    except InputError as exc:
        raise InputError(f"{src / 'config.json'}: {exc}") from None
    check_plan(plan.jobs, expected, ckpt)
    dst = claim.path  # absolute: "." names its folder

    return_freed_buffers()
    tmp = new_partial(dst)
    try:
        result = _write(src, tmp, ckpt, plan, out_config, draft, write_record)
        try:
            check_structure(open_checkpoint(tmp), expected)  # what was written, read back
        except InputError as exc:
            raise HubbotError(f"pruned checkpoint failed verification:\n{exc}") from None
        replace_folder(tmp, claim)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return PrunedModel(
        path=dst,
        kept=kept,
        output_format=out_layout.name,
        bytes_read=result.bytes_read,
        bytes_written=result.bytes_written,
        files=result.files,
        provenance=result.record,
    )


def _check_destination(src: Path, dst: Path) -> Claim:
    """`dst` neither overlaps `src` nor holds anything hubbot cannot prove it wrote."""
    check_disjoint(src, dst)
    return claim_destination(dst)


def _provenance_draft(
    origin: Origin, kept: dict[int, tuple[int, ...]], src: Path, output_format: str
) -> Provenance:
    """`hubbot.json` from the caller's origin, checked now; file hashes are added at the end."""
    kept_json = {str(layer): list(experts) for layer, experts in kept.items()}
    selection = origin.selection or SelectionRecord(
        strategy="explicit", statistics_source="none", statistics_digest="none", kept_experts={}
    )
    if origin.selection is not None and selection.kept_experts != kept_json:
        raise InputError("provenance: selection.kept_experts differs from the keep list")
    return Provenance(
        tool_version=__version__,
        base=BaseRef(repo=origin.repo or str(src), revision=origin.revision),
        output_format=output_format,
        selection=selection.model_copy(update={"kept_experts": kept_json}),
    )


# ---------------------------------------------------------------- write


@dataclass
class _Tally:
    """What a run read and wrote; sha256 per output file and per base file."""

    bytes_read: int = 0
    bytes_written: int = 0
    files: dict[str, str] = field(default_factory=dict)
    base_files: dict[str, str] = field(default_factory=dict)
    record: Provenance | None = None

    def add_output(self, folder: Path, name: str, data: bytes) -> None:
        (folder / name).write_bytes(data)
        self.files[name] = hashlib.sha256(data).hexdigest()
        self.bytes_written += len(data)


def _write(
    src: Path,
    out: Path,
    ckpt: Checkpoint,
    plan: PrunePlan,
    config: dict[str, Any],
    draft: Provenance,
    write_record: bool,
) -> _Tally:
    """Write shards, index, config, copied repo files and (`write_record`) `hubbot.json`."""
    shards = write_shards(src, out, ckpt, plan)
    tally = _Tally(shards.bytes_read, shards.bytes_written, dict(shards.files), shards.base_files)
    copied = {path.name: path.read_bytes() for path in _other_files(src)}
    read = {**copied, "config.json": (src / "config.json").read_bytes()}
    if ckpt.index is not None:
        read[ckpt.index.name] = ckpt.index.read_bytes()
    for name, data in read.items():
        tally.base_files[name] = hashlib.sha256(data).hexdigest()
        tally.bytes_read += len(data)
    for name, data in copied.items():
        tally.add_output(out, name, data)
    tally.add_output(out, INDEX_FILE, encode_index([(s.name, s.tensors) for s in plan.shards]))
    config_text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    tally.add_output(out, "config.json", config_text.encode())
    tally.files = dict(sorted(tally.files.items()))
    base = draft.base.model_copy(update={"files": dict(sorted(tally.base_files.items()))})
    tally.record = draft.model_copy(update={"base": base, "files": tally.files})
    if write_record:
        tally.bytes_written += write_provenance(out, tally.record).stat().st_size
    return tally


def _other_files(src: Path) -> list[Path]:
    """Repo files copied as they are: tokenizer, chat template, generation config, licence.

    Not weights (any format, any subfolder), the index, config.json (rewritten), the base's
    README (its card) or dotfiles.
    """
    return sorted(
        p
        for p in src.iterdir()
        if p.is_file()
        and not p.name.startswith(".")
        and not p.name.endswith(_WEIGHT_SUFFIXES)
        and not p.name.endswith(".index.json")
        and p.name not in _NOT_COPIED
    )
