"""Safe YAML loading that remembers where every value came from.

PyYAML's composer turns the text into a node graph without constructing any object; we
then build plain dicts, lists and scalars ourselves. That gives us what `yaml.safe_load`
does not: the line and column of every key and value, duplicate keys as errors, a refusal
of every tag outside YAML's core schema, bounded nesting, and a bounded walk through
aliases, in nodes and in bytes of text (so an alias bomb is answered at once instead of
filling the memory).

Example:
    >>> doc = load_yaml("a:\\n  b: 1\\n", "m.yaml")
    >>> doc.data, doc.where(("a", "b"))
    ({'a': {'b': 1}}, (2, 6))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bot.errors import InputError, Problem
from bot.inputs import UnreadableFile, read_input_file

Path_ = tuple[str | int, ...]

MAX_BYTES = 4 * 1024 * 1024
MAX_NODES = 200_000
MAX_EXPANDED_BYTES = 8 * 1024 * 1024
"""Scalar text the document may expand to, aliases counted each time they are used."""
MAX_DEPTH = 64

_CORE = "tag:yaml.org,2002:"
_SCALAR_TAGS = {f"{_CORE}{t}" for t in ("str", "int", "float", "bool", "null", "timestamp")}


@dataclass
class YamlDocument:
    """Plain data plus the (line, column) of each value and of each mapping key."""

    file: str
    data: Any
    values: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path_, tuple[int, int]] = field(default_factory=dict)

    def where(self, path: Path_, *, key: bool = False) -> tuple[int, int]:
        """Position of the value at `path` (or of its key), else of its nearest parent."""
        table = self.keys if key else self.values
        probe = tuple(path)
        while probe:
            if probe in table:
                return table[probe]
            if probe in self.values:
                return self.values[probe]
            probe = probe[:-1]
        return self.values.get((), (1, 1))

    def problem(self, path: Path_, message: str, *, key: bool = False) -> Problem:
        line, column = self.where(path, key=key)
        return Problem(self.file, line, column, message)


class _Builder:
    def __init__(self, file: str) -> None:
        self.doc = YamlDocument(file=file, data=None)
        self.problems: list[Problem] = []
        self.visited = 0
        self.expanded = 0
        self.constructor = yaml.SafeLoader("")

    def _at(self, node: yaml.Node, message: str) -> Problem:
        mark = node.start_mark
        return Problem(self.doc.file, mark.line + 1, mark.column + 1, message)

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self.visited += 1
        if self.visited > MAX_NODES:
            raise InputError(
                [self._at(node, f"document expands to more than {MAX_NODES} nodes (alias bomb?)")]
            )
        self.doc.values[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != f"{_CORE}seq":
                self.problems.append(self._at(node, f"tag {node.tag!r} is not allowed"))
                return None
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        if node.tag not in _SCALAR_TAGS:
            self.problems.append(self._at(node, f"tag {node.tag!r} is not allowed"))
            return None
        self.expanded += len(node.value)
        if self.expanded > MAX_EXPANDED_BYTES:
            raise InputError(
                [
                    self._at(
                        node,
                        f"document expands to more than {MAX_EXPANDED_BYTES:,} bytes of text "
                        "(a large value aliased many times?)",
                    )
                ]
            )
        if node.tag == f"{_CORE}timestamp":
            return node.value
        return self.constructor.construct_object(node, deep=True)

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> dict[str, Any] | None:
        if node.tag != f"{_CORE}map":
            self.problems.append(self._at(node, f"tag {node.tag!r} is not allowed"))
            return None
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == f"{_CORE}merge":
                self.problems.append(self._at(key_node, "merge keys ('<<') are not supported"))
                continue
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in _SCALAR_TAGS:
                self.problems.append(self._at(key_node, "mapping keys must be plain scalars"))
                continue
            key = str(key_node.value)
            if key in out:
                self.problems.append(self._at(key_node, f"duplicate key {key!r}"))
                continue
            self.doc.keys[(*path, key)] = (
                key_node.start_mark.line + 1,
                key_node.start_mark.column + 1,
            )
            out[key] = self.build(value_node, (*path, key))
        return out


def load_yaml_text(text: str, file: str) -> YamlDocument:
    """Parse one YAML document from `text`; `file` names it in error messages."""
    if len(text.encode("utf-8", "replace")) > MAX_BYTES:
        raise InputError([Problem(file, 1, 1, f"file is larger than {MAX_BYTES} bytes")])
    try:
        _check_depth(text, file)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise InputError([Problem(file, line, column, f"YAML syntax error: {message}")]) from None
    except yaml.YAMLError as exc:
        raise InputError([Problem(file, 1, 1, f"YAML error: {exc}")]) from None
    if node is None:
        raise InputError([Problem(file, 1, 1, "the document is empty")])
    _check_expansion(node, file)
    builder = _Builder(file)
    builder.doc.data = builder.build(node, ())
    if builder.problems:
        raise InputError(builder.problems)
    if not isinstance(builder.doc.data, dict):
        raise InputError([builder._at(node, "the document must be a mapping")])
    return builder.doc


def _check_expansion(root: yaml.Node, file: str) -> None:
    """Refuse a document whose aliases expand past the bounds, before building anything.

    Each distinct node's expanded size (nodes, bytes of scalar text) is computed once, so an
    alias bomb costs as many steps as the text has nodes. The walk then descends, in document
    order, only into the child where the running total crosses a bound, to name that node.
    """
    sizes: dict[int, tuple[int, int]] = {}

    def children(node: yaml.Node) -> list[yaml.Node]:
        if isinstance(node, yaml.MappingNode):
            return [value for _key, value in node.value]
        if isinstance(node, yaml.SequenceNode):
            return list(node.value)
        return []

    def size(node: yaml.Node) -> tuple[int, int]:
        if id(node) not in sizes:
            nodes, text = 1, len(node.value) if isinstance(node, yaml.ScalarNode) else 0
            for child in children(node):
                n, t = size(child)
                nodes, text = nodes + n, text + t
            sizes[id(node)] = (nodes, text)
        return sizes[id(node)]

    nodes, text = size(root)
    if nodes <= MAX_NODES and text <= MAX_EXPANDED_BYTES:
        return
    node, seen_nodes, seen_text = root, 0, 0
    while True:
        seen_nodes += 1
        if isinstance(node, yaml.ScalarNode):
            seen_text += len(node.value)
        if seen_nodes > MAX_NODES or seen_text > MAX_EXPANDED_BYTES:
            break
        for child in children(node):
            n, t = size(child)
            if seen_nodes + n > MAX_NODES or seen_text + t > MAX_EXPANDED_BYTES:
                node = child
                break
            seen_nodes, seen_text = seen_nodes + n, seen_text + t
        else:  # pragma: no cover - the totals said some child crosses a bound
            break
    mark = node.start_mark
    message = (
        f"document expands to more than {MAX_NODES} nodes (alias bomb?)"
        if seen_nodes > MAX_NODES
        else f"document expands to more than {MAX_EXPANDED_BYTES:,} bytes of text "
        "(a large value aliased many times?)"
    )
    raise InputError([Problem(file, mark.line + 1, mark.column + 1, message)])


def _check_depth(text: str, file: str) -> None:
    """Refuse nesting deeper than `MAX_DEPTH` (PyYAML's composer would recurse into it)."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                mark = event.start_mark
                raise InputError(
                    [
                        Problem(
                            file,
                            mark.line + 1,
                            mark.column + 1,
                            f"lists and mappings nest deeper than {MAX_DEPTH} levels",
                        )
                    ]
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def load_yaml(path: str | Path, display: str | None = None) -> YamlDocument:
    """Read and parse a YAML file (see `load_yaml_text`): a regular file of at most
    `MAX_BYTES` (a named pipe or a device is refused, not read)."""
    path = Path(path)
    name = display or str(path)
    try:
        raw = read_input_file(path, limit=MAX_BYTES)
    except UnreadableFile as exc:
        reason = exc.reason
        text = f"file {reason}" if reason.startswith("is ") else f"cannot read file: {reason}"
        raise InputError(
            [Problem(name, 1, 1, text.replace("file: cannot read: ", "file: "))]
        ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError([Problem(name, 1, 1, f"file is not UTF-8: {exc.reason}")]) from None
    return load_yaml_text(text, name)
