"""What a model descriptor is: the names, shapes and config keys of a MoE family, as data.

The pruning engine (`bot.prune`), the structure check (`bot.verify`) and the parameter
counts (`bot.stats`) read only these records; adding a model family is writing one
`ModelDescriptor`. Name templates hold
`{layer_idx}` and, in one-module-per-expert layouts, `{expert_idx}`. Shapes are tuples of
small expressions over config keys (`"num_local_experts"`, `"2*intermediate_size"`,
`"hidden_size/32"`), so a shape is checked against the config without importing a model;
a test keeps the whole table equal to what transformers builds on the meta device.

Example:
    >>> from bot.descriptors import descriptor_for
    >>> d = descriptor_for({"model_type": "gpt_oss"})
    >>> d.router_module.format(layer_idx=3)
    'model.layers.3.mlp.router'
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

from bot.errors import InputError

Packing = Literal["plain", "blocks", "scales"]

MAX_LAYERS = 1024
MAX_EXPERTS = 16384
MAX_SIZE = 1 << 24
"""Bounds on config values (layers, experts, any dimension): beyond them, not a model."""
_TERM = re.compile(r"^(\d+|[A-Za-z_][A-Za-z0-9_]*)$")


@dataclass(frozen=True)
class TensorSpec:
    """One stored tensor: a name template, its shape over config keys, and how it is stored.

    `dtype` is the safetensors dtype it must have (`None`: the model's floating dtype).
    `stands_for` names the transformers tensor it stores when the name differs (packed
    MXFP4 parts, per-expert modules); `packing` says which MXFP4 part it is. `present_if`
    names a boolean config key the tensor exists under (`"!key"`: exists unless it is set).
    """

    name: str
    shape: tuple[str, ...]
    dtype: str | None = None
    stands_for: str | None = None
    packing: Packing = "plain"
    present_if: str | None = None

    def tensor_name(self, layer: int, expert: int | None = None) -> str:
        """The stored name in one layer (and, for per-expert layouts, of one expert)."""
        if expert is None:
            return self.name.format(layer_idx=layer)
        return self.name.format(layer_idx=layer, expert_idx=expert)

    def model_name(self, layer: int) -> str:
        """The transformers parameter this tensor stores (part of)."""
        return (self.stands_for or self.name).format(layer_idx=layer)

    def resolve_shape(self, config: dict[str, Any], **overrides: int) -> tuple[int, ...]:
        """The shape this config implies; `overrides` replace config keys (e.g. expert count)."""
        return tuple(evaluate_dim(dim, config, overrides) for dim in self.shape)


@dataclass(frozen=True)
class ExpertLayout:
    """One way a checkpoint stores a layer's experts.

    Fused layouts hold every expert in one tensor along `ModelDescriptor.expert_axis`;
    per-expert layouts hold one set of `tensors` per expert, named with `{expert_idx}`.
    `quant_method` is the `quantization_config.quant_method` a config of this layout has.
    """

    name: str
    tensors: tuple[TensorSpec, ...]
    per_expert: bool = False
    quant_method: str | None = None

    @property
    def quantized(self) -> bool:
        return self.quant_method is not None


@dataclass(frozen=True)
class ModelDescriptor:
    """A MoE model family as data: where its routers and experts live, and its config keys.

    `layer_tensors` are the other tensors of every layer (attention, norms) and
    `model_tensors` those outside the layers (embeddings, final norm, head); with the
    router and the dequantized layout they are every tensor the model has.
    `config_defaults` are what the model class assumes for keys a config may leave out.
    """

    model_type: str
    router_module: str
    router_tensors: tuple[TensorSpec, ...]
    layouts: tuple[ExpertLayout, ...]
    layer_tensors: tuple[TensorSpec, ...] = ()
    model_tensors: tuple[TensorSpec, ...] = ()
    config_defaults: tuple[tuple[str, int | bool], ...] = ()
    expert_axis: int = 0
    num_layers_key: str = "num_hidden_layers"
    num_experts_key: str = "num_local_experts"
    top_k_keys: tuple[str, ...] = ("num_experts_per_tok",)
    dequantized_layout: str = "bf16"

    def __post_init__(self) -> None:
        problems = []
        if "{layer_idx}" not in self.router_module:
            problems.append("router_module lacks {layer_idx}")
        for spec in (*self.router_tensors, *self.layer_tensors):
            if "{layer_idx}" not in spec.name:
                problems.append(f"{spec.name} lacks {{layer_idx}}")
        for spec in self.model_tensors:
            if "{" in spec.name:
                problems.append(f"{spec.name}: a model tensor has no {{layer_idx}}")
        for layout in self.layouts:
            for spec in layout.tensors:
                if "{layer_idx}" not in spec.name:
                    problems.append(f"{spec.name} lacks {{layer_idx}}")
                if layout.per_expert != ("{expert_idx}" in spec.name):
                    problems.append(f"{spec.name}: {{expert_idx}} must appear iff per-expert")
        names = [layout.name for layout in self.layouts]
        if self.dequantized_layout not in names or len(set(names)) != len(names):
            problems.append(f"layouts {names} must be unique and include {self.dequantized_layout}")
        if not self.top_k_keys:
            problems.append("top_k_keys is empty")
        if problems:
            raise ValueError(f"descriptor {self.model_type}: " + "; ".join(problems))

    def layout(self, name: str) -> ExpertLayout:
        """The layout called `name`."""
        for layout in self.layouts:
            if layout.name == name:
                return layout
        raise KeyError(name)

    def detect_layout(self, config: dict[str, Any], names: Collection[str]) -> ExpertLayout:
        """The layout a checkpoint uses: its config's quantization method, then its names.

        Among layouts of the config's `quant_method`, the first whose layer-0 tensors are
        all present wins; failing that, the one with most present (the caller reports what
        is missing).
        """
        quant = config.get("quantization_config")
        method = quant.get("quant_method") if isinstance(quant, dict) else None
        candidates = [layout for layout in self.layouts if layout.quant_method == method]
        if not candidates:
            raise InputError(f"config: {self.model_type} has no layout for quant_method {method}")

        def present(layout: ExpertLayout) -> int:
            expert = 0 if layout.per_expert else None
            return sum(spec.tensor_name(0, expert) in names for spec in layout.tensors)

        return max(candidates, key=lambda layout: present(layout) / len(layout.tensors))

    def num_layers(self, config: dict[str, Any]) -> int:
        return _int_key(config, self.num_layers_key, MAX_LAYERS)

    def num_experts(self, config: dict[str, Any]) -> int:
        return _int_key(config, self.num_experts_key, MAX_EXPERTS)

    def top_k(self, config: dict[str, Any]) -> int:
        """Experts each token is routed to (the first top-k key the config has)."""
        for key in self.top_k_keys:
            if key in config:
                return _int_key(config, key)
        raise InputError(f"config has none of {', '.join(self.top_k_keys)}")

    def config_with_defaults(self, config: dict[str, Any]) -> dict[str, Any]:
        """`config` with the model class's defaults for the keys it leaves out."""
        return {**dict(self.config_defaults), **config}

    def dequantized_shapes(
        self, config: dict[str, Any], experts: int | None = None
    ) -> dict[str, tuple[int, ...]]:
        """Name -> shape of every tensor of the dequantized model, in transformers' names.

        `experts` replaces the config's expert count (the counts of a pruned variant).
        """
        config = self.config_with_defaults(config)
        overrides = {} if experts is None else {self.num_experts_key: experts}
        shapes = {}
        per_layer = (
            *self.layer_tensors,
            *self.router_tensors,
            *self.layout(self.dequantized_layout).tensors,
        )
        for layer in range(self.num_layers(config)):
            for spec in per_layer:
                if _present(spec, config):
                    shapes[spec.tensor_name(layer)] = spec.resolve_shape(config, **overrides)
        for spec in self.model_tensors:
            if _present(spec, config):
                shapes[spec.name] = spec.resolve_shape(config, **overrides)
        return shapes

    def stored_shapes(
        self, config: dict[str, Any], layout: ExpertLayout, experts: int | None = None
    ) -> dict[str, tuple[tuple[int, ...], str | None]]:
        """Name -> (shape, safetensors dtype or None: floating) a checkpoint in `layout` holds."""
        expected: dict[str, tuple[tuple[int, ...], str | None]] = {
            name: (shape, None) for name, shape in self.dequantized_shapes(config, experts).items()
        }
        if layout.name == self.dequantized_layout:
            return expected
        config = self.config_with_defaults(config)
        overrides = {} if experts is None else {self.num_experts_key: experts}
        count = self.num_experts(config) if experts is None else experts
        indices = range(count) if layout.per_expert else [None]
        for layer in range(self.num_layers(config)):
            for spec in layout.tensors:
                expected.pop(spec.model_name(layer), None)
            for spec in layout.tensors:
                shape = spec.resolve_shape(config, **overrides)
                for expert in indices:
                    expected[spec.tensor_name(layer, expert)] = (shape, spec.dtype)
        return expected

    def rewrite_config(
        self, config: dict[str, Any], experts: int, *, drop_quantization: bool = False
    ) -> dict[str, Any]:
        """A copy of `config` for a checkpoint keeping `experts` experts per layer.

        Every top-k key the config has gets the same value, at most `experts`.
        """
        top_k = min(self.top_k(config), experts)
        out = dict(config)
        out[self.num_experts_key] = experts
        for key in self.top_k_keys:
            if key in out:
                out[key] = top_k
        if drop_quantization:
            out.pop("quantization_config", None)
        return out


def _present(spec: TensorSpec, config: dict[str, Any]) -> bool:
    if spec.present_if is None:
        return True
    key = spec.present_if.removeprefix("!")
    value = config.get(key)
    if not isinstance(value, bool):
        raise InputError(f"config: {key} must be true or false, got {value!r}")
    return value != spec.present_if.startswith("!")


def evaluate_dim(expr: str, config: dict[str, Any], overrides: dict[str, int]) -> int:
    """Evaluate a dimension such as `"2*intermediate_size"` or `"hidden_size/32"`."""
    tokens = re.split(r"([*/])", expr.replace(" ", ""))
    value = _term(tokens[0], config, overrides, expr)
    for op, raw in zip(tokens[1::2], tokens[2::2], strict=True):
        term = _term(raw, config, overrides, expr)
        if op == "*":
            value *= term
        elif term == 0 or value % term:
            raise InputError(f"config: {expr} = {value}/{term} is not a whole number")
        else:
            value //= term
    return value


def _term(raw: str, config: dict[str, Any], overrides: dict[str, int], expr: str) -> int:
    if not _TERM.match(raw):
        raise ValueError(f"bad shape expression {expr!r}")
    if raw.isdigit():
        return int(raw)
    if raw in overrides:
        return overrides[raw]
    return _int_key(config, raw)


def _int_key(config: dict[str, Any], key: str, most: int = MAX_SIZE) -> int:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"config: {key} must be an integer, got {value!r}")
    if not 1 <= value <= most:
        raise InputError(f"config: {key} = {value} is outside 1..{most:,}")
    return value
