"""What a model descriptor is: the names, shapes and config keys of a MoE family, as data.

The engine (pruning, structure check, parameter counts, statistics, selection, calibration,
examples, card) reads only these records; each is built from one data file in
`bot/families/` (see `bot.descriptors.schema`), so adding a model family is writing one
file. Name templates hold `{layer_idx}` and, in one-module-per-expert layouts,
`{expert_idx}`. Shapes are tuples of small integer expressions over config keys and the
symbol `experts` (the expert count): `"2*intermediate_size"`, `"hidden_size/32"`,
`"num_attention_heads*(qk_nope_head_dim+qk_rope_head_dim)"`, so a shape is checked against
the config without importing a model; a test keeps each family's table equal to what
transformers builds on the meta device.

Example:
    >>> from bot.descriptors import descriptor_for
    >>> d = descriptor_for({"model_type": "gpt_oss"})
    >>> d.router_module.format(layer_idx=3)
    'model.layers.3.mlp.router'
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from bot.errors import InputError

Packing = Literal["plain", "blocks", "scales"]
ConfigValue = int | bool | str | None | tuple[int, ...]

MAX_LAYERS = 1024
MAX_EXPERTS = 16384
MAX_SIZE = 1 << 24
"""Bounds on config values (layers, experts, any dimension): beyond them, not a model."""

EXPERTS = "experts"
"""The shape symbol for the number of experts per MoE layer (whatever the config calls it)."""


@dataclass(frozen=True)
class TensorSpec:
    """One stored tensor: a name template, its shape over config keys, and how it is stored.

    `dtype` is the safetensors dtype it must have (`None`: the model's floating dtype).
    `stands_for` names the transformers tensor it stores when the name differs (packed
    MXFP4 parts, per-expert modules); `packing` says which MXFP4 part it is. `present_if`
    names a config key the tensor exists under (`"!key"`: exists unless it is set); a key
    is set when it is true, a non-zero number or a non-empty value. A `buffer` is stored but
    is not a parameter (DeepSeek's `e_score_correction_bias`): it is not counted. The
    `embedding` (input token embeddings) is not counted among a token's active parameters.
    """

    name: str
    shape: tuple[str, ...]
    dtype: str | None = None
    stands_for: str | None = None
    packing: Packing = "plain"
    present_if: str | None = None
    buffer: bool = False
    embedding: bool = False

    def tensor_name(self, layer: int, expert: int | None = None) -> str:
        """The stored name in one layer (and, for per-expert layouts, of one expert)."""
        if expert is None:
            return self.name.format(layer_idx=layer)
        return self.name.format(layer_idx=layer, expert_idx=expert)

    def model_name(self, layer: int) -> str:
        """The transformers parameter this tensor stores (part of)."""
        return (self.stands_for or self.name).format(layer_idx=layer)

    def resolve_shape(self, config: dict[str, Any], **overrides: int) -> tuple[int, ...]:
        """The shape this config implies; `overrides` give symbols (`experts`) or replace keys."""
        return tuple(evaluate_dim(dim, config, overrides) for dim in self.shape)

    def present(self, config: dict[str, Any]) -> bool:
        """Whether a model of `config` has this tensor."""
        if self.present_if is None:
            return True
        key = self.present_if.removeprefix("!")
        return bool(config.get(key)) != self.present_if.startswith("!")


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
class MoeLayers:
    """Which layers hold experts, as config keys (each optional; none: every layer).

    A layer is dense when its index is below `first_dense` (DeepSeek's
    `first_k_dense_replace`), is listed in `dense_list` (Qwen's `mlp_only_layers`), or when
    `(index + 1)` is not a multiple of `step` (Qwen's `decoder_sparse_step`).
    """

    first_dense: str | None = None
    dense_list: str | None = None
    step: str | None = None

    def keys(self) -> tuple[str, ...]:
        return tuple(k for k in (self.first_dense, self.dense_list, self.step) if k)

    def is_moe(self, config: dict[str, Any], layer: int) -> bool:
        if self.first_dense and layer < int(config.get(self.first_dense) or 0):
            return False
        if self.dense_list and layer in (config.get(self.dense_list) or ()):
            return False
        return not (self.step and (layer + 1) % int(config.get(self.step) or 1))


@dataclass(frozen=True)
class Groups:
    """Group-limited routing (DeepSeek-V3): experts in `count` equal groups, each token
    routed within its `top_k` best groups. The config keys of both numbers."""

    count: str
    top_k: str


@dataclass(frozen=True)
class ExtraLayers:
    """Layers a checkpoint stores after the model's last that transformers does not load
    (DeepSeek-V3's and GLM-4.5's multi-token-prediction layers): `count` is their config
    key, `prefix` the name template of their tensors. A pruned checkpoint drops them and
    sets `count` to 0, so no runtime looks for them."""

    count: str
    prefix: str

    def names(self, config: dict[str, Any], layers: int) -> tuple[str, ...]:
        """Name prefixes of the extra layers of a config with `layers` layers."""
        extra = int(config.get(self.count) or 0)
        return tuple(self.prefix.format(layer_idx=layers + i) for i in range(extra))


@dataclass(frozen=True)
class ModelDescriptor:
    """A MoE model family as data: where its routers and experts live, and its config keys.

    `layer_tensors` are the tensors of every layer outside its MLP (attention, norms);
    `dense_tensors` the MLP of a dense layer; `shared_tensors` what a MoE layer holds beside
    its router and routed experts (shared experts, their gate), copied untouched;
    `model_tensors` those outside the layers (embeddings, final norm, head). With the
    router and the dequantized layout they are every tensor the model has.
    `config_defaults` are what the model class assumes for keys a config may leave out
    (a string is an expression over other keys). `router_module` is the module that
    routes, as transformers names it in memory (its stored tensors may be named otherwise);
    `router_kind` and `chat_format` name the code hooks in `bot.families.hooks`.
    """

    model_type: str
    router_module: str
    router_tensors: tuple[TensorSpec, ...]
    layouts: tuple[ExpertLayout, ...]
    layer_tensors: tuple[TensorSpec, ...] = ()
    model_tensors: tuple[TensorSpec, ...] = ()
    dense_tensors: tuple[TensorSpec, ...] = ()
    shared_tensors: tuple[TensorSpec, ...] = ()
    config_defaults: tuple[tuple[str, ConfigValue], ...] = ()
    architectures: tuple[str, ...] = ()
    expert_axis: int = 0
    num_layers_key: str = ""
    experts_keys: tuple[str, ...] = ()
    top_k_keys: tuple[str, ...] = ()
    groups: Groups | None = None
    moe_layers: MoeLayers = field(default_factory=MoeLayers)
    extra_layers: ExtraLayers | None = None
    dequantized_layout: str = "bf16"
    router_kind: str = "topk_softmax"
    chat_format: str = "template"
    title: str = ""

    def __post_init__(self) -> None:
        problems = []
        if "{layer_idx}" not in self.router_module:
            problems.append("router_module lacks {layer_idx}")
        per_layer = (
            *self.router_tensors,
            *self.layer_tensors,
            *self.dense_tensors,
            *self.shared_tensors,
        )
        for spec in per_layer:
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
        if not self.num_layers_key:
            problems.append("num_layers_key is empty")
        if not self.top_k_keys:
            problems.append("top_k_keys is empty")
        if not self.experts_keys:
            problems.append("experts_keys is empty")
        if problems:
            raise ValueError(f"descriptor {self.model_type}: " + "; ".join(problems))

    # ------------------------------------------------------------ config keys

    @property
    def num_experts_key(self) -> str:
        """The expert-count key this family's configs are written with."""
        return self.experts_keys[0]

    def config_keys(self) -> frozenset[str]:
        """Every config key the family names (for checks that the engine names none)."""
        keys = {self.num_layers_key, *self.experts_keys, *self.top_k_keys, *self.moe_layers.keys()}
        if self.groups:
            keys |= {self.groups.count, self.groups.top_k}
        if self.extra_layers:
            keys.add(self.extra_layers.count)
        return frozenset(keys)

    def dropped_prefixes(self, config: dict[str, Any]) -> tuple[str, ...]:
        """Name prefixes of stored tensors a pruned checkpoint leaves out (`ExtraLayers`)."""
        if self.extra_layers is None:
            return ()
        return self.extra_layers.names(config, self.num_layers(config))

    def layout(self, name: str) -> ExpertLayout:
        """The layout called `name`."""
        for layout in self.layouts:
            if layout.name == name:
                return layout
        raise KeyError(name)

    def detect_layout(self, config: dict[str, Any], names: Collection[str]) -> ExpertLayout:
        """The layout a checkpoint uses: its config's quantization method, then its names.

        Among layouts of the config's `quant_method`, the first whose first-MoE-layer
        tensors are all present wins; failing that, the one with most present (the caller
        reports what is missing).
        """
        quant = config.get("quantization_config")
        method = quant.get("quant_method") if isinstance(quant, dict) else None
        candidates = [layout for layout in self.layouts if layout.quant_method == method]
        if not candidates:
            raise InputError(f"config: {self.model_type} has no layout for quant_method {method}")
        layers = self.moe_layer_indices(config)
        first = layers[0] if layers else 0

        def present(layout: ExpertLayout) -> float:
            expert = 0 if layout.per_expert else None
            found = sum(spec.tensor_name(first, expert) in names for spec in layout.tensors)
            return found / len(layout.tensors)

        return max(candidates, key=present)

    def num_layers(self, config: dict[str, Any]) -> int:
        return _int_key(config, self.num_layers_key, MAX_LAYERS)

    def moe_layer_indices(self, config: dict[str, Any]) -> list[int]:
        """The layers that hold experts, in order."""
        config = self.config_with_defaults(config)
        return [i for i in range(self.num_layers(config)) if self.moe_layers.is_moe(config, i)]

    def num_experts(self, config: dict[str, Any]) -> int:
        """Routed experts per MoE layer (the first expert-count key the config has)."""
        for key in self.experts_keys:
            if config.get(key) is not None:
                return _int_key(config, key, MAX_EXPERTS)
        raise InputError(f"config has none of {', '.join(self.experts_keys)}")

    def top_k(self, config: dict[str, Any]) -> int:
        """Experts each token is routed to (the first top-k key the config has)."""
        for key in self.top_k_keys:
            if config.get(key) is not None:
                return _int_key(config, key)
        raise InputError(f"config has none of {', '.join(self.top_k_keys)}")

    def missing_keys(self, config: dict[str, Any]) -> list[str]:
        """What a config lacks to be one of this family's MoE configs (empty: nothing)."""
        missing = []
        if config.get(self.num_layers_key) is None:
            missing.append(self.num_layers_key)
        if all(config.get(k) is None for k in self.experts_keys):
            missing.append(" or ".join(self.experts_keys))
        return missing

    def config_with_defaults(self, config: dict[str, Any]) -> dict[str, Any]:
        """`config` with the model class's defaults for the keys it leaves out (or sets null)."""
        out = {k: v for k, v in config.items() if v is not None}
        for key, value in self.config_defaults:
            if key in out:
                continue
            out[key] = evaluate_dim(value, out, {}) if isinstance(value, str) else value
        return out

    def num_groups(self, config: dict[str, Any]) -> int:
        """Routing groups of a config (1 when routing is not group-limited)."""
        if self.groups is None:
            return 1
        return int(self.config_with_defaults(config).get(self.groups.count) or 1)

    def group_problem(self, config: dict[str, Any], experts: int) -> str | None:
        """Why keeping `experts` experts cannot keep this config's group-limited routing.

        Each of the `n` groups must keep `experts / n` experts, at least 2 (a group is
        scored by its best two), for the pruned model to route as the masked base does.
        """
        groups = self.num_groups(config)
        if groups <= 1 or (experts % groups == 0 and experts // groups >= 2):
            return None
        assert self.groups is not None
        return (
            f"{self.groups.count} is {groups}: keep a multiple of {groups} experts, at least "
            "2 in each routing group, so the pruned model routes within the same groups"
        )

    def group_of(self, config: dict[str, Any], expert: int) -> int:
        """The routing group of `expert` (0 when routing is not group-limited)."""
        return expert // (self.num_experts(config) // self.num_groups(config))

    def rewrite_config(
        self, config: dict[str, Any], experts: int, *, drop_quantization: bool = False
    ) -> dict[str, Any]:
        """A copy of `config` for a checkpoint keeping `experts` experts per MoE layer.

        Every expert-count key and top-k key the config has gets the new value (top-k at
        most `experts`); group-limited routing keeps its groups (each keeps
        `experts / groups` experts, see `group_problem`); extra layers are dropped.
        """
        top_k = min(self.top_k(config), experts)
        out = dict(config)
        for key in self.experts_keys:
            if out.get(key) is not None:
                out[key] = experts
        for key in self.top_k_keys:
            if key in out:
                out[key] = top_k
        if self.extra_layers and out.get(self.extra_layers.count):
            out[self.extra_layers.count] = 0
        if drop_quantization:
            out.pop("quantization_config", None)
        return out

    # ------------------------------------------------------------ tensors

    def shape(
        self, spec: TensorSpec, config: dict[str, Any], experts: int | None = None
    ) -> tuple[int, ...]:
        """`spec`'s shape under `config` (with `experts` experts, default the config's)."""
        count = self.num_experts(config) if experts is None else experts
        return spec.resolve_shape(self.config_with_defaults(config), **{EXPERTS: count})

    def layer_specs(
        self, config: dict[str, Any], layer: int, layout: ExpertLayout | None = None
    ) -> Iterator[tuple[TensorSpec, bool]]:
        """The tensor specs of one layer, each with whether it is per expert."""
        full = self.config_with_defaults(config)
        moe = self.moe_layers.is_moe(full, layer)
        layout = layout or self.layout(self.dequantized_layout)
        groups: list[tuple[tuple[TensorSpec, ...], bool]] = [(self.layer_tensors, False)]
        if moe:
            groups += [(self.router_tensors, False), (self.shared_tensors, False)]
            groups.append((layout.tensors, layout.per_expert))
        else:
            groups.append((self.dense_tensors, False))
        for specs, per_expert in groups:
            for spec in specs:
                if spec.present(full):
                    yield spec, per_expert

    def dequantized_shapes(
        self, config: dict[str, Any], experts: int | None = None
    ) -> dict[str, tuple[int, ...]]:
        """Name -> shape of every tensor of the dequantized model, as its checkpoint names it.

        `experts` replaces the config's expert count (the counts of a pruned variant).
        """
        return {name: shape for name, shape, _ in self.tensor_table(config, experts=experts)}

    def tensor_table(
        self,
        config: dict[str, Any],
        *,
        experts: int | None = None,
        layout: ExpertLayout | None = None,
    ) -> Iterator[tuple[str, tuple[int, ...], TensorSpec]]:
        """(stored name, shape, spec) of every tensor a checkpoint in `layout` holds."""
        count = self.num_experts(config) if experts is None else experts
        full = self.config_with_defaults(config)
        for layer in range(self.num_layers(full)):
            for spec, per_expert in self.layer_specs(full, layer, layout):
                shape = self.shape(spec, full, count)
                for expert in range(count) if per_expert else [None]:
                    yield spec.tensor_name(layer, expert), shape, spec
        for spec in self.model_tensors:
            if spec.present(full):
                yield spec.name, self.shape(spec, full, count), spec

    def stored_shapes(
        self, config: dict[str, Any], layout: ExpertLayout, experts: int | None = None
    ) -> dict[str, tuple[tuple[int, ...], str | None]]:
        """Name -> (shape, safetensors dtype or None: floating) a checkpoint in `layout` holds.

        The model's own tensors come first, then the stored experts (problems read in
        that order).
        """
        table = [
            (name, (shape, spec.dtype), spec in layout.tensors)
            for name, shape, spec in self.tensor_table(config, experts=experts, layout=layout)
        ]
        return {name: entry for name, entry, _ in sorted(table, key=lambda row: row[2])}

    def expert_names(self, config: dict[str, Any]) -> Iterator[str]:
        """Stored names of every router and routed-expert tensor (any layout) of `config`."""
        experts = self.num_experts(config)
        for layer in self.moe_layer_indices(config):
            for spec in self.router_tensors:
                yield spec.tensor_name(layer)
            for layout in self.layouts:
                for spec in layout.tensors:
                    for expert in range(experts) if layout.per_expert else [None]:
                        yield spec.tensor_name(layer, expert)


# ---------------------------------------------------------------- shape expressions

_TOKEN = re.compile(r"\s*(?:(\d+)|([A-Za-z_][A-Za-z0-9_]*)|(.))")


def evaluate_dim(expr: str, config: dict[str, Any], overrides: dict[str, int]) -> int:
    """Evaluate an integer expression such as `"2*intermediate_size"` or `"hidden_size/32"`.

    Grammar: integers, config keys (or `overrides`), `+ - * /` and parentheses; `/` must
    divide exactly. Nothing else is accepted (no Python `eval`).
    """
    tokens: list[tuple[str, str]] = []
    for number, name, other in _TOKEN.findall(expr):
        if number:
            tokens.append(("num", number))
        elif name:
            tokens.append(("name", name))
        elif other.strip():
            if other not in "+-*/()":
                raise ValueError(f"bad shape expression {expr!r}")
            tokens.append(("op", other))
    parser = _Parser(tokens, config, overrides, expr)
    value = parser.sum()
    if parser.pos != len(tokens):
        raise ValueError(f"bad shape expression {expr!r}")
    return value


class _Parser:
    def __init__(
        self,
        tokens: list[tuple[str, str]],
        config: dict[str, Any],
        overrides: dict[str, int],
        expr: str,
    ) -> None:
        self.tokens, self.config, self.overrides, self.expr = tokens, config, overrides, expr
        self.pos = 0

    def _peek(self) -> str | None:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else None

    def sum(self) -> int:
        value = self.product()
        while self._peek() in ("+", "-"):
            op = self.tokens[self.pos][1]
            self.pos += 1
            term = self.product()
            value = value + term if op == "+" else value - term
        return value

    def product(self) -> int:
        value = self.atom()
        while self._peek() in ("*", "/"):
            op = self.tokens[self.pos][1]
            self.pos += 1
            term = self.atom()
            if op == "*":
                value *= term
            elif term == 0 or value % term:
                raise InputError(f"config: {self.expr} = {value}/{term} is not a whole number")
            else:
                value //= term
        return value

    def atom(self) -> int:
        if self.pos >= len(self.tokens):
            raise ValueError(f"bad shape expression {self.expr!r}")
        kind, text = self.tokens[self.pos]
        self.pos += 1
        if kind == "num":
            return int(text)
        if kind == "name":
            if text in self.overrides:
                return self.overrides[text]
            return _int_key(self.config, text)
        if text == "(":
            value = self.sum()
            if self._peek() != ")":
                raise ValueError(f"bad shape expression {self.expr!r}")
            self.pos += 1
            return value
        raise ValueError(f"bad shape expression {self.expr!r}")


def _int_key(config: dict[str, Any], key: str, most: int = MAX_SIZE) -> int:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"config: {key} must be an integer, got {value!r}")
    if not 1 <= value <= most:
        raise InputError(f"config: {key} = {value} is outside 1..{most:,}")
    return value
