"""Loading a manifest: parse, validate the schema, run the semantic checks, expand.

`load_manifest` raises `InputError` listing every problem as `FILE:LINE:COL: message`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic import ValidationError

from bot.errors import InputError
from bot.manifest.checks import read_base_config, semantic_problems
from bot.manifest.locate import located
from bot.manifest.schema import ManifestSpec
from bot.manifest.variants import Manifest
from bot.yamlsrc import load_yaml


def load_manifest(path: str | Path) -> Manifest:
    """Load and fully validate a manifest; raise `InputError` listing every problem."""
    path = Path(path)
    doc = load_yaml(path)
    try:
        spec = ManifestSpec.model_validate(doc.data)
    except ValidationError as exc:
        raise InputError(located(exc, doc)) from None
    base_config, problems = read_base_config(path, spec, doc)
    problems += semantic_problems(path, spec, base_config, doc)
    if problems:
        raise InputError(problems)
    return Manifest(
        path=path,
        spec=spec,
        base_config=base_config or {},
        digest=hashlib.sha256(path.read_bytes()).hexdigest(),
        document=doc,
    )
