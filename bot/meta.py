"""A config's model class on PyTorch's meta device: shapes and counts without memory."""

from __future__ import annotations

import copy
from typing import Any


def meta_model(config: dict[str, Any]) -> Any:
    """Instantiate the (dequantized) model a `config.json` describes, on the meta device.

    `quantization_config` is ignored: the model is the BF16 one, whose parameters are what
    a packed MXFP4 checkpoint stores.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    # A deep copy: transformers fills in nested dicts (rope_scaling gets rope_theta), and the
    # caller's config must stay as it was (it is written out, maybe on another thread).
    data = {
        k: copy.deepcopy(v)
        for k, v in config.items()
        if k not in ("quantization_config", "model_type")
    }
    hf_config = AutoConfig.for_model(config["model_type"], **data)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(hf_config)
