"""The code a family file cannot say: how a router chooses, and which chat format it speaks.

A family file names its `router.kind`; this module knows each kind's rule, so calibration
can read a router's choice and an evaluation can mask removed experts in a loaded base
model (the masked base computes what the pruned checkpoint computes):

- `topk_softmax` (GPT-OSS): the top-k of the logits, then a softmax over those k;
- `softmax_topk` (Mixtral, Qwen, OLMoE): a softmax over every expert, then the top-k
  (renormalised when the router's `norm_topk_prob` says so; Mixtral always does);
- `sigmoid_grouped` (DeepSeek-V3, GLM-4 MoE): sigmoid scores plus
  `e_score_correction_bias` choose the top-k within the best `topk_group` of `n_group`
  groups (a group scored by its best two); weights are the sigmoid scores of the chosen,
  renormalised when `norm_topk_prob`, times `routed_scaling_factor`.

Every transformers 5 router of these families returns `(logits, weights, indices)`.
Torch is imported by the functions that need it, never at import.

Example:
    >>> with masked_routers(model, {1: [0, 2, 5, 7]}):                  # doctest: +SKIP
    ...     logits = model(ids).logits          # as the pruned checkpoint computes them
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.descriptors import descriptor_for
from bot.errors import HubbotError, InputError
from bot.harmony import parse_harmony

if TYPE_CHECKING:
    import torch

CHAT_FORMATS = {
    "harmony": "OpenAI's harmony format (channels: analysis, final)",
    "template": "the repository's chat template",
}
"""What each `chat_format` of a family file means, in words (the card says it)."""


def router_choice(output: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(weights, indices) of a router's forward output, each [tokens, top_k]."""
    _, weights, indices = output
    if weights.shape != indices.shape:  # older routers: weights over every expert
        weights = weights.gather(-1, indices)
    return weights, indices


def route(kind: str, router: torch.nn.Module, logits: torch.Tensor, allowed: torch.Tensor) -> Any:
    """A router's `(logits, weights, indices)` with only `allowed` experts choosable."""
    import torch

    top_k = int(router.top_k)
    if kind == "topk_softmax":
        masked = logits.masked_fill(~allowed, float("-inf"))
        values, indices = torch.topk(masked, top_k, dim=-1)
        return logits, torch.softmax(values, dim=1, dtype=values.dtype), indices
    if kind == "softmax_topk":
        masked = logits.masked_fill(~allowed, float("-inf"))
        probs = torch.softmax(masked.float(), dim=-1)
        values, indices = torch.topk(probs, top_k, dim=-1)
        if getattr(router, "norm_topk_prob", True):
            values = values / values.sum(dim=-1, keepdim=True)
        if hasattr(router, "norm_topk_prob"):  # Qwen and OLMoE hand back the logits' dtype
            values = values.to(logits.dtype)
        return logits, values, indices
    if kind == "sigmoid_grouped":
        return logits, *_grouped(router, logits, allowed, top_k)
    raise HubbotError(f"unknown router kind {kind!r}")


def _grouped(
    router: torch.nn.Module, logits: torch.Tensor, allowed: torch.Tensor, top_k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    experts, groups = logits.shape[-1], int(router.num_group)
    scores = logits.sigmoid()
    choice = (scores + router.e_score_correction_bias).masked_fill(~allowed, float("-inf"))
    group_scores = choice.view(-1, groups, experts // groups).topk(2, dim=-1)[0].sum(dim=-1)
    group_idx = torch.topk(group_scores, k=int(router.topk_group), dim=-1, sorted=False)[1]
    group_mask = torch.zeros_like(group_scores).scatter_(1, group_idx, 1)
    score_mask = group_mask.unsqueeze(-1).expand(-1, groups, experts // groups)
    choice = choice.masked_fill(~score_mask.reshape(-1, experts).bool(), float("-inf"))
    indices = torch.topk(choice, k=top_k, dim=-1, sorted=False)[1]
    weights = scores.gather(1, indices)
    if router.norm_topk_prob:
        weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
    return weights * router.routed_scaling_factor, indices


class RouterMasks:
    """Forward hooks on every router of a loaded model that, once `apply`d a keep list, route
    each MoE layer only to the experts it keeps (`apply(None)`: the base, unmasked).

    The hooks recompute the router's choice from its logits with the family's rule, so the
    masked base computes what the pruned checkpoint computes, for every router kind.
    """

    def __init__(self, model: torch.nn.Module) -> None:

        config = model.config.to_dict()
        descriptor = descriptor_for(config)
        self.kind = descriptor.router_kind
        self.layers = descriptor.moe_layer_indices(config)
        self.num_experts = descriptor.num_experts(config)
        self.top_k = descriptor.top_k(config)
        self._allowed: dict[int, torch.Tensor] = {}
        self._handles = []
        for layer in self.layers:
            name = descriptor.router_module.format(layer_idx=layer)
            try:
                router = model.get_submodule(name)
            except AttributeError:
                raise HubbotError(f"the model has no router module {name!r}") from None
            self._handles.append(router.register_forward_hook(self._hook(layer)))

    def _hook(self, layer: int) -> Any:
        def hook(module: Any, args: Any, output: Any) -> Any:
            allowed = self._allowed.get(layer)
            if allowed is None:
                return None  # unmasked: the router's own output
            logits = output[0]
            if allowed.device != logits.device:  # once per variant: no copy in every pass
                allowed = self._allowed[layer] = allowed.to(logits.device)
            return route(self.kind, module, logits, allowed)

        return hook

    def apply(self, keep: Mapping[int, Sequence[int]] | None) -> None:
        """Route as the variant keeping `keep` (MoE layer -> experts) would; None: the base."""
        self.use(None if keep is None else self.prepared(keep))

    def prepared(
        self, keep: Mapping[int, Sequence[int]], device: Any = None
    ) -> dict[int, torch.Tensor]:
        """`keep` checked and made into each MoE layer's mask of choosable experts, on
        `device`: made once, `use`d for every pass of the variant."""
        import torch

        missing = [layer for layer in self.layers if layer not in keep]
        if missing:
            raise InputError(f"keep list: no experts for MoE layer {missing[0]}")
        masks = {}
        for layer in self.layers:
            kept = sorted({int(e) for e in keep[layer]})
            if len(kept) < self.top_k or kept[0] < 0 or kept[-1] >= self.num_experts:
                raise InputError(
                    f"layer {layer}: cannot keep experts {kept} "
                    f"(top-{self.top_k} of {self.num_experts})"
                )
            allowed = torch.zeros(self.num_experts, dtype=torch.bool)
            allowed[kept] = True
            masks[layer] = allowed.to(device) if device is not None else allowed
        return masks

    def use(self, masks: Mapping[int, torch.Tensor] | None) -> None:
        """Route by masks from `prepared` (None: the base, every expert)."""
        self._allowed = dict(masks) if masks else {}

    def remove(self) -> None:
        """Take the hooks off the model."""
        for handle in self._handles:
            handle.remove()
        self._handles = []


@contextmanager
def masked_routers(model: torch.nn.Module, keep: Mapping[int, Sequence[int]]) -> Iterator[None]:
    """Within the block, each MoE layer of `model` routes only to the experts `keep` lists."""
    masks = RouterMasks(model)
    try:
        masks.apply(keep)
        yield
    finally:
        masks.remove()


@dataclass(frozen=True)
class ChatFormat:
    """How a family's prompts and answers look (its file's `chat_format`).

    `template_options` are the generation settings passed to the chat template;
    `stop_tokens` end an assistant turn beside the repository's own end-of-sequence ids;
    `parse` splits a raw completion into (reasoning, answer), `None` where it has none:
    harmony's `analysis` and `final` channels, or a plain template's whole text.
    """

    name: str
    words: str
    stop_tokens: tuple[str, ...] = ()
    template_options: tuple[str, ...] = ()

    def parse(self, completion: str, text: str | None = None) -> tuple[str | None, str | None]:
        """(reasoning, answer) of a raw completion; `text` is the completion without its
        special tokens (the answer of a plain chat template, which has no channels)."""
        if self.name != "harmony":
            answer = (text or "").strip()
            return None, answer or None

        parsed = parse_harmony(completion)
        return parsed.analysis, parsed.final


_CHAT_FORMATS = {
    "harmony": ChatFormat(
        "harmony",
        CHAT_FORMATS["harmony"],
        stop_tokens=("<|return|>", "<|call|>"),
        template_options=("reasoning_effort",),
    ),
    "template": ChatFormat("template", CHAT_FORMATS["template"]),
}


def chat_format(config: dict[str, Any]) -> ChatFormat:
    """The chat format of a model's family, from its `config.json` (as a dict)."""

    return _CHAT_FORMATS[descriptor_for(config).chat_format]


RECORDS_BEFORE_FAMILIES = "gpt_oss"
"""The model type of `hubbot.json` records written before they named one (the only family
there was then)."""


def card_family(model_type: str | None) -> dict[str, Any]:
    """What a model card says of a family: its title and chat format."""

    descriptor = descriptor_for({"model_type": model_type or RECORDS_BEFORE_FAMILIES})
    fmt = _CHAT_FORMATS[descriptor.chat_format]
    return {
        "model_type": descriptor.model_type,
        "title": descriptor.title,
        "chat_format": fmt.name,
        "harmony": fmt.name == "harmony",
        "chat_words": fmt.words,
    }
