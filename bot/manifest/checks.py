"""Semantic checks of a manifest: what needs the base config or the files it names.

Each check returns `Problem`s located in the YAML document (`FILE:LINE:COL`), so that
loading can report every problem at once: the base config snapshot and its family, expert
counts, naming, domains and their cycles, the card template, statistics and evaluation
sources, and the repo ids the expansion gives.
"""

from __future__ import annotations

import difflib
import os
import re
import string
import urllib.parse
from pathlib import Path
from typing import Any

from bot.card import HUB_LICENSES, check_template, is_repo_id
from bot.checkpoint import INDEX_FILE
from bot.descriptors import descriptor_for
from bot.errors import InputError, Problem
from bot.families.hooks import chat_format
from bot.inputs import read_config, read_input_file
from bot.manifest.schema import NAME_FIELDS, ExpertCounts, ManifestSpec
from bot.manifest.variants import expand_variants
from bot.model_stats import parameter_counts
from bot.quality.check import check_evaluation
from bot.selection.check import check_statistics
from bot.yamlsrc import YamlDocument

MAX_TEMPLATE_BYTES = 1024 * 1024


def read_base_config(
    path: Path, spec: ManifestSpec, doc: YamlDocument
) -> tuple[dict[str, Any] | None, list[Problem]]:
    where = ("base", "config")
    config_path = path.parent / spec.base.config
    if not config_path.exists():
        return None, [doc.problem(where, f"base config snapshot {config_path} does not exist")]
    try:
        config = read_config(config_path)
    except InputError as exc:
        return None, [doc.problem(where, f"cannot read base config: {exc}")]
    try:
        descriptor = descriptor_for(config)
        missing = descriptor.missing_keys(config)
        if missing:
            message = f"{config_path} is not a MoE config (lacks {missing})"
            return None, [doc.problem(where, message)]
        # the sizes every later loop runs over must be in bounds
        descriptor.num_layers(config), descriptor.num_experts(config), descriptor.top_k(config)
        parameter_counts(config)
    except InputError as exc:
        return None, [doc.problem(where, f"{config_path}: {exc}")]
    except Exception as exc:  # transformers' own checks of the config, whatever they raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return None, [doc.problem(where, f"{config_path}: transformers cannot build it: {first}")]
    return config, []


def repository_root(manifest_path: Path) -> Path:
    """The repository a manifest belongs to: the nearest folder above it holding `.git`,
    else the folder above the manifest's own (hubbot's layout: `manifests/` beside
    `templates/`). Files a manifest names for publishing must lie inside it."""
    folder = manifest_path.resolve().parent
    for candidate in (folder, *folder.parents):
        if (candidate / ".git").exists():
            return candidate
    return folder.parent


def _check_evaluation(path: Path, spec: ManifestSpec, doc: YamlDocument) -> list[Problem]:
    return [doc.problem(where, message) for where, message in check_evaluation(spec, path.parent)]


def _check_template(path: Path, spec: ManifestSpec, doc: YamlDocument) -> list[Problem]:
    where = ("card", "template")
    template = path.parent / spec.card.template
    root = repository_root(path)
    if not template.resolve().is_relative_to(root):
        return [
            doc.problem(
                where,
                f"card template {spec.card.template} lies outside the repository ({root}); "
                "templates must be part of the release's repository",
            )
        ]
    if not template.exists():
        return [doc.problem(where, f"card template {template} does not exist")]
    try:
        read_input_file(template, limit=MAX_TEMPLATE_BYTES).decode("utf-8")
        check_template(template)
    except UnicodeDecodeError as exc:
        return [doc.problem(where, f"card template {template} is not UTF-8: {exc.reason}")]
    except InputError as exc:
        return [doc.problem(where, f"card template: {exc}")]
    return []


def _check_names(path: Path, spec: ManifestSpec, doc: YamlDocument) -> list[Problem]:
    """Repo ids, licence, endpoint, base folder and runner names: what the Hub would refuse."""
    problems = []
    if not is_repo_id(spec.base.repo, owner=False):
        problems.append(
            doc.problem(("base", "repo"), f"{spec.base.repo!r} is not a Hub repo id (owner/name)")
        )
    if spec.base.path is not None and os.path.lexists(path.parent / spec.base.path):
        # a folder that exists must be a model's; a missing one may be mounted where builds
        # run (validate and plan do not read it), and build says so if it is not there
        folder = path.parent / spec.base.path
        lacks = _model_folder_lacks(folder)
        if lacks:
            problems.append(
                doc.problem(("base", "path"), f"{folder} is not a model folder: {lacks}")
            )
    card = spec.card
    if card.license not in HUB_LICENSES:
        hint = difflib.get_close_matches(card.license, sorted(HUB_LICENSES), n=1)
        suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
        problems.append(
            doc.problem(
                ("card", "license"),
                f"license {card.license!r} is not a Hub licence id{suffix}; for another "
                "licence use 'other' with license_name (and license_link)",
            )
        )
    elif card.license == "other" and not card.license_name:
        problems.append(doc.problem(("card", "license"), "license 'other' needs license_name"))
    if card.license_name is not None and not _LICENSE_NAME.fullmatch(card.license_name):
        problems.append(
            doc.problem(
                ("card", "license_name"),
                f"license_name {card.license_name!r}: use lowercase letters, digits, '-' and '.'",
            )
        )
    if card.license != "other" and (card.license_name or card.license_link):
        problems.append(
            doc.problem(("card", "license"), "license_name and license_link go with license: other")
        )
    if card.license_link is not None and not _is_http_url(card.license_link):
        problems.append(
            doc.problem(("card", "license_link"), "license_link must be an http(s) URL")
        )
    for i, dataset in enumerate(card.datasets):
        if not is_repo_id(dataset, owner=True):
            problems.append(
                doc.problem(
                    ("card", "datasets", i), f"{dataset!r} is not a Hub dataset id (owner/name)"
                )
            )
    if spec.hub.endpoint is not None and not _is_http_url(spec.hub.endpoint):
        problems.append(
            doc.problem(
                ("hub", "endpoint"), f"endpoint {spec.hub.endpoint!r} must be an http(s) URL"
            )
        )
    ids = [d.id for d in spec.domains]
    for name in spec.ci.runners:
        if name not in ids:
            hint = difflib.get_close_matches(name, ids, n=1)
            suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
            problems.append(
                doc.problem(("ci", "runners", name), f"no domain {name!r}{suffix}", key=True)
            )
    return problems


_LICENSE_NAME = re.compile(r"[a-z0-9][a-z0-9.-]*")


def _is_http_url(value: str) -> bool:
    parts = urllib.parse.urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _model_folder_lacks(folder: Path) -> str:
    """What keeps `folder` from being a model folder ('' when nothing does)."""
    if not folder.is_dir():
        return "not a folder"
    if not (folder / "config.json").is_file():
        return "it has no config.json"
    if not ((folder / "model.safetensors").is_file() or (folder / INDEX_FILE).is_file()):
        return f"it has no model.safetensors or {INDEX_FILE}"
    return ""


def _check_counts(spec: ManifestSpec, config: dict[str, Any], doc: YamlDocument) -> list[Problem]:
    descriptor = descriptor_for(config)
    low, high = descriptor.top_k(config), descriptor.num_experts(config)
    problems = []
    blocks: list[tuple[tuple[str | int, ...], ExpertCounts]] = [(("experts",), spec.experts)]
    blocks += [
        (("domains", i, "experts"), d.experts) for i, d in enumerate(spec.domains) if d.experts
    ]
    for where, block in blocks:
        found = []
        for field in ("counts", "min", "max"):
            raw = getattr(block, field)
            for i, n in enumerate(raw if isinstance(raw, list) else [raw]):
                if n is None or low <= n <= high:
                    continue
                loc = (*where, field, i) if isinstance(raw, list) else (*where, field)
                found.append(
                    doc.problem(
                        loc,
                        f"expert count {n} is outside {low}..{high} (the base model routes "
                        f"each token to {low} of {high} experts)",
                    )
                )
        if not found:  # bounded now: the range is at most `high` long
            values = block.values()
            if not values:
                found.append(doc.problem(where, "no expert count left after exclusions"))
            grouped = [n for n in values if descriptor.group_problem(config, n)]
            if grouped:
                why = descriptor.group_problem(config, grouped[0])
                found.append(doc.problem(where, f"expert count {grouped[0]}: {why}"))
        problems += found
    return problems


def _check_family(spec: ManifestSpec, config: dict[str, Any], doc: YamlDocument) -> list[Problem]:
    """What the base model's family cannot do: an output format, a chat template option."""
    descriptor = descriptor_for(config)
    problems = []
    quantized = {layout.quant_method for layout in descriptor.layouts if layout.quantized}
    if spec.output.format != "bf16" and spec.output.format not in quantized:
        problems.append(
            doc.problem(
                ("output", "format"),
                f"{descriptor.title} checkpoints have no {spec.output.format} layout; use bf16",
            )
        )
    options = chat_format(config).template_options
    for name in sorted(spec.generation.model_fields_set & {"reasoning_effort"} - set(options)):
        problems.append(
            doc.problem(
                ("generation", name),
                f"{descriptor.title}'s chat template takes no {name} (only harmony does)",
            )
        )
    return problems


def _check_naming(spec: ManifestSpec, doc: YamlDocument) -> list[Problem]:
    problems = []
    try:
        parsed = list(string.Formatter().parse(spec.naming))
    except ValueError as exc:
        return [doc.problem(("naming",), f"bad naming template: {exc}")]
    for _, name, format_spec, _ in parsed:
        if name is None:
            continue
        if name not in NAME_FIELDS:
            hint = difflib.get_close_matches(name, NAME_FIELDS, n=1)
            suffix = f" (did you mean {{{hint[0]}}}?)" if hint else ""
            allowed = ", ".join(f"{{{f}}}" for f in NAME_FIELDS)
            problems.append(
                doc.problem(
                    ("naming",),
                    f"unknown placeholder {{{name}}} in naming template{suffix}; known: {allowed}",
                )
            )
        elif format_spec and ("{" in format_spec or _too_wide(format_spec)):
            problems.append(
                doc.problem(
                    ("naming",),
                    f"placeholder {{{name}:{format_spec}}}: a format spec may not nest fields "
                    "or ask for more than 96 characters (the Hub's limit for a name)",
                )
            )
    if problems:
        return problems
    try:  # with values of the types expansion uses
        spec.naming.format(base_name=spec.base.name, domain="domain", experts=16, params_b="1.0")
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        return [doc.problem(("naming",), f"naming template cannot be filled in: {exc}")]
    return []


def _too_wide(format_spec: str) -> bool:
    return any(int(n) > 96 for n in re.findall(r"\d+", format_spec))


def _check_domains(spec: ManifestSpec, doc: YamlDocument) -> list[Problem]:
    problems = []
    ids = [d.id for d in spec.domains]
    for i, domain in enumerate(spec.domains):
        if ids.index(domain.id) != i:
            problems.append(doc.problem(("domains", i, "id"), f"duplicate domain id {domain.id!r}"))
        sel = domain.selection
        needs = {"interleave": ("with", sel.with_), "inverse": ("of", sel.of)}.get(sel.strategy)
        if needs:
            key, other = needs
            if other is None:
                problems.append(
                    doc.problem(
                        ("domains", i, "selection"),
                        f"strategy {sel.strategy!r} needs '{key}: <domain id>'",
                    )
                )
            elif other not in ids:
                hint = difflib.get_close_matches(other, ids, n=1)
                suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
                problems.append(
                    doc.problem(
                        ("domains", i, "selection", key), f"unknown domain {other!r}{suffix}"
                    )
                )
            elif other == domain.id:
                problems.append(
                    doc.problem(("domains", i, "selection", key), "a domain cannot name itself")
                )
        if sel.strategy != "inverse" and domain.statistics is None:
            problems.append(
                doc.problem(
                    ("domains", i),
                    f"domain {domain.id!r} needs 'statistics' for strategy {sel.strategy!r}",
                )
            )
    if not problems:
        problems += _check_cycles(spec, doc)
    return problems


def _check_cycles(spec: ManifestSpec, doc: YamlDocument) -> list[Problem]:
    refs = {
        d.id: d.selection.with_ if d.selection.strategy == "interleave" else d.selection.of
        for d in spec.domains
        if d.selection.strategy in ("interleave", "inverse")
    }
    for i, domain in enumerate(spec.domains):
        seen, cur = {domain.id}, refs.get(domain.id)
        while cur is not None:
            if cur in seen:
                return [
                    doc.problem(
                        ("domains", i, "selection"), "domains refer to each other in a cycle"
                    )
                ]
            seen.add(cur)
            cur = refs.get(cur)
    return []


def _check_statistics(
    path: Path, spec: ManifestSpec, config: dict[str, Any], doc: YamlDocument
) -> list[Problem]:
    problems = []
    for i, domain in enumerate(spec.domains):
        if domain.statistics is None:
            continue
        for suffix, message in check_statistics(domain.statistics, path.parent, config):
            problems.append(doc.problem(("domains", i, "statistics", *suffix), message))
    return problems


def _check_expansion(
    spec: ManifestSpec, config: dict[str, Any], doc: YamlDocument
) -> list[Problem]:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    problems = []
    seen_ids: dict[str, str] = {}
    seen_repos: dict[str, str] = {}
    domain_index = {d.id: i for i, d in enumerate(spec.domains)}
    for variant in expand_variants(spec, config):
        where = ("domains", domain_index[variant.domain])
        if variant.id in seen_ids:
            problems.append(doc.problem(where, f"duplicate variant id {variant.id!r}"))
        if variant.repo_id in seen_repos:
            problems.append(
                doc.problem(
                    ("naming",),
                    f"variants {seen_repos[variant.repo_id]!r} and {variant.id!r} get the same "
                    f"repo name {variant.repo_name!r}",
                )
            )
        seen_ids[variant.id] = variant.id
        seen_repos[variant.repo_id] = variant.id
        try:
            validate_repo_id(variant.repo_id)
            _check_hub_name(variant.repo_name)
        except (HFValidationError, ValueError) as exc:
            problems.append(
                doc.problem(
                    ("naming",),
                    f"variant {variant.id!r}: the Hub would refuse repo id "
                    f"{variant.repo_id!r}: {str(exc).splitlines()[0]}",
                )
            )
    return problems


def _check_hub_name(name: str) -> None:
    if len(name) > 96:
        raise ValueError(f"the name is {len(name)} characters long; the Hub allows 96")
    if name[0] in "-." or name[-1] in "-.":
        raise ValueError("a name cannot start or end with '-' or '.'")


def semantic_problems(
    path: Path, spec: ManifestSpec, base_config: dict[str, Any] | None, doc: YamlDocument
) -> list[Problem]:
    """Every problem the schema cannot see; most need the base config (None: unreadable)."""
    problems = _check_names(path, spec, doc)
    if base_config is not None:
        problems += _check_counts(spec, base_config, doc)
        problems += _check_family(spec, base_config, doc)
        problems += _check_naming(spec, doc)
        problems += _check_domains(spec, doc)
        problems += _check_template(path, spec, doc)
        problems += _check_evaluation(path, spec, doc)
        if not problems:
            problems += _check_statistics(path, spec, base_config, doc)
            problems += _check_expansion(spec, base_config, doc)
    return problems
