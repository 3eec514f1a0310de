"""The README's first command: the demo release, published to a local Hub and loaded back."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_publishes_the_release_then_changes_nothing(tmp_path: Path) -> None:
    from bot.demo import run_demo

    lines: list[str] = []
    run_demo(tmp_path / "demo", manifest_path=ROOT / "manifests" / "demo.yaml", echo=lines.append)
    text = "\n".join(lines)
    assert text.count("  create ") == 4, text
    assert "published again: 0 commits" in text
    assert "from the local Hub with transformers: generated" in text
    assert (tmp_path / "demo" / "hub").is_dir()
