"""`hubbot.json`: the provenance record published in every repo.

It says where a variant came from (manifest entry, base files, kept experts), what it is
(statistics) and what it did (example runs). A card can be re-rendered from it alone, and
`plan` compares its digests with the manifest's to decide what a repo needs.

Stages fill it in turn: the pruner writes `base`, `selection`, `files`; `build` adds
`stats`, `examples`, `release` and `digests`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from bot.errors import InputError
from bot.quality.spec import QualityFloor

FILENAME = "hubbot.json"
SCHEMA_VERSION = 1


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BaseRef(_Record):
    """The base checkpoint read: repo (or local path), revision, sha256 of each file read."""

    repo: str
    revision: str | None = None
    files: dict[str, str] = Field(default_factory=dict)


class RoutingCoverage(_Record):
    """Share of the base model's top-k routing decisions that land on kept experts."""

    per_layer: list[float]
    mean: float


class SelectionRecord(_Record):
    """Which experts each layer keeps, and why."""

    strategy: str
    statistics_source: str
    statistics_digest: str
    kept_experts: dict[str, list[int]] = Field(description="layer -> sorted original indices")
    scores: dict[str, list[float]] = Field(
        default_factory=dict, description="layer -> score of each kept expert, same order"
    )
    routing_coverage: RoutingCoverage | None = None

    def keep(self) -> dict[int, list[int]]:
        """The kept experts as the pruner's keep list: layer number -> experts."""
        return {int(layer): list(experts) for layer, experts in self.kept_experts.items()}


class ModelStats(_Record):
    """Facts computed from config.json and safetensors headers, never typed in."""

    total_params: int
    active_params: int
    params_per_expert: int
    expert_params_kept_share: float
    size_bytes: int
    layers: int
    experts_before: int
    experts_after: int
    top_k: int
    context_length: int
    query_heads: int
    kv_heads: int
    hidden_size: int
    attention_pattern: str
    positional_encoding: str
    norm: str
    storage_format: str
    model_type: str | None = Field(
        default=None, description="the base's config model_type (absent in older records)"
    )


class ExampleRecord(_Record):
    """One prompt's run."""

    prompt: str
    completion: str
    analysis: str | None = None
    final: str | None = None
    finished: bool
    prompt_tokens: int
    completion_tokens: int
    tokens_per_second: float


class ExampleRun(_Record):
    """All example prompts of one variant, generated together."""

    device: str
    dtype: str
    dequantized: bool = False
    settings: dict[str, Any]
    versions: dict[str, str]
    wall_seconds: float
    examples: list[ExampleRecord]


class TextFigures(_Record):
    """A variant measured against its base on one text set (see `bot.quality.evaluate`)."""

    kl: float = Field(description="mean KL(base || variant), nats per scored token")
    top1: float = Field(description="share of positions where both rank the same token first")
    perplexity: float
    base_perplexity: float
    tokens: int = Field(description="scored next-token positions")


class EvalTextRecord(_Record):
    """What a text set was made from, and digests of what was read and scored."""

    source: str
    texts: int
    tokens: int
    text_digest: str = Field(description="sha256 of the texts read, as a JSON list")
    tokens_digest: str = Field(description="sha256 of the scored token windows, as JSON")


class QualityPoint(_Record):
    """One variant's figures: on its domain's evaluation text and on the general text."""

    variant: str
    domain: str
    experts: int
    domain_text: TextFigures | None = None
    general_text: TextFigures | None = None


class Quality(_Record):
    """How close the variant (and, for its card, the whole release) stays to the base.

    Measured in one run over the release, base model loaded once, each variant by masking
    the removed experts' router logits. `texts` holds each text set by name (`general`, or
    `domain:<id>`); `family` every variant measured in the run, in manifest order.
    """

    method: str = "router-mask"
    device: str
    dtype: str
    attention: str | None = Field(default=None, description="the attention kernels it ran")
    versions: dict[str, str]
    tokens: int = Field(description="token budget per text set")
    sequence_length: int
    batch_size: int
    texts: dict[str, EvalTextRecord]
    family: list[QualityPoint]
    command: str = Field(description="the command that measures these figures again")

    def point(self, variant_id: str) -> QualityPoint | None:
        return next((p for p in self.family if p.variant == variant_id), None)


class VariantRef(_Record):
    id: str
    domain: str
    experts: int
    repo_id: str


class DomainInfo(_Record):
    id: str
    title: str
    description: str


class ReleaseInfo(_Record):
    """The manifest's words a card needs (so a card renders from `hubbot.json` alone)."""

    base_model: str
    domain: DomainInfo
    license: str
    license_name: str | None = None
    license_link: str | None = None
    language: list[str]
    tags: list[str]
    datasets: list[str]
    statistics_credit: str | None = None
    citation: str | None = None
    rebuild_note: str | None = None
    manifest: str = Field(description="manifest path, for the reproduce command")
    generation: dict[str, Any] = Field(default_factory=dict)
    quality_floor: QualityFloor | None = Field(
        default=None, description="the release's floor: variants below it are held back"
    )

    @model_serializer(mode="wrap")
    def _without_unset_floor(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """No `quality_floor` key without a floor: the records (and card digests) of
        releases that set none stay as they were."""
        data = handler(self)
        if data.get("quality_floor") is None:
            data.pop("quality_floor", None)
        return data


class Digests(_Record):
    """What `plan` compares: `weights` changes need a rebuild, `card` ones a new card."""

    weights: str
    card: str


class Provenance(_Record):
    """The whole `hubbot.json`."""

    schema_version: int = SCHEMA_VERSION
    tool_version: str
    variant: VariantRef | None = None
    manifest_digest: str | None = None
    digests: Digests | None = None
    base: BaseRef
    output_format: str
    selection: SelectionRecord
    files: dict[str, str] = Field(default_factory=dict, description="output file -> sha256")
    stats: ModelStats | None = None
    examples: ExampleRun | None = None
    quality: Quality | None = None
    release: ReleaseInfo | None = None

    def dumps(self) -> str:
        """Canonical JSON text: sorted keys, two-space indent, trailing newline."""
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"


def write_provenance(folder: Path, record: Provenance) -> Path:
    """Write `hubbot.json` into `folder` and return its path."""
    path = folder / FILENAME
    path.write_text(record.dumps(), encoding="utf-8")
    return path


def read_provenance(path: Path) -> Provenance:
    """Read a `hubbot.json` (or the one inside a folder); `InputError` if it is not valid."""
    if path.is_dir():
        path = path / FILENAME
    try:
        return Provenance.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise InputError(f"{path}: cannot read provenance: {exc.strerror}") from None
    except ValueError as exc:
        first = str(exc).splitlines()
        raise InputError(f"{path}: not a valid {FILENAME}: {' '.join(first[:3])}") from None
