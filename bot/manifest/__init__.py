"""Release manifests: the first stage of the pipeline, from a YAML file to variants.

A manifest lists the domains and expert counts of one release of one base model. The
package reads it in three steps, one module each: `schema` holds the pydantic models of
every block (each stage's own block, such as selection or evaluation, is defined by that
stage and composed here); `checks` runs what the schema cannot see, the semantic checks
that need the base config or the files the manifest names; `locate` maps pydantic's
errors onto the YAML document, so every problem reads `FILE:LINE:COL: message`.
`load.load_manifest` runs them in that order and returns a `variants.Manifest`, whose
`variants` are the expanded repos of the release; later stages take the parts they need.

Example:
    >>> manifest = load_manifest("manifests/demo.yaml")          # doctest: +SKIP
    >>> [v.id for v in manifest.variants][:2]                    # doctest: +SKIP
    ['general-2', 'general-3']
"""

from bot.manifest.load import load_manifest
from bot.manifest.schema import (
    BaseModelSpec,
    CardSpec,
    CiSpec,
    DomainSpec,
    ExpertCounts,
    GenerationSpec,
    HubSpec,
    ManifestSpec,
    OutputSpec,
    manifest_json_schema,
)
from bot.manifest.variants import Manifest, Variant, format_params_b

__all__ = [
    "BaseModelSpec",
    "CardSpec",
    "CiSpec",
    "DomainSpec",
    "ExpertCounts",
    "GenerationSpec",
    "HubSpec",
    "Manifest",
    "ManifestSpec",
    "OutputSpec",
    "Variant",
    "format_params_b",
    "load_manifest",
    "manifest_json_schema",
]
