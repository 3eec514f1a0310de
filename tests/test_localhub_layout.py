"""The local Hub is its own program: what imports it, and how its store's refusals are answered."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from bot.localhub.errors import InvalidInput, RefExists, StaleParent, StoreError
from bot.localhub.http import STORE_ANSWERS, StatusError, failure_reply
from bot.localhub.records import Entry
from bot.localhub.store import Store

BOT = Path(__file__).resolve().parents[1] / "bot"


def _imported(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_only_the_demo_and_the_serve_command_import_the_local_hub():
    importers = {
        str(path.relative_to(BOT))
        for path in BOT.rglob("*.py")
        if "localhub" not in path.parts
        and any(m == "bot.localhub" or m.startswith("bot.localhub.") for m in _imported(path))
    }
    assert importers == {"demo.py", "cli.py"}


def test_the_local_hub_does_not_use_the_hub_client():
    for path in (BOT / "localhub").glob("*.py"):
        client = [m for m in _imported(path) if m == "bot.hub" or m.startswith("bot.hub.")]
        assert not client, f"{path.name} imports {client}"


def test_the_store_refuses_with_store_errors_that_the_http_layer_answers(tmp_path: Path):
    store = Store(tmp_path / "hub")
    store.create_repo("me/tiny", private=False, author="me")
    head = store.resolve("me/tiny", "main")
    store.commit(
        "me/tiny", "main", parent=head.id, change=dict, title="same tree", message="", author="me"
    )
    with pytest.raises(StaleParent) as stale:  # the head moved since `head`
        store.commit(
            "me/tiny", "main", parent=head.id, change=dict, title="late", message="", author="me"
        )
    assert not isinstance(stale.value, StatusError)
    assert failure_reply(stale.value).status == 412
    store.create_ref("me/tiny", "tag", "v1", "main")
    with pytest.raises(RefExists) as exists:
        store.create_ref("me/tiny", "tag", "v1", "main")
    assert failure_reply(exists.value).status == 409

    def clash(tree: dict[str, Entry]) -> dict[str, Entry]:
        data = b"x"
        tree["a"] = tree["a/b"] = Entry.regular(data, store.blobs.write(data))
        return tree

    with pytest.raises(InvalidInput, match="'a' is a file, cannot hold 'a/b'"):
        store.commit(
            "me/tiny", "main", parent=None, change=clash, title="t", message="", author="me"
        )
    missing = failure_reply(_raised(lambda: store.resolve("me/tiny", "nope")))
    assert (missing.status, missing.headers["X-Error-Code"]) == (404, "RevisionNotFound")
    assert set(STORE_ANSWERS) == set(StoreError.__subclasses__())


def _raised(call) -> StoreError:
    with pytest.raises(StoreError) as err:
        call()
    return err.value
