"""Model cards on the local Hub: a card's metadata as `cardData`, and `validate-yaml`.

The metadata is the card's YAML front matter, read with hubbot's YAML loader; the Hub
refuses a few shapes of the known keys (a `license` that is not a string, ...), and so
does this module, with the same messages.

Example:
    >>> card_metadata("license: 3")
    (None, ['"license" must be a string'])
"""

from __future__ import annotations

import json
from typing import Any

from bot.errors import InputError
from bot.localhub.access import Access
from bot.localhub.http import Reply, Request, json_reply
from bot.localhub.pages import split_front_matter
from bot.localhub.records import Commit
from bot.localhub.store import Store
from bot.yamlsrc import load_yaml_text

EMPTY_CARD_WARNING = (
    "empty or missing yaml metadata in repo card "
    "(https://huggingface.co/docs/hub/model-cards#model-card-metadata)"
)


def card_metadata(text: str) -> tuple[dict[str, Any] | None, list[str]]:
    """A card's YAML metadata as JSON data, or None and what the Hub would refuse in it."""
    try:
        data = load_yaml_text(text, "README.md").data
    except InputError as exc:  # lines are counted in the README, after its first `---`
        where = [f"line {p.line + 1}, column {p.column}: {p.message}" for p in exc.problems]
        return None, where or [str(exc)]
    problems = []
    for key in ("license", "license_name", "license_link", "library_name", "pipeline_tag"):
        if key in data and not isinstance(data[key], str):
            problems.append(f'"{key}" must be a string')
    for key in ("language", "tags", "datasets", "metrics", "base_model"):
        value = data.get(key)
        strings = isinstance(value, list) and all(isinstance(v, str) for v in value)
        if key in data and not (isinstance(value, str) or strings):
            problems.append(f'"{key}" must be a string or a list of strings')
    if "model-index" in data and not isinstance(data["model-index"], list):
        problems.append('"model-index" must be an array')
    if problems:
        return None, problems
    return json.loads(json.dumps(data, default=str)), []


def card_data(store: Store, commit: Commit) -> dict[str, Any] | None:
    """The `cardData` of a commit's README.md (None: no README or no valid metadata)."""
    entry = commit.tree.get("README.md")
    if entry is None:
        return None
    metadata, _ = split_front_matter(store.blobs.read(entry.sha256).decode("utf-8", "replace"))
    return card_metadata(metadata)[0] if metadata else None


def validate_yaml(access: Access, req: Request) -> Reply:
    metadata, _ = split_front_matter(str(req.json().get("content", "")))
    if metadata is None or not metadata.strip():
        return json_reply({"errors": [], "warnings": [{"message": EMPTY_CARD_WARNING}]})
    _, problems = card_metadata(metadata)
    if not problems:
        return json_reply({"errors": [], "warnings": []})
    if "text/plain" in req.headers.get("Accept", ""):
        text = "Invalid metadata in README.md.\n" + "\n".join(f"- {p}" for p in problems)
        return Reply(400, text.encode(), {"Content-Type": "text/plain; charset=utf-8"})
    errors = [{"message": p} for p in problems]
    return json_reply({"error": "Invalid metadata in README.md.", "errors": errors}, 400)
