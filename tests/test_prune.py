"""The streaming pruner on the tiny fixtures: loading, logits, layouts, errors, atomicity."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, Mxfp4Config

import bot.checkpoint
import bot.pruning.execute
from bot import __version__
from bot.errors import InputError
from bot.fixtures import TinySpec, write_tiny_model
from bot.provenance import SelectionRecord, read_provenance
from bot.prune import Origin, prune_checkpoint
from bot.pruning.checks import load_keep
from bot.verify import verify_structure

SPEC = TinySpec()  # 2 layers, 8 experts, top-2
KEEP = {0: [6, 1, 3, 5], 1: [0, 2, 4, 7]}  # unsorted on purpose: kept in original order
IDS = torch.tensor([[1, 5, 9, 200, 300, 17, 42, 99, 3, 7, 11, 64]])


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("base")
    return {
        layout: write_tiny_model(root / layout, layout=layout, spec=SPEC)
        for layout in ("bf16", "mxfp4", "per_expert")
    }


def _load(folder: Path, *, mxfp4: bool = False) -> AutoModelForCausalLM:
    extra = {"quantization_config": Mxfp4Config(dequantize=True)} if mxfp4 else {}
    model, info = AutoModelForCausalLM.from_pretrained(
        folder, dtype=torch.bfloat16, output_loading_info=True, **extra
    )
    assert {k: v for k, v in info.items() if v} == {}, info
    return model.eval()


def _masked_logits(folder: Path, *, mxfp4: bool) -> torch.Tensor:
    """The unpruned model's logits with removed experts' router logits forced to -inf."""
    model = _load(folder, mxfp4=mxfp4)
    with torch.no_grad():
        for layer, kept in KEEP.items():
            removed = [e for e in range(SPEC.num_experts) if e not in kept]
            model.model.layers[layer].mlp.router.bias[removed] = float("-inf")
        return model(IDS).logits


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for shard in sorted(folder.glob("*.safetensors")):
        out.update(load_file(shard))
    return out


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _nothing_at(dst: Path) -> bool:
    return not dst.exists() and not list(dst.parent.glob(f".{dst.name}.*"))


@pytest.mark.parametrize(
    ("layout", "dtype", "shard_bytes"),
    [("bf16", "source", 5 << 30), ("mxfp4", "source", 5 << 30), ("mxfp4", "bf16", 60_000)],
)
def test_pruned_model_loads_and_equals_the_masked_original(
    base: dict[str, Path], tmp_path: Path, layout: str, dtype: str, shard_bytes: int
) -> None:
    pruned = prune_checkpoint(
        base[layout], tmp_path / "out", KEEP, dtype=dtype, max_shard_bytes=shard_bytes
    )
    out_mxfp4 = layout == "mxfp4" and dtype == "source"
    assert pruned.output_format == ("mxfp4" if out_mxfp4 else "bf16")
    assert pruned.kept == {0: (1, 3, 5, 6), 1: (0, 2, 4, 7)}
    config = json.loads((pruned.path / "config.json").read_text())
    assert (config["num_local_experts"], config["num_experts_per_tok"]) == (4, SPEC.top_k)
    assert config["experts_per_token"] == SPEC.top_k
    assert ("quantization_config" in config) == out_mxfp4

    model = _load(pruned.path, mxfp4=out_mxfp4)
    with torch.no_grad():
        logits = model(IDS).logits
    assert torch.equal(logits, _masked_logits(base[layout], mxfp4=layout == "mxfp4"))
    generated = model.generate(IDS, max_new_tokens=4, do_sample=False)
    assert generated.shape == (1, IDS.shape[1] + 4)

    shards = sorted(pruned.path.glob("model-*.safetensors"))
    if shard_bytes < 1 << 20:
        assert len(shards) > 1
        for shard in shards:
            tensors = load_file(shard)
            size = sum(t.numel() * t.element_size() for t in tensors.values())
            assert size <= shard_bytes or len(tensors) == 1


def test_mxfp4_prune_then_dequantize_equals_dequantize_then_prune(
    base: dict[str, Path], tmp_path: Path
) -> None:
    """The BF16 fixture is the MXFP4 one dequantized; both orders give the same bits."""
    from_mxfp4 = prune_checkpoint(base["mxfp4"], tmp_path / "a", KEEP, dtype="bf16")
    from_bf16 = prune_checkpoint(base["bf16"], tmp_path / "b", KEEP)
    a, b = _tensors(from_mxfp4.path), _tensors(from_bf16.path)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert from_mxfp4.files["config.json"] == from_bf16.files["config.json"]

    # and our dequantization is transformers' own: the pruned MXFP4 checkpoint as it loads
    packed = prune_checkpoint(base["mxfp4"], tmp_path / "c", KEEP)
    loaded = _load(packed.path, mxfp4=True).state_dict()
    assert all(torch.equal(loaded[name], a[name]) for name in a)


def test_per_expert_layout_gives_the_fused_result(base: dict[str, Path], tmp_path: Path) -> None:
    per_expert = prune_checkpoint(base["per_expert"], tmp_path / "a", KEEP)
    fused = _tensors(prune_checkpoint(base["bf16"], tmp_path / "b", KEEP).path)
    split = _tensors(per_expert.path)
    assert per_expert.output_format == "per_expert"
    experts = "model.layers.{}.mlp.experts"
    for layer in KEEP:
        prefix = experts.format(layer)
        assert not any(n.startswith(f"{prefix}.4.") for n in split)  # renumbered 0..3
        for proj in ("gate_up_proj", "down_proj"):
            weight = torch.stack([split[f"{prefix}.{e}.{proj}.weight"].T for e in range(4)])
            bias = torch.stack([split[f"{prefix}.{e}.{proj}.bias"] for e in range(4)])
            assert torch.equal(weight, fused[f"{prefix}.{proj}"])
            assert torch.equal(bias, fused[f"{prefix}.{proj}_bias"])
    shared = {n for n in fused if ".mlp.experts." not in n}
    assert all(torch.equal(split[n], fused[n]) for n in shared)


def test_copies_repo_files_but_not_other_weights(base: dict[str, Path], tmp_path: Path) -> None:
    src = shutil.copytree(base["bf16"], tmp_path / "src")
    (src / "LICENSE").write_text("Apache-2.0\n")
    (src / "README.md").write_text("# the base model's card\n")
    (src / "pytorch_model.bin").write_bytes(b"old weights")
    (src / "original").mkdir()
    (src / "original" / "model.safetensors").write_bytes(b"more weights")
    pruned = prune_checkpoint(src, tmp_path / "out", KEEP)
    names = sorted(p.name for p in pruned.path.iterdir())
    assert names == [
        "LICENSE",
        "chat_template.jinja",
        "config.json",
        "generation_config.json",
        "hubbot.json",
        "model-00001-of-00001.safetensors",
        "model.safetensors.index.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    for name in ("LICENSE", "chat_template.jinja", "tokenizer.json", "generation_config.json"):
        assert (pruned.path / name).read_bytes() == (src / name).read_bytes()


def test_hubbot_json_records_base_selection_and_output_hashes(
    base: dict[str, Path], tmp_path: Path
) -> None:
    selection = {
        "strategy": "frequency",
        "statistics_source": "fingerprints",
        "statistics_digest": "sha256:abc",
        "scores": {"0": [0.4, 0.3, 0.2, 0.1], "1": [0.5, 0.2, 0.2, 0.1]},
    }
    record = SelectionRecord(
        **selection, kept_experts={str(layer): sorted(row) for layer, row in KEEP.items()}
    )
    origin = Origin(repo="openai/gpt-oss-20b", revision="d666cf3", selection=record)
    pruned = prune_checkpoint(base["mxfp4"], tmp_path / "out", KEEP, origin=origin)
    record = read_provenance(pruned.path)
    assert record.tool_version == __version__
    assert (record.base.repo, record.base.revision) == ("openai/gpt-oss-20b", "d666cf3")
    assert record.output_format == "mxfp4"
    assert record.selection.strategy == "frequency"
    assert record.selection.kept_experts == {"0": [1, 3, 5, 6], "1": [0, 2, 4, 7]}
    assert record.selection.scores == selection["scores"]
    outputs = {p.name for p in pruned.path.iterdir()} - {"hubbot.json"}
    assert record.files == pruned.files
    assert set(record.files) == outputs
    for name, digest in record.files.items():
        assert hashlib.sha256((pruned.path / name).read_bytes()).hexdigest() == digest
    assert set(record.base.files) == {p.name for p in base["mxfp4"].iterdir()}
    for name, digest in record.base.files.items():
        assert hashlib.sha256((base["mxfp4"] / name).read_bytes()).hexdigest() == digest
    assert pruned.bytes_written == sum(p.stat().st_size for p in pruned.path.iterdir())

    minimal = read_provenance(prune_checkpoint(base["bf16"], tmp_path / "min", KEEP).path)
    assert minimal.base.repo == str(base["bf16"]) and minimal.selection.strategy == "explicit"


def test_provenance_argument_is_checked(base: dict[str, Path], tmp_path: Path) -> None:
    dst = tmp_path / "out"
    wrong = SelectionRecord(
        strategy="frequency",
        statistics_source="s",
        statistics_digest="d",
        kept_experts={"0": [0, 1, 2, 3], "1": [0, 1, 2, 3]},
    )
    with pytest.raises(InputError, match="differs from the keep list"):
        prune_checkpoint(base["bf16"], dst, KEEP, origin=Origin(selection=wrong))
    assert _nothing_at(dst)


def _hub_snapshot(folder: Path, root: Path) -> Path:
    """`folder` laid out as a Hugging Face cache snapshot: links to `blobs/<sha256>`."""
    snapshot, blobs = root / "snapshots" / "rev", root / "blobs"
    snapshot.mkdir(parents=True)
    blobs.mkdir()
    for path in folder.iterdir():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        shutil.copyfile(path, blobs / digest)
        (snapshot / path.name).symlink_to(blobs / digest)
    return snapshot


def test_hub_cache_base_is_not_read_twice(base: dict[str, Path], tmp_path: Path) -> None:
    """Shards linked to `blobs/<sha256>` are hashed by name: only kept bytes are read."""
    snapshot = _hub_snapshot(base["mxfp4"], tmp_path)
    shard_bytes = sum(p.stat().st_size for p in base["mxfp4"].glob("*.safetensors"))
    cached = prune_checkpoint(snapshot, tmp_path / "a", KEEP)
    plain = prune_checkpoint(base["mxfp4"], tmp_path / "b", KEEP)
    assert cached.bytes_read < shard_bytes <= plain.bytes_read
    assert read_provenance(cached.path).base.files == read_provenance(plain.path).base.files


def test_rerun_gives_byte_identical_files(base: dict[str, Path], tmp_path: Path) -> None:
    first = _files(prune_checkpoint(base["mxfp4"], tmp_path / "out", KEEP).path)
    again = _files(prune_checkpoint(base["mxfp4"], tmp_path / "out", KEEP).path)  # replaces
    assert first == again
    assert not list(tmp_path.glob(".out.*"))


@pytest.mark.parametrize("layout,dtype", [("mxfp4", "source"), ("mxfp4", "bf16")])
def test_shards_written_at_once_are_the_files_written_one_by_one(
    base: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str, dtype: str
) -> None:
    snapshot = _hub_snapshot(base[layout], tmp_path / "cache")
    monkeypatch.setattr(bot.pruning.execute, "_cores", lambda: 1)
    one = prune_checkpoint(snapshot, tmp_path / "one", KEEP, dtype=dtype, max_shard_bytes=20_000)
    monkeypatch.setattr(bot.pruning.execute, "_cores", lambda: 16)
    several = prune_checkpoint(
        snapshot, tmp_path / "many", KEEP, dtype=dtype, max_shard_bytes=20_000
    )
    shards = len(list(one.path.glob("*.safetensors")))
    assert (
        bot.pruning.execute.shard_workers(shards, dequantize=dtype == "bf16", hashing_base=False)
        > 1
    )
    assert shards > 3
    assert _files(one.path) == _files(several.path)
    assert (several.bytes_read, several.bytes_written) == (one.bytes_read, one.bytes_written)


def test_a_failing_shard_stops_the_others_and_leaves_no_destination(
    base: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot = _hub_snapshot(base["mxfp4"], tmp_path / "cache")
    original = bot.checkpoint.ShardWriter.write_tensor

    def failing(self: bot.checkpoint.ShardWriter, name: str, chunks: object) -> None:
        if self.path.name.startswith("model-00002-"):
            raise OSError("disk full")
        original(self, name, chunks)  # type: ignore[arg-type]

    monkeypatch.setattr(bot.pruning.execute, "_cores", lambda: 16)
    monkeypatch.setattr(bot.checkpoint.ShardWriter, "write_tensor", failing)
    with pytest.raises(OSError, match="disk full"):
        prune_checkpoint(snapshot, tmp_path / "out", KEEP, max_shard_bytes=20_000)
    assert _nothing_at(tmp_path / "out")


def test_a_failure_while_writing_leaves_no_destination(
    base: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = bot.checkpoint.ShardWriter.write_tensor
    calls = []

    def failing(self: bot.checkpoint.ShardWriter, name: str, chunks: object) -> None:
        calls.append(name)
        if len(calls) == 5:
            raise OSError("disk full")
        original(self, name, chunks)  # type: ignore[arg-type]

    monkeypatch.setattr(bot.checkpoint.ShardWriter, "write_tensor", failing)
    with pytest.raises(OSError, match="disk full"):
        prune_checkpoint(base["bf16"], tmp_path / "out", KEEP)
    assert _nothing_at(tmp_path / "out")


def test_a_killed_run_leaves_no_destination_and_a_rerun_cleans_up(
    base: dict[str, Path], tmp_path: Path
) -> None:
    dst = tmp_path / "out"
    child = f"""
import sys, time
from pathlib import Path
import bot.checkpoint
import bot.prune
write = bot.checkpoint.ShardWriter.write_tensor
def stall(self, name, chunks):
    write(self, name, chunks)
    print("wrote", name, flush=True)
    time.sleep(600)
bot.checkpoint.ShardWriter.write_tensor = stall
from bot.prune import prune_checkpoint
prune_checkpoint(Path({str(base["bf16"])!r}), Path({str(dst)!r}), {KEEP!r})
"""
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("wrote ")
    finally:
        proc.kill()
        proc.wait()
    assert not dst.exists()
    [stale] = tmp_path.glob(".out.partial-*")
    assert stale.name == f".out.partial-{proc.pid}" and any(stale.iterdir())

    prune_checkpoint(base["bf16"], dst, KEEP)
    assert (dst / "hubbot.json").is_file()
    assert not list(tmp_path.glob(".out.*"))


def _rewrite_shard(
    folder: Path, shard: str, edit: dict[str, torch.Tensor | None], *, index: bool = True
) -> None:
    """Replace (or, for None, delete) tensors of one shard; with `index`, the index follows."""
    tensors = load_file(folder / shard)
    for name, tensor in edit.items():
        if tensor is None:
            del tensors[name]
        else:
            tensors[name] = tensor
    save_file(tensors, str(folder / shard), metadata={"format": "pt"})
    if not index:
        return
    index_path = folder / "model.safetensors.index.json"
    weight_map = json.loads(index_path.read_text())
    for name, tensor in edit.items():
        if tensor is None:
            weight_map["weight_map"].pop(name)
        else:
            weight_map["weight_map"][name] = shard
    index_path.write_text(json.dumps(weight_map))


def _shard_of(folder: Path, tensor: str) -> str:
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    return index["weight_map"][tensor]


ROUTER = "model.layers.0.mlp.router.weight"
DOWN = "model.layers.1.mlp.experts.down_proj"


def _break_model_type(src: Path) -> str:
    config = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**config, "model_type": "gpt-oss"}))
    return r"config\.json: no descriptor for model type 'gpt-oss'; did you mean 'gpt_oss'"


def _drop_tensor(src: Path) -> str:
    _rewrite_shard(src, _shard_of(src, DOWN), {DOWN: None})
    return rf"index\.json: lacks tensor {DOWN} "


def _reshape_tensor(src: Path) -> str:
    shard = _shard_of(src, ROUTER)
    _rewrite_shard(src, shard, {ROUTER: torch.zeros(SPEC.num_experts, 32, dtype=torch.bfloat16)})
    return rf"{shard}: tensor {ROUTER} has shape \[8, 32\], config\.json implies \[8, 64\]"


def _missing_shard(src: Path) -> str:
    index = json.loads((src / "model.safetensors.index.json").read_text())
    index["weight_map"][ROUTER] = "model-00009-of-00009.safetensors"
    (src / "model.safetensors.index.json").write_text(json.dumps(index))
    return r"index\.json: names shard model-00009-of-00009\.safetensors, which does not exist"


def _truncate_shard(src: Path) -> str:
    shard = src / _shard_of(src, DOWN)
    shard.write_bytes(shard.read_bytes()[:-100])
    return rf"{shard.name}: tensor \S+: data offsets .* outside the file"


def _corrupt_header(src: Path) -> str:
    shard = src / _shard_of(src, ROUTER)
    data = bytearray(shard.read_bytes())
    data[8:16] = b"garbage!"
    shard.write_bytes(bytes(data))
    return rf"{shard.name}: corrupt safetensors header: not JSON"


@pytest.mark.parametrize(
    "damage",
    [
        _break_model_type,
        _drop_tensor,
        _reshape_tensor,
        _missing_shard,
        _truncate_shard,
        _corrupt_header,
    ],
)
def test_bad_checkpoints_are_input_errors_and_write_nothing(
    base: dict[str, Path], tmp_path: Path, damage: object
) -> None:
    src = shutil.copytree(base["bf16"], tmp_path / "src")
    message = damage(src)  # type: ignore[operator]
    dst = tmp_path / "dst"
    with pytest.raises(InputError, match=message):
        prune_checkpoint(src, dst, KEEP)
    assert _nothing_at(dst)


@pytest.mark.parametrize(
    ("keep", "message"),
    [
        ({0: [0, 1, 2, 8], 1: [0, 1, 2, 3]}, r"layer 0: expert 8 is out of range 0\.\.7"),
        ({0: [0, 1, 1, 3], 1: [0, 1, 2, 3]}, "layer 0: expert 1 is listed twice"),
        ({0: [5], 1: [5]}, "layer 0: keeps 1 experts, fewer than the 2 each token is routed to"),
        ({0: [0, 1, 2, 3]}, "layer 1 is missing"),
        ({0: [0, 1], 1: [0, 1], 2: [0, 1]}, r"layer 2 does not exist \(layers 0\.\.1\)"),
        ({0: [0, 1, 2], 1: [0, 1]}, "every layer must keep the same number of experts"),
        ({"0": [0, 1], 1: [0, 1]}, "layer key '0' is not an integer"),
    ],
    ids=["range", "duplicate", "too-few", "missing", "extra", "unequal", "key"],
)
def test_bad_keep_lists_are_input_errors_and_write_nothing(
    base: dict[str, Path], tmp_path: Path, keep: dict, message: str
) -> None:
    with pytest.raises(InputError, match=message):
        prune_checkpoint(base["mxfp4"], tmp_path / "dst", keep)
    assert _nothing_at(tmp_path / "dst")


def test_an_unrelated_destination_is_never_replaced(base: dict[str, Path], tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="exists and is not a hubbot output"):
        prune_checkpoint(base["bf16"], dst, KEEP)
    assert [p.name for p in dst.iterdir()] == ["notes.txt"]


def test_load_keep_reads_lists_and_provenance(tmp_path: Path) -> None:
    plain = tmp_path / "keep.json"
    plain.write_text(json.dumps({"0": [3, 1], "1": [0, 2]}))
    assert load_keep(plain) == {0: [3, 1], 1: [0, 2]}
    record = tmp_path / "hubbot.json"
    record.write_text(json.dumps({"selection": {"kept_experts": {"0": [1, 2], "1": [4, 5]}}}))
    assert load_keep(record) == {0: [1, 2], 1: [4, 5]}
    plain.write_text(json.dumps({"zero": [1]}))
    with pytest.raises(InputError, match=r"keep\.json: entry 'zero'"):
        load_keep(plain)


def test_verify_structure_lists_every_problem(base: dict[str, Path], tmp_path: Path) -> None:
    folder = prune_checkpoint(base["mxfp4"], tmp_path / "out", KEEP).path
    verify_structure(folder)
    shard = "model-00001-of-00001.safetensors"
    blocks = "model.layers.0.mlp.experts.gate_up_proj_blocks"
    _rewrite_shard(
        folder,
        shard,
        {
            "model.norm.weight": None,
            blocks: torch.zeros(8, 128, 2, 16, dtype=torch.uint8),
            "model.layers.0.mlp.experts.gate_up_proj": torch.zeros(4, 64, 128),
        },
    )
    with pytest.raises(InputError) as info:
        verify_structure(folder)
    lines = str(info.value).splitlines()
    assert len(lines) == 3
    assert "missing tensor model.norm.weight (BF16 [64])" in lines[0]
    assert (
        f"tensor {blocks} has shape [8, 128, 2, 16], the model expects [4, 128, 2, 16]" in lines[1]
    )
    assert "unexpected tensor model.layers.0.mlp.experts.gate_up_proj" in lines[2]


def test_verify_structure_maps_per_expert_names(base: dict[str, Path], tmp_path: Path) -> None:
    verify_structure(base["per_expert"])
    folder = shutil.copytree(base["per_expert"], tmp_path / "src")
    name = "model.layers.1.mlp.experts.7.down_proj.bias"
    _rewrite_shard(folder, _shard_of(folder, name), {name: None})
    with pytest.raises(InputError, match=rf"missing tensor {name} \(BF16 \[64\]\)"):
        verify_structure(folder)
