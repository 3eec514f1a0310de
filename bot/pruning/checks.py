"""Checks made before a prune writes anything: the keep list, the source tensors, the plan.

Each raises `InputError` listing every problem found (up to 50), each naming the file,
layer, expert or tensor: a keep list read from JSON (`load_keep`) or given by a caller
(`check_keep`, against the family's routing rules), the router and expert tensors the
family's layout expects in the source (`check_tensors`), and the planned output against
the tensors the model class of the rewritten config has (`check_plan`).

Example:
    >>> check_keep({0: [3, 1]}, descriptor, config)   # doctest: +SKIP
    {0: (1, 3)}
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

from bot.checkpoint.format import Checkpoint
from bot.descriptors import ExpertLayout, ModelDescriptor
from bot.errors import InputError
from bot.inputs import MAX_JSON_BYTES, json_depth_exceeds, read_input_file
from bot.pruning.plan import Job
from bot.verify import Expected


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


def check_tensors(
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


def check_plan(jobs: list[Job], expected: Expected, ckpt: Checkpoint) -> None:
    """The planned output is exactly the model class's tensors; else name the source file."""
    problems = []
    planned = {job.out.name: job for job in jobs}
    for name, job in planned.items():
        first = job.reads[0]
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
