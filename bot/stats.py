"""Model statistics computed from a config (and, for files, safetensors headers).

Parameter counts come from instantiating the model class on PyTorch's meta device, so
they are exact for any architecture transformers knows, and cost no memory. Counts are
of the dequantized (BF16) model, which is what the published names use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any


@dataclass(frozen=True)
class ParameterCounts:
    """Parameter counts of a MoE model, split into shared and per-expert parts.

    `per_expert` covers one expert in every layer, router rows included; `shared` is
    everything else. A model keeping `k` experts per layer has `shared + k * per_expert`.
    """

    shared: int
    per_expert: int
    experts: int
    top_k: int

    @property
    def total(self) -> int:
        return self.total_for(self.experts)

    def total_for(self, experts: int) -> int:
        return self.shared + experts * self.per_expert

    @property
    def active(self) -> int:
        """Parameters used per token: shared ones plus `top_k` experts per layer."""
        return self.total_for(self.top_k)


def parameter_counts(config: dict[str, Any]) -> ParameterCounts:
    """Exact parameter counts for a MoE `config.json` (as a dict)."""
    return _counts(json.dumps(config, sort_keys=True))


@lru_cache(maxsize=16)
def _counts(config_json: str) -> ParameterCounts:
    config = json.loads(config_json)
    experts = int(config["num_local_experts"])
    top_k = int(config.get("num_experts_per_tok") or config.get("experts_per_token") or 1)
    full = _meta_numel(config, experts)
    fewer = _meta_numel(config, experts - 1)
    per_expert = full - fewer
    return ParameterCounts(
        shared=full - experts * per_expert, per_expert=per_expert, experts=experts, top_k=top_k
    )


def _meta_numel(config: dict[str, Any], experts: int) -> int:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    data = {k: v for k, v in config.items() if k != "quantization_config"}
    data["num_local_experts"] = experts
    data["num_experts_per_tok"] = min(int(data.get("num_experts_per_tok", 1)), experts)
    if "experts_per_token" in data:
        data["experts_per_token"] = data["num_experts_per_tok"]
    model_type = data.pop("model_type")
    hf_config = AutoConfig.for_model(model_type, **data)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(hf_config)
    return sum(p.numel() for p in model.parameters())
