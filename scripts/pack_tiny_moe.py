"""Pack the trained tiny model into the release layout that hubbot ships and the Hub holds.

Reads the BF16 folder `scripts/train_tiny_moe.py` saved and the corpus' tokenizer; writes
`--out` as openai/gpt-oss-20b is laid out: expert weights as MXFP4 ``*_blocks``/``*_scales``
(packed by `bot.mxfp4`, bit-exact since training ended on MXFP4 values), everything else
BF16, in three shards named ``model-0000N-of-00002.safetensors`` with an index, and
config.json (with ``quantization_config``), generation_config.json, tokenizer.json,
tokenizer_config.json and chat_template.jinja. NOTICE, README.md and training.json (written
by hand, and from the training runs' metrics) are kept; every
other file there is replaced. With `--heldout`, also copies a few held-out texts per text
domain (never trained on) into `--heldout-out` for tests and calibration.

Usage:
    python scripts/pack_tiny_moe.py --trained OUT/bf16 --corpus CORPUS \\
        [--out bot/data/tiny-moe] [--heldout-out bot/data/tiny-moe-heldout]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_tiny_moe import model_config  # noqa: E402

from bot.mxfp4 import pack_expert_weight, unpack_expert_weight  # noqa: E402

MODULES_TO_NOT_CONVERT = [
    "model.layers.*.self_attn",
    "model.layers.*.mlp.router",
    "model.embed_tokens",
    "lm_head",
]
HELDOUT_TEXTS = 40
HELDOUT_CHARS = 1500
KEPT = ("NOTICE", "README.md", "training.json")


def _write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def release_tensors(trained: Path) -> dict[str, torch.Tensor]:
    """The trained weights in the stored layout: packed experts, BF16 for the rest."""
    index = json.loads((trained / "model.safetensors.index.json").read_text())
    weights: dict[str, torch.Tensor] = {}
    for shard in sorted(set(index["weight_map"].values())):
        weights.update(load_file(str(trained / shard)))
    out: dict[str, torch.Tensor] = {}
    for name, tensor in sorted(weights.items()):
        if name.endswith(("experts.gate_up_proj", "experts.down_proj")):
            blocks, scales = pack_expert_weight(tensor.float())
            if not torch.equal(unpack_expert_weight(blocks, scales), tensor.to(torch.bfloat16)):
                raise SystemExit(f"{name}: not on the MXFP4 grid (train with --qat)")
            out[name + "_blocks"], out[name + "_scales"] = blocks, scales
        else:
            out[name] = tensor.to(torch.bfloat16).contiguous()
    return out


def shard_of(name: str, layers: int) -> int:
    """Embeddings and the first half of the layers, the second half, then the head."""
    if name.startswith("model.layers."):
        return 0 if int(name.split(".")[2]) < layers // 2 else 1
    return 0 if name.startswith("model.embed_tokens") else 2


def pack(trained: Path, corpus: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for path in out.iterdir():
        if path.name not in KEPT:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    tokenizer_dir = corpus / "tokenizer"
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copyfile(tokenizer_dir / name, out / name)
    tokenizer = json.loads((tokenizer_dir / "tokenizer.json").read_text())
    ids = {t["content"]: t["id"] for t in tokenizer["added_tokens"]}
    vocab = len(tokenizer["model"]["vocab"])
    config = model_config(vocab, ids)
    trained_config = json.loads((trained / "config.json").read_text())
    for key in ("hidden_size", "num_hidden_layers", "num_local_experts", "vocab_size",
                "intermediate_size", "num_experts_per_tok", "sliding_window"):  # fmt: skip
        if trained_config[key] != config[key]:
            raise SystemExit(f"{key}: trained {trained_config[key]} != packed {config[key]}")
    config["quantization_config"] = {
        "modules_to_not_convert": MODULES_TO_NOT_CONVERT,
        "quant_method": "mxfp4",
    }
    _write_json(out / "config.json", config)
    generation = json.loads((trained / "generation_config.json").read_text())
    generation.pop("transformers_version", None)
    _write_json(out / "generation_config.json", generation)

    tensors = release_tensors(trained)
    layers = config["num_hidden_layers"]
    shards: dict[int, dict[str, torch.Tensor]] = {0: {}, 1: {}, 2: {}}
    for name, tensor in tensors.items():
        shards[shard_of(name, layers)][name] = tensor
    weight_map = {}
    for index, shard in shards.items():
        filename = f"model-{index:05d}-of-{len(shards) - 1:05d}.safetensors"
        save_file(shard, str(out / filename), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, filename))
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    _write_json(
        out / "model.safetensors.index.json",
        {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))},
    )


def copy_heldout(corpus: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for domain in ("python", "prose", "legal"):
        texts = json.loads((corpus / "heldout" / f"{domain}.json").read_text())
        texts = [t[:HELDOUT_CHARS] for t in texts if len(t) >= 200][:HELDOUT_TEXTS]
        (dst / f"{domain}.json").write_text(json.dumps(texts, indent=1) + "\n", encoding="utf-8")
    shutil.copyfile(corpus / "heldout" / "LICENSE-PSF.txt", dst / "LICENSE-PSF.txt")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trained", type=Path, required=True)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=ROOT / "bot" / "data" / "tiny-moe")
    parser.add_argument("--heldout-out", type=Path, default=None)
    args = parser.parse_args(argv)
    pack(args.trained, args.corpus, args.out)
    if args.heldout_out:
        copy_heldout(args.corpus, args.heldout_out)
    size = sum(p.stat().st_size for p in args.out.iterdir())
    print(f"wrote {args.out}: {size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
