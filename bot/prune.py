"""The streaming expert pruner: keep some experts per layer of a MoE checkpoint.

Only safetensors headers and the byte ranges of kept experts are read (the expert axis is
dim 0, so each kept expert is one contiguous range), in file order, and written straight
into new shards; the model is never materialised. MXFP4 stays MXFP4 unless `dtype="bf16"`
asks for a dequantized checkpoint, which is still produced one expert at a time. The plan
is checked against the tensors the model class expects (`bot.verify`) before anything is
written; output is built in a temporary folder beside `dst`, read back, then put in place
(`bot.folders`: only a destination hubbot can prove it wrote is replaced): a failed or
killed run leaves the old `dst` or none, and a rerun gives byte-identical files.

Example:
    >>> pruned = prune_checkpoint(Path("gpt-oss-20b"), Path("out/code-16"),
    ...                           {layer: list(range(16)) for layer in range(24)})  # doctest: +SKIP
    >>> pruned.files["config.json"]                                               # doctest: +SKIP
    '3f1c...'
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError

from bot import __version__
from bot.checkpoint import (
    CHUNK_BYTES,
    INDEX_FILE,
    BufferPool,
    Checkpoint,
    Chunk,
    Loaned,
    OutTensor,
    ShardWriter,
    SourceReader,
    TensorInfo,
    encode_index,
    known_sha256,
    open_checkpoint,
    plan_shards,
    prefetched,
    return_freed_buffers,
    shard_file_name,
)
from bot.descriptors import ExpertLayout, ModelDescriptor, TensorSpec, descriptor_for
from bot.errors import HubbotError, InputError
from bot.folders import Claim, check_disjoint, claim_destination, new_partial, replace_folder
from bot.inputs import MAX_JSON_BYTES, json_depth_exceeds, read_input_file
from bot.provenance import FILENAME, BaseRef, Provenance, SelectionRecord, write_provenance
from bot.verify import Expected, check_structure, expected_tensors, read_config

if TYPE_CHECKING:
    from bot.mxfp4 import TransposedDecoder

OutputDtype = Literal["source", "bf16"]

LOOKAHEAD_BYTES = 64 * 1024 * 1024
"""How far ahead of the writer input is asked of the disk (page cache, not process memory)."""
PARALLEL_SHARDS = 3
"""At most this many output shards are written (and hashed) at once: sha256 of one file is
one thread's work (about 1.1 GB/s), so one shard at a time cannot keep up with a fast disk.
Each shard in flight maps at most about 7 chunks of `CHUNK_BYTES`, which bounds memory."""
PARALLEL_DEQUANTIZED_SHARDS = 2
"""The same for BF16 output, whose shards also hold a pool of decoded buffers each."""
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5", ".msgpack")
_NOT_COPIED = {"config.json", "README.md", FILENAME}
_PROVENANCE_KEYS = {"repo", "revision", "selection", "variant", "manifest_digest"}


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


def load_keep(path: Path) -> dict[int, list[int]]:
    """Read a keep list: `{"0": [3, 7, ...], ...}`, or a `hubbot.json`/selection record with
    `kept_experts`. `InputError` naming the file if it is neither.

    A layer is spelt one way only, in ASCII digits without leading zeros (`"0"`, `"12"`),
    and given once; no key of any object may repeat.
    """
    raw = read_input_file(Path(path), limit=MAX_JSON_BYTES)
    if json_depth_exceeds(raw):
        raise InputError(f"{path}: JSON nested too deeply")
    try:
        data = json.loads(raw, object_pairs_hook=functools.partial(_no_repeats, path))
    except ValueError as exc:
        raise InputError(f"{path}: not valid JSON: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("selection"), dict):
        data = data["selection"]
    if isinstance(data, dict) and "kept_experts" in data:
        data = data["kept_experts"]
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected an object of layer -> list of experts")
    keep: dict[int, list[int]] = {}
    for layer, experts in data.items():
        if not (_LAYER_KEY.fullmatch(layer) and isinstance(experts, list)):
            raise InputError(
                f"{path}: entry {layer!r}: expected a layer number (ASCII digits, no leading "
                "zeros) -> list of experts"
            )
        if not all(isinstance(e, int) and not isinstance(e, bool) for e in experts):
            raise InputError(f"{path}: layer {layer}: experts must be integers")
        keep[int(layer)] = experts
    return keep


_LAYER_KEY = re.compile(r"0|[1-9][0-9]{0,8}", re.ASCII)


def _no_repeats(path: Path, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object as a dict; `InputError` if a key repeats (JSON would keep the last)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise InputError(f"{path}: key {key!r} is given twice")
        out[key] = value
    return out


def prune_checkpoint(
    src: Path,
    dst: Path,
    keep: dict[int, list[int]],
    *,
    dtype: OutputDtype = "source",
    max_shard_bytes: int = 5 * 1024**3,
    provenance: dict[str, Any] | None = None,
) -> PrunedModel:
    """Write a copy of checkpoint `src` keeping, in each layer, the experts `keep` lists.

    `dtype="bf16"` dequantizes an MXFP4 checkpoint (transformers' fused BF16 names);
    `"source"` keeps the storage format. `provenance` may give `repo`, `revision`,
    `selection` (a `SelectionRecord` without, or with matching, `kept_experts`), `variant`
    and `manifest_digest` for `hubbot.json`. Bad input raises `InputError` before anything
    is written.
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
    _check_tensors(descriptor, layout, config, ckpt)
    kept = check_keep(keep, descriptor, config)
    dequantize = dtype == "bf16" and layout.quantized
    out_layout = descriptor.layout(descriptor.dequantized_layout) if dequantize else layout
    jobs = _plan(descriptor, layout, config, ckpt, kept, dequantize)
    count = len(next(iter(kept.values())))
    out_config = descriptor.rewrite_config(config, count, drop_quantization=dequantize)
    draft = _provenance_draft(provenance, kept, src, out_layout.name)
    claim = _check_destination(src, dst)
    try:
        expected = expected_tensors(out_config, [job.out.name for job in jobs])
    except InputError as exc:
        raise InputError(f"{src / 'config.json'}: {exc}") from None
    _check_plan(jobs, expected, ckpt)
    dst = claim.path  # absolute: "." names its folder

    return_freed_buffers()
    tmp = new_partial(dst)
    try:
        result = _write(src, tmp, ckpt, jobs, out_config, max_shard_bytes, draft)
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
    )


def check_keep(
    keep: dict[int, list[int]], descriptor: ModelDescriptor, config: dict[str, Any]
) -> dict[int, tuple[int, ...]]:
    """Validate a keep list against a config; kept experts per MoE layer, sorted.

    The keep list names every MoE layer of the config (dense layers have no experts).
    """
    layers, experts = descriptor.num_layers(config), descriptor.num_experts(config)
    moe_layers = descriptor.moe_layer_indices(config)
    top_k = descriptor.top_k(config)
    problems = []
    if not isinstance(keep, dict):
        raise InputError("keep list: expected a mapping of layer -> experts")
    for layer in sorted(keep, key=str):
        if isinstance(layer, bool) or not isinstance(layer, int):
            problems.append(f"keep list: layer key {layer!r} is not an integer")
        elif not 0 <= layer < layers:
            problems.append(f"keep list: layer {layer} does not exist (layers 0..{layers - 1})")
        elif layer not in moe_layers:
            problems.append(f"keep list: layer {layer} is dense (it has no experts)")
    for layer in moe_layers:
        if layer not in keep:
            what = f"{layers} layers" if len(moe_layers) == layers else "experts there"
            problems.append(f"keep list: layer {layer} is missing (the model has {what})")
            continue
        chosen = list(keep[layer])
        for expert in chosen:
            if isinstance(expert, bool) or not isinstance(expert, int):
                problems.append(f"keep list: layer {layer}: {expert!r} is not an expert index")
            elif not 0 <= expert < experts:
                problems.append(
                    f"keep list: layer {layer}: expert {expert} is out of range 0..{experts - 1}"
                )
        for expert in sorted({e for e in chosen if chosen.count(e) > 1}, key=str):
            problems.append(f"keep list: layer {layer}: expert {expert} is listed twice")
        if len(set(chosen)) < top_k:
            problems.append(
                f"keep list: layer {layer}: keeps {len(set(chosen))} experts, fewer than the "
                f"{top_k} each token is routed to"
            )
    counts = {layer: len(keep[layer]) for layer in moe_layers if layer in keep}
    if not problems and len(set(counts.values())) > 1:
        detail = ", ".join(f"layer {layer}: {n}" for layer, n in counts.items())
        problems.append(
            f"keep list: every layer must keep the same number of experts ({detail}); the "
            f"config has one {descriptor.num_experts_key}"
        )
    if not problems and counts:
        problems += _group_problems(keep, moe_layers, descriptor, config)
    if problems:
        raise InputError("\n".join(problems))
    return {layer: tuple(sorted(keep[layer])) for layer in moe_layers}


def _group_problems(
    keep: dict[int, list[int]],
    moe_layers: list[int],
    descriptor: ModelDescriptor,
    config: dict[str, Any],
) -> list[str]:
    """Group-limited routing stays exact when every group keeps the same number (>= 2)."""
    groups = descriptor.num_groups(config)
    if groups <= 1:
        return []
    why = descriptor.group_problem(config, len(keep[moe_layers[0]]))
    if why:
        return [f"keep list: {why}"]
    for layer in moe_layers:
        per_group = [0] * groups
        for expert in keep[layer]:
            per_group[descriptor.group_of(config, expert)] += 1
        if len(set(per_group)) > 1:
            return [
                f"keep list: layer {layer} keeps {per_group} experts of its {groups} routing "
                "groups; group-limited routing needs the same number kept in every group"
            ]
    return []


# ---------------------------------------------------------------- checks


def _check_tensors(
    descriptor: ModelDescriptor, layout: ExpertLayout, config: dict[str, Any], ckpt: Checkpoint
) -> None:
    """Every router and expert tensor the descriptor expects is there, shaped as the config says."""
    where = ckpt.index or ckpt.folder
    problems = []
    experts = range(descriptor.num_experts(config)) if layout.per_expert else [None]
    for layer in descriptor.moe_layer_indices(config):
        specs = [(s, None) for s in descriptor.router_tensors]
        specs += [(s, e) for s in layout.tensors for e in experts]
        for spec, expert in specs:
            name = spec.tensor_name(layer, expert)
            info = ckpt.tensors.get(name)
            shape = descriptor.shape(spec, config)
            if info is None:
                problems.append(
                    f"{where}: lacks tensor {name} ({descriptor.model_type} {layout.name} layout)"
                )
            elif info.shape != shape:
                problems.append(
                    f"{info.file}: tensor {name} has shape {list(info.shape)}, config.json "
                    f"implies {list(shape)}"
                )
            elif spec.dtype is not None and info.dtype != spec.dtype:
                problems.append(
                    f"{info.file}: tensor {name} is {info.dtype}, expected {spec.dtype}"
                )
    if descriptor.expert_axis != 0 and not layout.per_expert:
        problems.append(f"descriptor {descriptor.model_type}: only expert axis 0 is streamable")
    if problems:
        raise InputError("\n".join(problems[:50]))


def _check_plan(jobs: list[_Job], expected: Expected, ckpt: Checkpoint) -> None:
    """The planned output is exactly the model class's tensors; else name the source file."""
    problems = []
    planned = {job.out.name: job for job in jobs}
    for name, job in planned.items():
        first = job.ranges[0] if job.ranges else job.packed[0][0]
        want = expected.get(name)
        if want is None:
            problems.append(f"{first.file}: tensor {name} is not one the model of config.json has")
        elif job.out.shape != want[0]:
            problems.append(
                f"{first.file}: tensor {name} would be {list(job.out.shape)}, the model of "
                f"config.json has {list(want[0])}"
            )
        elif job.out.dtype != want[1]:
            problems.append(f"{first.file}: tensor {name} is {job.out.dtype}, expected {want[1]}")
    where = ckpt.index or ckpt.folder
    for name, (shape, dtype) in expected.items():
        if name not in planned:
            problems.append(f"{where}: lacks tensor {name} ({dtype} {list(shape)})")
    if problems:
        more = f"\n... and {len(problems) - 50} more" if len(problems) > 50 else ""
        raise InputError("\n".join(problems[:50]) + more)


def _check_destination(src: Path, dst: Path) -> Claim:
    """`dst` neither overlaps `src` nor holds anything hubbot cannot prove it wrote."""
    check_disjoint(src, dst)
    return claim_destination(dst)


def _provenance_draft(
    provenance: dict[str, Any] | None,
    kept: dict[int, tuple[int, ...]],
    src: Path,
    output_format: str,
) -> Provenance:
    """`hubbot.json` from the caller's fields, checked now; file hashes are added at the end."""
    given = dict(provenance or {})
    unknown = sorted(given.keys() - _PROVENANCE_KEYS)
    if unknown:
        raise InputError(f"provenance: unknown keys {unknown}; known: {sorted(_PROVENANCE_KEYS)}")
    kept_json = {str(layer): list(experts) for layer, experts in kept.items()}
    selection = dict(given.get("selection") or {})
    if selection.get("kept_experts", kept_json) != kept_json:
        raise InputError("provenance: selection.kept_experts differs from the keep list")
    selection.setdefault("strategy", "explicit")
    selection.setdefault("statistics_source", "none")
    selection.setdefault("statistics_digest", "none")
    selection["kept_experts"] = kept_json
    try:
        return Provenance(
            tool_version=__version__,
            variant=given.get("variant"),
            manifest_digest=given.get("manifest_digest"),
            base=BaseRef(repo=given.get("repo") or str(src), revision=given.get("revision")),
            output_format=output_format,
            selection=SelectionRecord.model_validate(selection),
        )
    except ValidationError as exc:
        raise InputError(f"provenance: {' '.join(str(exc).splitlines()[:3])}") from None


# ---------------------------------------------------------------- plan


@dataclass(frozen=True)
class _Range:
    file: Path
    start: int
    length: int


@dataclass(frozen=True)
class _Job:
    """One output tensor: bytes copied from `ranges`, or experts dequantized from `packed`."""

    out: OutTensor
    ranges: tuple[_Range, ...] = ()
    packed: tuple[tuple[_Range, _Range], ...] = ()
    block_shape: tuple[int, ...] = ()


def _plan(
    descriptor: ModelDescriptor,
    layout: ExpertLayout,
    config: dict[str, Any],
    ckpt: Checkpoint,
    kept: dict[int, tuple[int, ...]],
    dequantize: bool,
) -> list[_Job]:
    """Output tensors in the source's file order, each with the byte ranges it is made of."""
    count = len(next(iter(kept.values())))
    handled: set[str] = set()
    jobs: list[_Job] = []
    for layer, experts in kept.items():
        for spec in (*descriptor.router_tensors, *([] if layout.per_expert else layout.tensors)):
            info = ckpt.tensors[spec.tensor_name(layer)]
            handled.add(info.name)
            if dequantize and spec.packing == "scales":
                continue
            if dequantize and spec.packing == "blocks":
                jobs.append(_dequant_job(descriptor, layout, spec, config, ckpt, layer, experts))
                continue
            out = OutTensor(info.name, info.dtype, (count, *info.shape[1:]))
            jobs.append(_Job(out, _expert_ranges(info, experts)))
        if layout.per_expert:
            for new, old in enumerate(experts):
                for spec in layout.tensors:
                    info = ckpt.tensors[spec.tensor_name(layer, old)]
                    out = OutTensor(spec.tensor_name(layer, new), info.dtype, info.shape)
                    jobs.append(_Job(out, (_Range(info.file, info.start, info.nbytes),)))
            handled.update(
                spec.tensor_name(layer, e)
                for spec in layout.tensors
                for e in range(descriptor.num_experts(config))
            )
    dropped = descriptor.dropped_prefixes(config)
    for info in ckpt.tensors.values():
        if info.name not in handled and not info.name.startswith(dropped):
            jobs.append(_Job(OutTensor(info.name, info.dtype, info.shape), (_whole(info),)))
    shard_order = {path: i for i, path in enumerate(ckpt.shards)}
    return sorted(jobs, key=lambda j: _first(j, shard_order))


def _first(job: _Job, shard_order: dict[Path, int]) -> tuple[int, int, str]:
    ranges = job.ranges or tuple(r for pair in job.packed for r in pair)
    first = min(ranges, key=lambda r: (shard_order[r.file], r.start))
    return shard_order[first.file], first.start, job.out.name


def _whole(info: TensorInfo) -> _Range:
    return _Range(info.file, info.start, info.nbytes)


def _expert_ranges(info: TensorInfo, experts: tuple[int, ...]) -> tuple[_Range, ...]:
    """Byte ranges of the kept rows along dim 0, consecutive experts merged."""
    ranges: list[_Range] = []
    for expert in experts:
        row = _row(info, expert)
        last = ranges[-1] if ranges else None
        if last is not None and last.start + last.length == row.start:
            ranges[-1] = _Range(info.file, last.start, last.length + row.length)
        else:
            ranges.append(row)
    return tuple(ranges)


def _row(info: TensorInfo, expert: int) -> _Range:
    """One expert's bytes: row `expert` along dim 0."""
    stride = info.nbytes // info.shape[0]
    return _Range(info.file, info.start + expert * stride, stride)


def _dequant_job(
    descriptor: ModelDescriptor,
    layout: ExpertLayout,
    blocks_spec: TensorSpec,
    config: dict[str, Any],
    ckpt: Checkpoint,
    layer: int,
    experts: tuple[int, ...],
) -> _Job:
    scales_spec = next(
        s
        for s in layout.tensors
        if s.packing == "scales" and s.stands_for == blocks_spec.stands_for
    )
    target = next(
        s
        for s in descriptor.layout(descriptor.dequantized_layout).tensors
        if s.name == blocks_spec.stands_for
    )
    blocks = ckpt.tensors[blocks_spec.tensor_name(layer)]
    scales = ckpt.tensors[scales_spec.tensor_name(layer)]
    shape = descriptor.shape(target, config, len(experts))
    return _Job(
        OutTensor(blocks_spec.model_name(layer), "BF16", shape),
        packed=tuple((_row(blocks, e), _row(scales, e)) for e in experts),
        block_shape=blocks.shape[1:],
    )


# ---------------------------------------------------------------- write


@dataclass
class _Tally:
    """What a run read and wrote; sha256 per output file and per base file."""

    bytes_read: int = 0
    bytes_written: int = 0
    files: dict[str, str] = field(default_factory=dict)
    base_files: dict[str, str] = field(default_factory=dict)

    def add_output(self, folder: Path, name: str, data: bytes) -> None:
        (folder / name).write_bytes(data)
        self.files[name] = hashlib.sha256(data).hexdigest()
        self.bytes_written += len(data)


def _write(
    src: Path,
    out: Path,
    ckpt: Checkpoint,
    jobs: list[_Job],
    config: dict[str, Any],
    max_shard_bytes: int,
    draft: Provenance,
) -> _Tally:
    """Write shards, index, config, copied repo files and `hubbot.json` into `out`."""
    tally = _Tally()
    shards = _write_shards(src, out, ckpt, jobs, max_shard_bytes, tally)
    copied = {path.name: path.read_bytes() for path in _other_files(src)}
    read = {**copied, "config.json": (src / "config.json").read_bytes()}
    if ckpt.index is not None:
        read[ckpt.index.name] = ckpt.index.read_bytes()
    for name, data in read.items():
        tally.base_files[name] = hashlib.sha256(data).hexdigest()
        tally.bytes_read += len(data)
    for name, data in copied.items():
        tally.add_output(out, name, data)
    tally.add_output(out, INDEX_FILE, encode_index(shards))
    config_text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    tally.add_output(out, "config.json", config_text.encode())
    tally.files = dict(sorted(tally.files.items()))
    base = draft.base.model_copy(update={"files": dict(sorted(tally.base_files.items()))})
    record = draft.model_copy(update={"base": base, "files": tally.files})
    tally.bytes_written += write_provenance(out, record).stat().st_size
    return tally


def _write_shards(
    src: Path, out: Path, ckpt: Checkpoint, jobs: list[_Job], max_shard_bytes: int, tally: _Tally
) -> list[tuple[str, list[OutTensor]]]:
    """Stream every job into shards; base shards are hashed as read unless the cache names them.

    Shards are written `shard_workers` at a time, each on its own thread with its own hash
    thread; the bytes of every file are the same as when written one after another.
    """
    known = {path: known_sha256(path) for path in ckpt.shards}
    hashed = [path for path, sha in known.items() if sha is None]
    reader = SourceReader(ckpt.shards, hashed)
    by_name = {job.out.name: job for job in jobs}
    planned = plan_shards([job.out for job in jobs], max_shard_bytes)
    shards = [(shard_file_name(i, len(planned)), tensors) for i, tensors in enumerate(planned)]
    workers = shard_workers(
        len(shards), dequantize=any(job.packed for job in jobs), hashing_base=bool(hashed)
    )
    stop = threading.Event()

    def write(name: str, tensors: list[OutTensor], lookahead: _Lookahead, decoding: _Decoding):
        writer = ShardWriter(out / name, tensors)
        try:
            for tensor in tensors:
                if stop.is_set():
                    raise _Stopped(f"{out / name}: stopped, another shard failed")
                lookahead.advance()
                chunks = prefetched(_chunks(by_name[tensor.name], reader, decoding))
                writer.write_tensor(tensor.name, chunks)
        except BaseException:
            stop.set()
            writer.abort()
            raise
        return writer.close(), writer.bytes_written

    def own_lookahead(tensors: list[OutTensor]) -> _Lookahead:
        return _Lookahead(reader, [by_name[t.name] for t in tensors])

    try:
        if workers == 1:  # one lookahead and one decoder across shard boundaries
            lookahead = own_lookahead([t for _, tensors in shards for t in tensors])
            decoding = _Decoding()
            results = [write(name, tensors, lookahead, decoding) for name, tensors in shards]
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                futures = [
                    pool.submit(write, name, tensors, own_lookahead(tensors), _Decoding())
                    for name, tensors in shards
                ]
                wait(futures, return_when=FIRST_EXCEPTION)
                if stop.is_set():
                    for future in futures:
                        future.cancel()
                    wait(futures)
                    errors = [e for f in futures if not f.cancelled() if (e := f.exception())]
                    raise next((e for e in errors if not isinstance(e, _Stopped)), errors[0])
                results = [future.result() for future in futures]
        hashes = {**known, **reader.finish()}
    finally:
        reader.close()
    for (name, _), (digest, written) in zip(shards, results, strict=True):
        tally.files[name] = digest
        tally.bytes_written += written
    tally.base_files.update(
        {path.relative_to(src).as_posix(): sha for path, sha in hashes.items() if sha}
    )
    tally.bytes_read += reader.bytes_read + ckpt.header_bytes
    return shards


class _Stopped(HubbotError):
    """A shard's thread gave up because another shard's failed (that failure is raised)."""


def shard_workers(shards: int, *, dequantize: bool, hashing_base: bool) -> int:
    """How many output shards to write at once on this machine.

    One when the base must be hashed as it is read (in file order), or with fewer than
    four cores (copying and hashing one shard already keep two busy); else up to
    `PARALLEL_SHARDS` (`PARALLEL_DEQUANTIZED_SHARDS` for BF16 output), two cores each.
    """
    if hashing_base:
        return 1
    limit = PARALLEL_DEQUANTIZED_SHARDS if dequantize else PARALLEL_SHARDS
    return max(1, min(shards, limit, _cores() // 2))


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class _Lookahead:
    """Asks the disk for the input of the jobs after the current one, `LOOKAHEAD_BYTES` ahead
    of the writer, so reads overlap writing and hashing even from a cold cache."""

    def __init__(self, reader: SourceReader, jobs: list[_Job]) -> None:
        self._reader = reader
        self._ranges = [job.ranges or tuple(r for pair in job.packed for r in pair) for job in jobs]
        self._sizes = [sum(r.length for r in ranges) for ranges in self._ranges]
        self._current = -1
        self._asked = 0  # jobs [0, _asked) have been asked for

    def advance(self) -> None:
        """Move to the next job and ask for what follows it."""
        self._current += 1
        ahead = sum(self._sizes[self._current + 1 : self._asked])
        while self._asked < len(self._ranges) and ahead < LOOKAHEAD_BYTES:
            for r in self._ranges[self._asked]:
                self._reader.prefetch(r.file, r.start, r.length)
            if self._asked > self._current:
                ahead += self._sizes[self._asked]
            self._asked += 1


@dataclass
class _Decoding:
    """State kept from one dequantized tensor to the next (one per shard writing thread)."""

    pool: BufferPool = field(default_factory=BufferPool)
    decoder: TransposedDecoder | None = None  # made on first use: torch loads only then


def _chunks(job: _Job, reader: SourceReader, decoding: _Decoding) -> Iterator[Chunk]:
    """The bytes of one output tensor, at most `CHUNK_BYTES` (or one expert) at a time."""
    for r in job.ranges:
        for offset in range(0, r.length, CHUNK_BYTES):
            yield reader.slice(r.file, r.start + offset, min(CHUNK_BYTES, r.length - offset))
    if job.packed:
        yield from _dequantized(job, reader, decoding)


def _dequantized(job: _Job, reader: SourceReader, decoding: _Decoding) -> Iterator[Loaned]:
    """Dequantized kept experts, about `CHUNK_BYTES` at a time, in the fused layout.

    Packed bytes are mapped (not copied), in file order. Each chunk is a run of 32-value
    groups of the packed input axis, which is a run of rows of the transposed BF16 weight,
    decoded by `TransposedDecoder` into a pooled buffer that the writer gives back once it
    has written and hashed it. Torch runs single-threaded here: the other core writes and
    hashes, and idle OpenMP workers would only spin.
    """
    import torch

    from bot.mxfp4 import TransposedDecoder

    if decoding.decoder is None:
        decoding.decoder = TransposedDecoder()
    ranges = sorted({r for pair in job.packed for r in pair}, key=lambda r: (r.file, r.start))
    data = {r: reader.mapped(r.file, r.start, r.length) for r in ranges}
    rows, groups, width = job.block_shape
    step = max(1, CHUNK_BYTES // (rows * 2 * width * 2))  # groups per chunk
    pool, decoder = decoding.pool, decoding.decoder
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for blocks_range, scales_range in job.packed:
            blocks = torch.frombuffer(data.pop(blocks_range), dtype=torch.uint8)
            scales = torch.frombuffer(data.pop(scales_range), dtype=torch.uint8)
            blocks = blocks.view(rows, groups, width)
            scales = scales.view(rows, groups)
            for first in range(0, groups, step):
                count = min(step, groups - first)
                nbytes = rows * count * width * 2 * 2
                buffer = pool.take(nbytes)
                view = memoryview(buffer)[:nbytes]
                out = torch.frombuffer(view, dtype=torch.bfloat16)
                decoder.decode(
                    blocks[:, first : first + count], scales[:, first : first + count], out
                )
                yield Loaned(view, functools.partial(pool.give_back, buffer))
    finally:
        torch.set_num_threads(threads)


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
