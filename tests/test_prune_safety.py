"""`hubbot prune` never touches what it did not write, and answers odd input with exit 2.

Each case here is one of a hostile pass over the pruner (issue 18): destinations that hold
a user's files or overlap the source, kills around the final swap, corrupt or
self-contradicting checkpoints, and keep lists with odd layer keys.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from bot.cli import cli
from bot.fixtures import TinySpec, write_tiny_model
from bot.meta import meta_model
from bot.prune import prune_checkpoint
from tests.test_prune import _rewrite_shard, _shard_of

SPEC = TinySpec()  # 2 layers, 8 experts, top-2
KEEP = {0: [6, 1, 3, 5], 1: [0, 2, 4, 7]}
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("base")
    return {
        layout: write_tiny_model(root / layout, layout=layout, spec=SPEC)
        for layout in ("bf16", "per_expert")
    }


@pytest.fixture
def keep_file(tmp_path: Path) -> Path:
    path = tmp_path / "keep.json"
    path.write_text(json.dumps({str(k): v for k, v in KEEP.items()}))
    return path


def prune(src: Path, dst: Path, keep: Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["prune", str(src), str(dst), "--keep", str(keep)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (relative path -> bytes)."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def siblings(dst: Path) -> list[str]:
    return sorted(p.name for p in dst.parent.iterdir() if p.name.startswith(f".{dst.name}."))


# ---------------------------------------------------------------- data loss


def test_a_users_folder_with_a_file_named_hubbot_json_is_not_replaced(
    base: dict[str, Path], tmp_path: Path, keep_file: Path
) -> None:
    dst = tmp_path / "thesis"
    dst.mkdir()
    (dst / "hubbot.json").write_text('{"my": "settings"}')
    (dst / "thesis.tex").write_text(r"\documentclass{article}")
    before = tree(dst)
    code, out = prune(base["bf16"], dst, keep_file)
    assert code == 2, out
    assert "thesis.tex" in out and "not written by hubbot" in out
    assert tree(dst) == before


def test_a_source_inside_the_destination_is_refused(
    base: dict[str, Path], tmp_path: Path, keep_file: Path
) -> None:
    dst = tmp_path / "out"
    prune_checkpoint(base["bf16"], dst, KEEP)  # an earlier hubbot output
    src = shutil.copytree(base["bf16"], dst / "base")
    before = tree(src)
    code, out = prune(src, dst, keep_file)
    assert code == 2, out
    assert "holds the source" in out
    assert tree(src) == before


def test_a_destination_inside_the_source_is_refused(
    base: dict[str, Path], tmp_path: Path, keep_file: Path
) -> None:
    src = shutil.copytree(base["bf16"], tmp_path / "src")
    before = tree(src)
    code, out = prune(src, src / "pruned", keep_file)
    assert code == 2, out
    assert "inside the source" in out
    assert tree(src) == before


def test_an_earlier_output_with_a_users_file_added_is_not_replaced(
    base: dict[str, Path], tmp_path: Path, keep_file: Path
) -> None:
    dst = tmp_path / "out"
    prune_checkpoint(base["bf16"], dst, KEEP)
    (dst / "notes.md").write_text("my evaluation notes")
    before = tree(dst)
    code, out = prune(base["bf16"], dst, keep_file)
    assert code == 2, out
    assert "notes.md: not written by hubbot" in out
    assert tree(dst) == before


def test_an_earlier_output_with_a_file_edited_is_not_replaced(
    base: dict[str, Path], tmp_path: Path, keep_file: Path
) -> None:
    dst = tmp_path / "out"
    prune_checkpoint(base["bf16"], dst, KEEP)
    (dst / "tokenizer_config.json").write_text('{"edited": "by hand"}')
    (dst / "extra").mkdir()
    before = tree(dst)
    code, out = prune(base["bf16"], dst, keep_file)
    assert code == 2, out
    assert "tokenizer_config.json: changed since hubbot wrote it" in out
    assert "extra/: a folder hubbot did not make" in out
    assert tree(dst) == before and (dst / "extra").is_dir()


def test_an_earlier_output_of_its_own_is_replaced(
    base: dict[str, Path], tmp_path: Path, keep_file: Path
) -> None:
    dst = tmp_path / "out"
    prune_checkpoint(base["bf16"], dst, {0: [0, 1], 1: [0, 1]})
    code, out = prune(base["bf16"], dst, keep_file)
    assert code == 0, out
    assert json.loads((dst / "config.json").read_text())["num_local_experts"] == 4
    assert siblings(dst) == []


def test_an_empty_folder_is_a_destination(
    base: dict[str, Path], tmp_path: Path, keep_file: Path
) -> None:
    dst = tmp_path / "empty"
    dst.mkdir()
    code, out = prune(base["bf16"], dst, keep_file)
    assert code == 0, out
    assert (dst / "hubbot.json").is_file()


def test_a_dangling_symlink_destination_is_refused(
    base: dict[str, Path], tmp_path: Path, keep_file: Path
) -> None:
    dst = tmp_path / "link"
    dst.symlink_to(tmp_path / "nowhere")
    code, out = prune(base["bf16"], dst, keep_file)
    assert code == 2, out
    assert "is a symbolic link" in out
    assert dst.is_symlink() and not (tmp_path / "nowhere").exists()


def test_a_destination_under_a_file_is_refused(
    base: dict[str, Path], tmp_path: Path, keep_file: Path
) -> None:
    (tmp_path / "file.txt").write_text("a file")
    code, out = prune(base["bf16"], tmp_path / "file.txt" / "out", keep_file)
    assert code == 2, out
    assert "file.txt is a file, not a folder" in out
    assert (tmp_path / "file.txt").read_text() == "a file"


# ---------------------------------------------------------------- kills around the swap

_KILL_AT = """
import os, signal, sys
from pathlib import Path
import bot.folders
{patch}
from bot.prune import prune_checkpoint
prune_checkpoint(Path(sys.argv[1]), Path(sys.argv[2]), {{0: [0, 1], 1: [2, 3]}})
"""


def _killed_run(src: Path, dst: Path, patch: str) -> None:
    code = _KILL_AT.format(patch=patch)
    run = subprocess.run([sys.executable, "-c", code, str(src), str(dst)], env=_env())
    assert run.returncode == -signal.SIGKILL


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.mark.parametrize(
    ("patch", "holds"),
    [
        (  # killed just before the swap: the old output stays
            "real = bot.folders._exchange\n"
            "def kill(a, b):\n    os.kill(os.getpid(), signal.SIGKILL)\n"
            "bot.folders._exchange = kill",
            4,
        ),
        (  # killed just after the swap: the new output is in place, the old one aside
            "real = bot.folders._exchange\n"
            "def kill(a, b):\n    real(a, b)\n    os.kill(os.getpid(), signal.SIGKILL)\n"
            "bot.folders._exchange = kill",
            2,
        ),
        (  # no exchange on this system, killed between the two renames
            "bot.folders._exchange = lambda a, b: False\n"
            "real = os.rename\n"
            "def kill(a, b):\n    real(a, b)\n    os.kill(os.getpid(), signal.SIGKILL)\n"
            "os.rename = kill",
            None,
        ),
    ],
    ids=["before-exchange", "after-exchange", "between-renames"],
)
def test_a_kill_around_the_swap_leaves_a_whole_output_or_a_recoverable_one(
    base: dict[str, Path], tmp_path: Path, patch: str, holds: int | None
) -> None:
    dst = tmp_path / "out"
    prune_checkpoint(base["bf16"], dst, KEEP)
    old = tree(dst)
    _killed_run(base["bf16"], dst, patch)
    if holds is not None:
        config = json.loads((dst / "config.json").read_text())
        assert config["num_local_experts"] == holds
        assert (holds == 4) == (tree(dst) == old)
    else:
        assert not dst.exists()  # the old output was moved aside...
        assert any(name.startswith(".out.old-") for name in siblings(dst))
    # ...and the next run puts things right before it starts, then replaces the output
    prune_checkpoint(base["bf16"], dst, {0: [0, 1, 2], 1: [0, 1, 2]})
    assert json.loads((dst / "config.json").read_text())["num_local_experts"] == 3
    assert siblings(dst) == []


def test_a_dead_runs_output_moved_aside_is_put_back(base: dict[str, Path], tmp_path: Path) -> None:
    from bot.folders import sweep_stale

    dst = tmp_path / "out"
    prune_checkpoint(base["bf16"], dst, KEEP)
    old = tree(dst)
    _killed_run(
        base["bf16"],
        dst,
        "bot.folders._exchange = lambda a, b: False\n"
        "real = os.rename\n"
        "def kill(a, b):\n    real(a, b)\n    os.kill(os.getpid(), signal.SIGKILL)\n"
        "os.rename = kill",
    )
    assert not dst.exists()
    sweep_stale(dst)  # what every run for dst does first
    assert tree(dst) == old
    assert siblings(dst) == []


# ---------------------------------------------------------------- odd inputs


def test_a_deeply_nested_header_is_refused_naming_the_shard(
    base: dict[str, Path], tmp_path: Path, keep_file: Path
) -> None:
    src = shutil.copytree(base["bf16"], tmp_path / "src")
    shard = sorted(src.glob("*.safetensors"))[0]
    header = b"[" * 200_000 + b"]" * 200_000
    shard.write_bytes(struct.pack("<Q", len(header)) + header)
    code, out = prune(src, tmp_path / "dst", keep_file)
    assert code == 2, out
    assert shard.name in out and "nested" in out
    assert not (tmp_path / "dst").exists()


@pytest.mark.parametrize(
    "text",
    [
        '{"²": [0, 1, 2, 3], "1": [0, 1, 2, 3]}',  # superscript two
        '{"١": [0, 1, 2, 3], "0": [0, 1, 2, 3]}',  # Arabic-Indic one
        '{"0": [0, 1, 2, 3], "00": [4, 5, 6, 7], "1": [0, 1, 2, 3]}',
        '{"0": [0, 1, 2, 3], "0": [4, 5, 6, 7], "1": [0, 1, 2, 3]}',
        '{"+1": [0, 1, 2, 3], "0": [0, 1, 2, 3]}',
        '{" 1": [0, 1, 2, 3], "0": [0, 1, 2, 3]}',
    ],
    ids=["superscript", "arabic-indic", "leading-zero", "repeated", "plus", "space"],
)
def test_a_layer_key_has_one_spelling(base: dict[str, Path], tmp_path: Path, text: str) -> None:
    keep = tmp_path / "keep.json"
    keep.write_text(text, encoding="utf-8")
    code, out = prune(base["bf16"], tmp_path / "dst", keep)
    assert code == 2, out
    assert str(keep) in out
    assert not (tmp_path / "dst").exists()


NORM = "model.norm.weight"


def _unlisted_tensor(src: Path) -> tuple[str, str]:
    """A tensor in a shard that the index does not list."""
    shard = _shard_of(src, NORM)
    extra = "model.layers.0.mlp.extra_scale"
    _rewrite_shard(src, shard, {extra: torch.ones(4, dtype=torch.bfloat16)}, index=False)
    return shard, f"holds tensor {extra}, which model.safetensors.index.json does not list"


def _missing_non_expert(src: Path) -> tuple[str, str]:
    _rewrite_shard(src, _shard_of(src, NORM), {NORM: None}, index=True)
    return "model.safetensors.index.json", f"lacks tensor {NORM}"


def _unknown_per_expert(src: Path) -> tuple[str, str]:
    name = "model.layers.1.mlp.experts.3.gate_proj.weight"
    shard = _shard_of(src, "model.layers.1.mlp.experts.3.down_proj.weight")
    _rewrite_shard(src, shard, {name: torch.zeros(8, 8, dtype=torch.bfloat16)}, index=True)
    return shard, "is not one the model of config.json has"


def _f16_instead_of_bf16(src: Path) -> tuple[str, str]:
    shard = _shard_of(src, NORM)
    _rewrite_shard(
        src, shard, {NORM: torch.ones(SPEC.hidden_size, dtype=torch.float16)}, index=True
    )
    return shard, f"tensor {NORM} is F16, expected BF16"


@pytest.mark.parametrize(
    "damage", [_unlisted_tensor, _missing_non_expert, _unknown_per_expert, _f16_instead_of_bf16]
)
def test_a_checkpoint_that_disagrees_with_itself_is_refused_before_writing(
    base: dict[str, Path], tmp_path: Path, keep_file: Path, damage: object
) -> None:
    src = shutil.copytree(base["per_expert"], tmp_path / "src")
    names = {p.name for p in tmp_path.iterdir()}
    file, message = damage(src)  # type: ignore[operator]
    code, out = prune(src, tmp_path / "dst", keep_file)
    assert code == 2, out
    assert str(src / file) in out and message in out
    assert ".partial" not in out
    assert {p.name for p in tmp_path.iterdir()} == names  # nothing written beside dst


# ---------------------------------------------------------------- reproducibility


def test_the_model_class_leaves_the_config_it_was_given_alone(base: dict[str, Path]) -> None:
    config = json.loads((base["bf16"] / "config.json").read_text())
    snapshot = copy.deepcopy(config)
    meta_model(config)
    assert config == snapshot


def test_the_written_config_is_a_function_of_the_inputs(
    base: dict[str, Path], tmp_path: Path
) -> None:
    source = json.loads((base["bf16"] / "config.json").read_text())
    pruned = prune_checkpoint(base["bf16"], tmp_path / "out", KEEP, dtype="bf16")
    written = json.loads((pruned.path / "config.json").read_text())
    assert written["rope_scaling"] == source["rope_scaling"]


def test_the_working_folder_as_destination_is_judged_like_any_other(
    base: dict[str, Path], tmp_path: Path, keep_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "draft.txt").write_text("mine")
    monkeypatch.chdir(work)
    code, out = prune(base["bf16"], Path("."), keep_file)
    assert code == 2, out
    assert "draft.txt: not written by hubbot" in out
    assert [p.name for p in work.iterdir()] == ["draft.txt"]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("num_hidden_layers", 10**12, "num_hidden_layers = 1000000000000 is outside 1..1,024"),
        ("num_local_experts", 0, "num_local_experts = 0 is outside"),
        ("head_dim", 0, "head_dim = 0 is outside"),
        ("hidden_size", "x", "hidden_size must be an integer, got 'x'"),
    ],
    ids=["layers-huge", "no-experts", "head-dim", "wrong-type"],
)
def test_a_config_no_model_can_have_is_refused_naming_it(
    base: dict[str, Path], tmp_path: Path, keep_file: Path, key: str, value: object, message: str
) -> None:
    src = shutil.copytree(base["bf16"], tmp_path / "src")
    config = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**config, key: value}))
    code, out = prune(src, tmp_path / "dst", keep_file)  # quickly: no loop over 10**12 layers
    assert code == 2, out
    assert f"{src / 'config.json'}: " in out and message in out
    assert not (tmp_path / "dst").exists()


def test_a_header_entry_with_an_odd_dtype_is_refused(
    base: dict[str, Path], tmp_path: Path, keep_file: Path
) -> None:
    src = shutil.copytree(base["bf16"], tmp_path / "src")
    shard = sorted(src.glob("*.safetensors"))[0]
    header = json.dumps({"t": {"dtype": ["BF16"], "shape": [1], "data_offsets": [0, 2]}})
    raw = header.encode() + b" " * (-len(header) % 8)
    shard.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0\0")
    code, out = prune(src, tmp_path / "dst", keep_file)
    assert code == 2, out
    assert f"{shard}: tensor t: unknown dtype ['BF16']" in out


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux sysfs")
def test_a_destination_it_may_not_write_beside_is_exit_2(
    base: dict[str, Path], tmp_path: Path, keep_file: Path
) -> None:
    # sysfs refuses new folders even to root: a place no one may write
    code, out = prune(base["bf16"], Path("/sys/kernel/hubbot-out"), keep_file)
    assert code == 2, out
    assert "/sys/kernel/hubbot-out: cannot write beside it" in out


def test_a_disk_failure_while_writing_is_exit_1_naming_the_file(
    base: dict[str, Path], tmp_path: Path, keep_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import bot.checkpoint

    def full(self: object, name: str, chunks: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "dst" / name))

    monkeypatch.setattr(bot.checkpoint.ShardWriter, "write_tensor", full)
    dst = tmp_path / "dst"
    code, out = prune(base["bf16"], dst, keep_file)
    assert code == 1, out
    assert "No space left on device" in out and "was left as it was" in out
    assert not dst.exists() and siblings(dst) == []
