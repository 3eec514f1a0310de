"""The family registry: `config.json`'s `model_type` -> `ModelDescriptor`.

Each family is one data file in `bot/families/` (schema: `bot.descriptors.schema`), read
on first use. An unknown model type is an error naming the families there are (with a
did-you-mean), never a fallback. Importing this package is cheap: nothing imports torch or
transformers.

Example:
    >>> descriptor_for({"model_type": "qwen3_moe"}).router_module
    'model.layers.{layer_idx}.mlp.gate'
    >>> registered_types()[:2]
    ['deepseek_v3', 'glm4_moe']
"""

from __future__ import annotations

import difflib
from typing import Any

from bot.descriptors.base import ExpertLayout, ModelDescriptor, TensorSpec
from bot.descriptors.schema import family_files, read_family
from bot.errors import HubbotError, InputError

__all__ = [
    "ExpertLayout",
    "ModelDescriptor",
    "TensorSpec",
    "descriptor_for",
    "register",
    "registered_types",
]

_REGISTRY: dict[str, ModelDescriptor] = {}


def _registry() -> dict[str, ModelDescriptor]:
    if not _REGISTRY:
        for path in family_files():
            descriptor = read_family(path)
            _REGISTRY[descriptor.model_type] = descriptor
    return _REGISTRY


def register(descriptor: ModelDescriptor) -> ModelDescriptor:
    """Add a model family; registering another descriptor for a known type is an error."""
    known = _registry().get(descriptor.model_type)
    if known is not None and known != descriptor:
        raise HubbotError(f"model type {descriptor.model_type!r} already has a descriptor")
    _REGISTRY[descriptor.model_type] = descriptor
    return descriptor


def registered_types() -> list[str]:
    """Model types with a family file (or a registered descriptor), sorted."""
    return sorted(_registry())


def descriptor_for(config: dict[str, Any]) -> ModelDescriptor:
    """The descriptor of a `config.json` (as a dict); `InputError` for an unknown type."""
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if not isinstance(model_type, str):
        raise InputError("config has no model_type")
    registry = _registry()
    descriptor = registry.get(model_type)
    if descriptor is None:
        hint = difflib.get_close_matches(model_type, list(registry), n=1, cutoff=0.5)
        suffix = f"; did you mean {hint[0]!r}?" if hint else ""
        known = ", ".join(registered_types())
        raise InputError(
            f"no descriptor for model type {model_type!r}{suffix} (families in "
            f"bot/families/: {known})"
        )
    return descriptor
