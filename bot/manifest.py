"""Release manifests: the schema, loading with located errors, and expansion into variants.

A manifest lists the domains and expert counts of one release of one base model. Loading
checks everything that can be checked offline and raises `InputError` with every problem
as `FILE:LINE:COL: message`. Expansion is pure: the same manifest always gives the same
variants, ids and repo names.

Example:
    >>> manifest = load_manifest("manifests/demo.yaml")          # doctest: +SKIP
    >>> [v.id for v in manifest.variants][:2]                    # doctest: +SKIP
    ['general-2', 'general-3']
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import string
import types
import typing
import urllib.parse
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bot.checkpoint import INDEX_FILE
from bot.errors import InputError, Problem
from bot.inputs import MAX_CONFIG_BYTES, loads_json, read_input_file
from bot.quality.spec import EvalTexts, EvaluationSpec, QualityFloor
from bot.selection.spec import SelectionSpec, StatisticsSpec
from bot.yamlsrc import YamlDocument, load_yaml

NAME_FIELDS = ("base_name", "domain", "experts", "params_b")
MAX_TEMPLATE_BYTES = 1024 * 1024
_ID = r"^[a-z0-9][a-z0-9_]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class BaseModelSpec(_Strict):
    """The model every variant is pruned from: a pinned Hub repo, optionally read locally.

    `repo` names the base model on cards and in provenance; `path`, when given, is a local
    copy of it to read instead of downloading `repo` at `revision`.
    """

    repo: str
    revision: str = "main"
    path: str | None = None
    config: str = Field(description="pinned copy of the base config.json, beside the manifest")

    @property
    def name(self) -> str:
        """The base model's short name, e.g. `gpt-oss-20b`."""
        return self.repo.split("/")[-1]


class OutputSpec(_Strict):
    """How pruned checkpoints are stored."""

    format: Literal["mxfp4", "bf16"] = "bf16"
    max_shard_bytes: int = Field(default=5 * 1024**3, ge=1024 * 1024)


class HubSpec(_Strict):
    """Where variants are published."""

    namespace: str
    visibility: Literal["public", "private"] = "public"
    endpoint: str | None = None
    collections: list[str] = Field(default_factory=list)


class ExpertCounts(_Strict):
    """Expert counts per layer: an explicit list, or a `min`..`max` range (inclusive)."""

    counts: list[int] | None = None
    min: int | None = None
    max: int | None = None
    step: int = Field(default=1, ge=1)
    exclude: list[int] = Field(default_factory=list)

    @model_validator(mode="after")
    def _list_or_range(self) -> ExpertCounts:
        has_range = self.min is not None or self.max is not None
        if self.counts is not None and has_range:
            raise ValueError("give either 'counts' or 'min'/'max', not both")
        if self.counts is None and (self.min is None or self.max is None):
            raise ValueError("give 'counts' or both 'min' and 'max'")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"'min' ({self.min}) is above 'max' ({self.max})")
        return self

    def values(self) -> list[int]:
        """The counts, ascending, without the excluded ones."""
        if self.counts is not None:
            raw = self.counts
        else:
            assert self.min is not None and self.max is not None
            raw = list(range(self.min, self.max + 1, self.step))
        return sorted(set(raw) - set(self.exclude))


class CardSpec(_Strict):
    """What the model card says beyond the computed facts."""

    template: str = "../templates/model_card.md.j2"
    license: str = Field(default="apache-2.0", description="a Hub licence id, or 'other'")
    license_name: str | None = Field(default=None, description="with license: other")
    license_link: str | None = Field(default=None, description="with license: other")
    language: list[str] = Field(default_factory=lambda: ["en"])
    tags: list[str] = Field(default_factory=list)
    datasets: list[str] = Field(default_factory=list)
    statistics_credit: str | None = None
    citation: str | None = None
    rebuild_note: str | None = Field(
        default=None,
        description="said on the card above its rebuild command: what rebuilding needs "
        "beyond a checkout (e.g. a local Hub holding the base model)",
    )


class GenerationSpec(_Strict):
    """Settings of the example runs shown on each card."""

    max_new_tokens: int = Field(default=512, ge=1, le=32768)
    reasoning_effort: Literal["low", "medium", "high"] = "medium"
    sampling: Literal["greedy", "seeded"] = "greedy"
    seed: int = 0
    temperature: float = Field(default=1.0, gt=0)
    top_p: float = Field(default=1.0, gt=0, le=1)


class CiSpec(_Strict):
    """Runner labels for the CI jobs that build variants."""

    runner: str = "ubuntu-latest"
    runners: dict[str, str] = Field(default_factory=dict, description="domain id -> label")


class DomainSpec(_Strict):
    """One domain of the release: its text, statistics, selection rule and examples."""

    id: str = Field(pattern=_ID)
    title: str
    description: str
    statistics: StatisticsSpec | None = None
    selection: SelectionSpec = Field(default_factory=SelectionSpec)
    experts: ExpertCounts | None = None
    examples: list[str] = Field(min_length=1)
    evaluation: EvalTexts | None = None


class ManifestSpec(_Strict):
    """The whole manifest file."""

    base: BaseModelSpec
    naming: str
    hub: HubSpec
    experts: ExpertCounts
    domains: list[DomainSpec] = Field(min_length=1)
    output: OutputSpec = Field(default_factory=OutputSpec)
    card: CardSpec = Field(default_factory=CardSpec)
    generation: GenerationSpec = Field(default_factory=GenerationSpec)
    ci: CiSpec = Field(default_factory=CiSpec)
    evaluation: EvaluationSpec | None = None
    quality: QualityFloor | None = None


@dataclass(frozen=True)
class Variant:
    """One repo of the release: a domain at an expert count."""

    id: str
    domain: str
    experts: int
    repo_name: str
    repo_id: str
    total_params: int


@dataclass(frozen=True)
class Manifest:
    """A loaded, validated manifest with its base config."""

    path: Path
    spec: ManifestSpec
    base_config: dict[str, Any]
    digest: str
    document: YamlDocument

    def resolve(self, relative: str) -> Path:
        """A path named in the manifest, taken relative to the manifest's folder."""
        return (self.path.parent / relative).resolve()

    def domain(self, domain_id: str) -> DomainSpec:
        for domain in self.spec.domains:
            if domain.id == domain_id:
                return domain
        raise KeyError(domain_id)

    @cached_property
    def variants(self) -> list[Variant]:
        """Every variant, domain by domain in manifest order, counts ascending."""
        return _expand(self.spec, self.base_config)

    def variant(self, variant_id: str) -> Variant:
        for variant in self.variants:
            if variant.id == variant_id:
                return variant
        choices = difflib.get_close_matches(variant_id, [v.id for v in self.variants], n=1)
        hint = f" (did you mean {choices[0]!r}?)" if choices else ""
        raise InputError(f"{self.path}: no variant {variant_id!r}{hint}")


def load_manifest(path: str | Path) -> Manifest:
    """Load and fully validate a manifest; raise `InputError` listing every problem."""
    path = Path(path)
    doc = load_yaml(path)
    try:
        spec = ManifestSpec.model_validate(doc.data)
    except ValidationError as exc:
        raise InputError(_located(exc, doc)) from None
    base_config, problems = _read_base_config(path, spec, doc)
    problems += _check_names(path, spec, doc)
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
    if problems:
        raise InputError(problems)
    return Manifest(
        path=path,
        spec=spec,
        base_config=base_config or {},
        digest=hashlib.sha256(path.read_bytes()).hexdigest(),
        document=doc,
    )


def manifest_json_schema() -> dict[str, Any]:
    """JSON Schema of the manifest format, for editors."""
    schema = ManifestSpec.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "hubbot release manifest"
    return schema


# ---------------------------------------------------------------- expansion


def format_params_b(total_params: int) -> str:
    """Parameters in billions with one decimal, as in the published names (`11.4`)."""
    return f"{total_params / 1e9:.1f}"


def _expand(spec: ManifestSpec, base_config: dict[str, Any]) -> list[Variant]:
    from bot.stats import parameter_counts

    counts = parameter_counts(base_config)
    variants = []
    for domain in spec.domains:
        for experts in (domain.experts or spec.experts).values():
            total = counts.total_for(experts)
            name = spec.naming.format(
                base_name=spec.base.name,
                domain=domain.id,
                experts=experts,
                params_b=format_params_b(total),
            )
            variants.append(
                Variant(
                    id=f"{domain.id}-{experts}",
                    domain=domain.id,
                    experts=experts,
                    repo_name=name,
                    repo_id=f"{spec.hub.namespace}/{name}",
                    total_params=total,
                )
            )
    return variants


# ---------------------------------------------------------------- checks


def _read_base_config(
    path: Path, spec: ManifestSpec, doc: YamlDocument
) -> tuple[dict[str, Any] | None, list[Problem]]:
    from bot.descriptors import descriptor_for
    from bot.stats import parameter_counts

    where = ("base", "config")
    config_path = path.parent / spec.base.config
    if not config_path.exists():
        return None, [doc.problem(where, f"base config snapshot {config_path} does not exist")]
    try:
        config = loads_json(read_input_file(config_path, limit=MAX_CONFIG_BYTES), config_path)
    except InputError as exc:
        return None, [doc.problem(where, f"cannot read base config: {exc}")]
    if not isinstance(config, dict):
        return None, [doc.problem(where, f"{config_path} is not a JSON object")]
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
    from bot.quality.check import check_evaluation

    return [doc.problem(where, message) for where, message in check_evaluation(spec, path.parent)]


def _check_template(path: Path, spec: ManifestSpec, doc: YamlDocument) -> list[Problem]:
    from bot.card import check_template

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
    from bot.card import HUB_LICENSES

    problems = []
    if not _is_repo_id(spec.base.repo, owner=False):
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
        if not _is_repo_id(dataset, owner=True):
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


def _is_repo_id(value: str, *, owner: bool) -> bool:
    """Whether the Hub accepts `value` as a repo id (`owner/name`; `name` alone if not `owner`)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if value.count("/") != 1 and (owner or "/" in value):
        return False
    try:
        validate_repo_id(value)
    except HFValidationError:
        return False
    return True


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
    from bot.descriptors import descriptor_for

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
    from bot.descriptors import descriptor_for
    from bot.families.hooks import chat_format

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
    from bot.selection.check import check_statistics

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
    for variant in _expand(spec, config):
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


# ---------------------------------------------------------------- error locations


def _located(exc: ValidationError, doc: YamlDocument) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = _doc_path(err["loc"], doc)
        shown = _dotted(err["loc"], doc)
        if err["type"] == "extra_forbidden":
            key = str(err["loc"][-1])
            known = _fields_at(ManifestSpec, [c for c in err["loc"][:-1]])
            hint = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            suffix = f"; did you mean {hint[0]!r}?" if hint else ""
            message = f"unknown key {key!r}{suffix}"
            problems.append(doc.problem(loc, message, key=True))
            continue
        message = err["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        if err["type"] == "missing":
            message = f"missing required key {str(err['loc'][-1])!r}"
        problems.append(doc.problem(loc, f"{shown}: {message}" if shown else message))
    return problems


def _doc_path(loc: tuple[Any, ...], doc: YamlDocument) -> tuple[str | int, ...]:
    """Map a pydantic location onto the document, skipping union tags and aliases."""
    path: tuple[str | int, ...] = ()
    for comp in loc:
        candidate = (*path, comp)
        if candidate in doc.values or candidate in doc.keys:
            path = candidate
        elif comp == "with_" and (*path, "with") in doc.values:
            path = (*path, "with")
    return path


def _dotted(loc: tuple[Any, ...], doc: YamlDocument) -> str:
    out = ""
    path: tuple[str | int, ...] = ()
    for comp in loc:
        candidate = (*path, comp)
        if isinstance(comp, int):
            out += f"[{comp}]"
        elif candidate in doc.values or comp == loc[-1]:
            out += f".{'with' if comp == 'with_' else comp}" if out else str(comp)
        else:
            continue
        path = candidate
    return out


def _fields_at(model: type[BaseModel], loc: list[Any]) -> list[str]:
    """Field names (and aliases) a mapping at `loc` may hold, for did-you-mean hints."""
    models = [model]
    for comp in loc:
        if isinstance(comp, int):
            continue
        nxt: list[type[BaseModel]] = []
        for m in models:
            field = m.model_fields.get(comp) or next(
                (f for f in m.model_fields.values() if f.alias == comp), None
            )
            if field is not None:
                nxt += _models_in(field.annotation)
        if nxt:
            models = nxt
    names: list[str] = []
    for m in models:
        names += [f.alias or n for n, f in m.model_fields.items()]
    return names


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _models_in(typing.get_args(annotation)[0])
    if origin in (list, dict, typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found += _models_in(arg)
    return found
