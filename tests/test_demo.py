"""The README's first command: the demo release, published to a local Hub and loaded back."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_demo_publishes_the_release_then_changes_nothing(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    from bot.demo import run_demo
    from bot.manifest import load_manifest

    ids = sorted(v.id for v in load_manifest(ROOT / "manifests" / "demo.yaml").variants)
    n = len(ids)
    caplog.set_level(logging.WARNING)
    lines: list[str] = []
    run_demo(tmp_path / "demo", manifest_path=ROOT / "manifests" / "demo.yaml", echo=lines.append)
    text = "\n".join(lines)
    assert text.count("  create ") == n, text
    assert "published again: 0 commits" in text
    # Readable answers: every variant's examples are printed, and the arithmetic variants add up.
    for variant_id in ids:
        assert f"  answers of {variant_id}:" in text
    sums = re.findall(r"What is (\d+) \+ (\d+)\? -> \1 \+ \2 = (\d+)", text)
    assert len(sums) >= 4, text
    assert all(int(a) + int(b) == int(c) for a, b, c in sums), sums
    # An answer is the final channel's text; raw output (special tokens) only where marked.
    answers = [line.split(" -> ", 1)[1] for line in lines if line.startswith("    ")]
    raw = [a for a in answers if "<|" in a]
    assert all(a.startswith("(no answer; raw output) ") for a in raw), raw
    loaded = re.search(
        r"from the local Hub with transformers: What is (\d+) \+ (\d+)\? -> .*= (\d+)", text
    )
    assert loaded and int(loaded[1]) + int(loaded[2]) == int(loaded[3]), text
    assert (tmp_path / "demo" / "hub").is_dir()
    # Counted: what happened, not how many variants there are.
    assert "published in " in text and f": {n} create, {n} commits, " in text
    assert f"published again: 0 commits, {n} no-op in " in text
    # The ending: the server has stopped, so say how to serve it again; where the folders are.
    staged = tmp_path / "demo" / "staged"
    assert sorted(p.name for p in staged.iterdir()) == ids
    assert (staged / ids[0] / "README.md").is_file()
    assert f"{staged}/{{{','.join(ids)}}}" in text
    assert lines[-1].startswith("the local Hub has stopped")
    assert f"hubbot hub serve --root {tmp_path / 'demo' / 'hub'} --port 8000" in lines[-1]
    assert "--serve --port 8000" in lines[-1]
    # Quiet: no other library's bars or advice that does not apply.
    err = capfd.readouterr().err + caplog.text
    for noise in ("use_kernels", "No files have been modified", "it/s]", "Loading weights"):
        assert noise not in err, err

    lines.clear()
    run_demo(tmp_path / "demo", manifest_path=ROOT / "manifests" / "demo.yaml", echo=lines.append)
    text = "\n".join(lines)
    assert text.count("  no-op ") == n and f": {n} no-op, no commit" in text, text
    assert "No files have been modified" not in capfd.readouterr().err + caplog.text
