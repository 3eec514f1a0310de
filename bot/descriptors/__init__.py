"""The descriptor registry: `config.json`'s `model_type` -> `ModelDescriptor`.

An unknown model type is an error (with a did-you-mean), never a fallback. Importing this
package is cheap: descriptors are plain data, nothing imports torch or transformers.

Example:
    >>> descriptor_for({"model_type": "gpt_oss"}).num_experts_key
    'num_local_experts'
    >>> register(my_descriptor)                                 # doctest: +SKIP
"""

from __future__ import annotations

import difflib
from typing import Any

from bot.descriptors.base import ExpertLayout, ModelDescriptor, TensorSpec
from bot.descriptors.gpt_oss import GPT_OSS
from bot.errors import HubbotError, InputError

__all__ = [
    "ExpertLayout",
    "ModelDescriptor",
    "TensorSpec",
    "descriptor_for",
    "register",
    "registered_types",
]

_REGISTRY: dict[str, ModelDescriptor] = {GPT_OSS.model_type: GPT_OSS}


def register(descriptor: ModelDescriptor) -> ModelDescriptor:
    """Add a model family; registering another descriptor for a known type is an error."""
    known = _REGISTRY.get(descriptor.model_type)
    if known is not None and known != descriptor:
        raise HubbotError(f"model type {descriptor.model_type!r} already has a descriptor")
    _REGISTRY[descriptor.model_type] = descriptor
    return descriptor


def registered_types() -> list[str]:
    """Model types with a descriptor, sorted."""
    return sorted(_REGISTRY)


def descriptor_for(config: dict[str, Any]) -> ModelDescriptor:
    """The descriptor of a `config.json` (as a dict); `InputError` for an unknown type."""
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if not isinstance(model_type, str):
        raise InputError("config has no model_type")
    descriptor = _REGISTRY.get(model_type)
    if descriptor is None:
        hint = difflib.get_close_matches(model_type, list(_REGISTRY), n=1, cutoff=0.5)
        suffix = f"; did you mean {hint[0]!r}?" if hint else ""
        known = ", ".join(registered_types())
        raise InputError(f"no descriptor for model type {model_type!r}{suffix} (known: {known})")
    return descriptor
