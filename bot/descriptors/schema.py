"""The schema of a family file (`bot/families/<model_type>.yaml`) and its reading.

One pydantic model checks a file (unknown keys are errors, so a typo never passes
silently) and turns it into a `ModelDescriptor`. A tensor is written
`{name: ..., shape: [...]}` with optional `dtype`, `stands_for`, `packing` and
`present_if`; names use `{layer_idx}` (and `{expert_idx}` in per-expert layouts); shapes
are expressions over config keys and `experts` (see `bot.descriptors.base`).

Example:
    >>> from bot.descriptors.schema import read_family
    >>> read_family(FAMILIES / "qwen3_moe.yaml").router_module     # doctest: +SKIP
    'model.layers.{layer_idx}.mlp.gate'
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.descriptors.base import (
    ExpertLayout,
    ExtraLayers,
    Groups,
    ModelDescriptor,
    MoeLayers,
    TensorSpec,
)

FAMILIES = Path(__file__).resolve().parent.parent / "families"
"""The folder of family files."""

ROUTER_KINDS = ("topk_softmax", "softmax_topk", "sigmoid_grouped")
CHAT_FORMATS = ("harmony", "template")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorEntry(_Strict):
    name: str
    shape: list[str | int]
    dtype: str | None = None
    stands_for: str | None = None
    packing: Literal["plain", "blocks", "scales"] = "plain"
    present_if: str | None = None
    buffer: bool = False
    embedding: bool = False

    def spec(self) -> TensorSpec:
        return TensorSpec(
            name=self.name,
            shape=tuple(str(dim) for dim in self.shape),
            dtype=self.dtype,
            stands_for=self.stands_for,
            packing=self.packing,
            present_if=self.present_if,
            buffer=self.buffer,
            embedding=self.embedding,
        )


class LayoutEntry(_Strict):
    name: str
    per_expert: bool = False
    quant_method: str | None = None
    tensors: list[TensorEntry]


class ConfigKeys(_Strict):
    layers: str
    experts: list[str] = Field(min_length=1)
    top_k: list[str] = Field(min_length=1)
    groups: dict[Literal["count", "top_k"], str] | None = None
    defaults: dict[str, int | bool | str | list[int]] = {}


class MoeLayerKeys(_Strict):
    first_dense: str | None = None
    dense_list: str | None = None
    step: str | None = None


class ExtraLayersEntry(_Strict):
    count: str
    prefix: str


class RouterEntry(_Strict):
    module: str
    kind: Literal["topk_softmax", "softmax_topk", "sigmoid_grouped"]
    tensors: list[TensorEntry]


class TensorGroups(_Strict):
    model: list[TensorEntry] = []
    layer: list[TensorEntry] = []
    dense_mlp: list[TensorEntry] = []
    shared: list[TensorEntry] = []


class ExpertsEntry(_Strict):
    axis: int = 0
    dequantized: str
    layouts: list[LayoutEntry] = Field(min_length=1)


class FamilyFile(_Strict):
    """One family file."""

    model_type: str
    title: str
    architectures: list[str] = Field(min_length=1)
    chat_format: Literal["harmony", "template"]
    config: ConfigKeys
    moe_layers: MoeLayerKeys = MoeLayerKeys()
    extra_layers: ExtraLayersEntry | None = None
    router: RouterEntry
    tensors: TensorGroups
    experts: ExpertsEntry

    def descriptor(self) -> ModelDescriptor:
        groups = self.config.groups
        defaults = tuple(
            (k, tuple(v) if isinstance(v, list) else v) for k, v in self.config.defaults.items()
        )
        return ModelDescriptor(
            model_type=self.model_type,
            title=self.title,
            architectures=tuple(self.architectures),
            router_module=self.router.module,
            router_kind=self.router.kind,
            router_tensors=tuple(t.spec() for t in self.router.tensors),
            layouts=tuple(
                ExpertLayout(
                    name=layout.name,
                    tensors=tuple(t.spec() for t in layout.tensors),
                    per_expert=layout.per_expert,
                    quant_method=layout.quant_method,
                )
                for layout in self.experts.layouts
            ),
            layer_tensors=tuple(t.spec() for t in self.tensors.layer),
            model_tensors=tuple(t.spec() for t in self.tensors.model),
            dense_tensors=tuple(t.spec() for t in self.tensors.dense_mlp),
            shared_tensors=tuple(t.spec() for t in self.tensors.shared),
            config_defaults=defaults,
            expert_axis=self.experts.axis,
            num_layers_key=self.config.layers,
            experts_keys=tuple(self.config.experts),
            top_k_keys=tuple(self.config.top_k),
            groups=Groups(count=groups["count"], top_k=groups["top_k"]) if groups else None,
            moe_layers=MoeLayers(**self.moe_layers.model_dump()),
            extra_layers=ExtraLayers(**self.extra_layers.model_dump())
            if self.extra_layers
            else None,
            dequantized_layout=self.experts.dequantized,
            chat_format=self.chat_format,
        )


def read_family(path: Path) -> ModelDescriptor:
    """The descriptor a family file describes; `ValueError` naming the file if it is broken."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        family = FamilyFile.model_validate(data)
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ValueError(f"{path}: not a valid family file: {exc}") from None
    if family.model_type != path.stem:
        raise ValueError(f"{path}: model_type {family.model_type!r} differs from the file name")
    try:
        return family.descriptor()
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def family_files() -> list[Path]:
    """Every family file, sorted."""
    return sorted(FAMILIES.glob("*.yaml"))
