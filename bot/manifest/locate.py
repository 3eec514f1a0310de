"""Pydantic validation errors mapped onto the manifest's YAML: `FILE:LINE:COL: message`.

`located` turns each error of a `ValidationError` into a `Problem` at the key or value it
is about, skipping union tags and aliases, with a did-you-mean hint for unknown keys.
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from bot.errors import Problem
from bot.manifest.schema import ManifestSpec
from bot.yamlsrc import YamlDocument


def located(exc: ValidationError, doc: YamlDocument) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = _doc_path(err["loc"], doc)
        shown = _dotted(err["loc"], doc)
        if err["type"] == "extra_forbidden":
            key = str(err["loc"][-1])
            known = _fields_at(ManifestSpec, [c for c in err["loc"][:-1]])
            hint = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            suffix = f"; did you mean {hint[0]!r}?" if hint else ""
            message = f"unknown key {key!r}{suffix}"
            problems.append(doc.problem(loc, message, key=True))
            continue
        message = err["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        if err["type"] == "missing":
            message = f"missing required key {str(err['loc'][-1])!r}"
        problems.append(doc.problem(loc, f"{shown}: {message}" if shown else message))
    return problems


def _doc_path(loc: tuple[Any, ...], doc: YamlDocument) -> tuple[str | int, ...]:
    """Map a pydantic location onto the document, skipping union tags and aliases."""
    path: tuple[str | int, ...] = ()
    for comp in loc:
        candidate = (*path, comp)
        if candidate in doc.values or candidate in doc.keys:
            path = candidate
        elif comp == "with_" and (*path, "with") in doc.values:
            path = (*path, "with")
    return path


def _dotted(loc: tuple[Any, ...], doc: YamlDocument) -> str:
    out = ""
    path: tuple[str | int, ...] = ()
    for comp in loc:
        candidate = (*path, comp)
        if isinstance(comp, int):
            out += f"[{comp}]"
        elif candidate in doc.values or comp == loc[-1]:
            out += f".{'with' if comp == 'with_' else comp}" if out else str(comp)
        else:
            continue
        path = candidate
    return out


def _fields_at(model: type[BaseModel], loc: list[Any]) -> list[str]:
    """Field names (and aliases) a mapping at `loc` may hold, for did-you-mean hints."""
    models = [model]
    for comp in loc:
        if isinstance(comp, int):
            continue
        nxt: list[type[BaseModel]] = []
        for m in models:
            field = m.model_fields.get(comp) or next(
                (f for f in m.model_fields.values() if f.alias == comp), None
            )
            if field is not None:
                nxt += _models_in(field.annotation)
        if nxt:
            models = nxt
    names: list[str] = []
    for m in models:
        names += [f.alias or n for n, f in m.model_fields.items()]
    return names


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _models_in(typing.get_args(annotation)[0])
    if origin in (list, dict, typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found += _models_in(arg)
    return found
