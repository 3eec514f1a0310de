"""The manifest's schema: pydantic models of every block a release manifest may hold.

Pure data: a model here checks what one field can check alone (types, ranges, ids);
checks that need the base config or other files are in `bot.manifest.checks`. Each
stage's own block (selection, statistics, evaluation, quality floor) is defined by that
stage (`bot.selection.spec`, `bot.quality.spec`) and composed here.

Example:
    >>> ManifestSpec.model_validate(yaml.safe_load(text)).hub.namespace  # doctest: +SKIP
    'hubbot'
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bot.generation import GenerationSpec
from bot.quality.spec import EvalTexts, EvaluationSpec, QualityFloor
from bot.selection.spec import SelectionSpec, StatisticsSpec

NAME_FIELDS = ("base_name", "domain", "experts", "params_b")
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


def manifest_json_schema() -> dict[str, Any]:
    """JSON Schema of the manifest format, for editors."""
    schema = ManifestSpec.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "hubbot release manifest"
    return schema
