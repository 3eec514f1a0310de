"""Example runs on an NVIDIA GPU: one batched `generate` against one prompt at a time.

Models (nothing downloaded):

- `trained`: the trained tiny model shipped in the package (`bot/data/tiny-moe`, MXFP4
  experts), or the folder given with --trained, asked the `TRAINED_PROMPTS` (held-out
  arithmetic and continuations), whose greedy answers are clear, not near ties;
- `tiny`: the random test fixture (`bot.fixtures.write_tiny_model`), BF16 and MXFP4 layouts;
- `20b-16`: the gpt-oss-20b architecture (manifests/gpt-oss-20b.config.json) with 16
  experts per layer and random BF16 weights, saved with `save_pretrained` next to the
  fixture's small harmony tokenizer. The output-head rows of ids that tokenizer lacks are
  zeroed, so that generated tokens decode to comparable text; the compute is unchanged.

For each model it loads once (`bot.examples.load_model`), then answers all prompts in
one batch and each prompt alone (`generate_examples`, greedy), and twice more with seeded
sampling. Printed (and written to --out as JSON): generated tokens per second over the
whole batch and over the one-by-one runs, whether the greedy texts are identical, where
they first differ if not, whether the seeded runs repeat, and peak GPU memory.

Usage:
    python benchmarks/examples_cuda.py [--prompts 8] [--tokens 64] [--out results.json]
        [--models trained,tiny,tiny-mxfp4,20b-16] [--trained FOLDER]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from bot.examples import DTYPES, LoadedModel, generate_examples, load_model
from bot.fixtures import write_tiny_model, write_tokenizer
from bot.fixtures.tiny import tiny_generation_config
from bot.fixtures.trained import trained_model_folder
from bot.generation import GenerationSpec

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = [
    "Explain in three sentences why the sky looks blue during the day.",
    "Give two arguments for and two against working from home.",
    "Translate 'The library opens at nine tomorrow morning' into French.",
    "What is the derivative of x^3 + 2x with respect to x?",
    "Summarise the water cycle in exactly fifty words.",
    "List the planets of the solar system in order from the sun.",
    "Write a haiku about autumn leaves.",
    "What does a contract need to be legally binding? Answer briefly.",
    "Name three common symptoms of dehydration.",
    "Describe how a bicycle gear system works, for a ten-year-old.",
    "Which is heavier, a kilogram of feathers or a kilogram of iron?",
    "Write a polite two-line email declining a meeting.",
]
TRAINED_PROMPTS = [
    "What is 38 + 47?",
    "What is 91 - 36?",
    "What is 7 times 8?",
    "Add 64 and 29.",
    "Continue this Python code:\n\ndef read_lines(path):\n    with open(path) as f:",
    "Continue this text:\n\nReturn a new list containing the items of the",
    'Continue this licence text:\n\nTHE SOFTWARE IS PROVIDED "AS IS", WITHOUT',
    "What is 55 - 18?",
    "Compute 23 + 69.",
    "Continue this Python code:\n\nclass Stack:\n    def __init__(self):",
    "What is 12 × 11?",
    "Continue this text:\n\nThis module provides functions for",
]


def build_20b_16(folder: Path, device: str, experts: int = 16) -> Path:
    """gpt-oss-20b's architecture with `experts` random BF16 experts per layer, saved."""
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    from bot.descriptors import descriptor_for
    from bot.fixtures.tokenizer import vocab_size

    data = json.loads((ROOT / "manifests" / "gpt-oss-20b.config.json").read_text())
    for key in ("quantization_config", "architectures", "transformers_version"):
        data.pop(key, None)
    data = descriptor_for(data).rewrite_config(data, experts)
    generation = tiny_generation_config()  # the small tokenizer's end/pad ids
    data["eos_token_id"], data["pad_token_id"] = (
        generation["eos_token_id"][0],
        generation["pad_token_id"],
    )
    config = AutoConfig.for_model(data.pop("model_type"), **data)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    with torch.no_grad():
        model.lm_head.weight[vocab_size() :] = 0
    model.generation_config = GenerationConfig(**generation)
    model.save_pretrained(folder)
    write_tokenizer(folder)
    del model
    _empty_cache(device)
    return folder


def _empty_cache(device: str) -> None:
    if device == "cuda":
        torch.cuda.empty_cache()


def _peak_gib(device: str) -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None


def _first_difference(a: str, b: str) -> int | None:
    if a == b:
        return None
    return next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )


def measure(
    name: str, folder: Path, prompts: list[str], tokens: int, device: str
) -> dict[str, Any]:
    """Load once; time the batch, the one-by-one runs and seeded repeats."""
    cuda = device == "cuda"
    start = time.perf_counter()
    loaded: LoadedModel = load_model(folder, device=device)
    load_seconds = time.perf_counter() - start
    weights_gib = round(torch.cuda.memory_allocated() / 2**30, 2) if cuda else None
    greedy = GenerationSpec(max_new_tokens=tokens, reasoning_effort="low")
    generate_examples(
        loaded, prompts[:2], greedy.model_copy(update={"max_new_tokens": 4}), progress=False
    )  # warm-up

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    batched = generate_examples(loaded, prompts, greedy, progress=False)
    batch_peak = _peak_gib(device)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    singles = [generate_examples(loaded, [p], greedy, progress=False) for p in prompts]
    single_peak = _peak_gib(device)

    seeded = GenerationSpec(
        max_new_tokens=tokens, sampling="seeded", seed=1, temperature=0.8, top_p=0.95
    )
    sampled = [generate_examples(loaded, prompts, seeded, progress=False) for _ in range(2)]

    batch_tokens = sum(e.completion_tokens for e in batched.examples)
    single_tokens = sum(r.examples[0].completion_tokens for r in singles)
    single_seconds = sum(r.wall_seconds for r in singles)
    differences = [
        _first_difference(b.completion, s.examples[0].completion)
        for b, s in zip(batched.examples, singles, strict=True)
    ]
    result = {
        "model": name,
        "device": torch.cuda.get_device_name() if cuda else device,
        "dtype": batched.dtype,
        "dequantized": batched.dequantized,
        "versions": batched.versions,
        "prompts": len(prompts),
        "max_new_tokens": tokens,
        "load_seconds": round(load_seconds, 2),
        "weights_gib": weights_gib,
        "batched": {
            "seconds": round(batched.wall_seconds, 3),
            "tokens": batch_tokens,
            "tokens_per_second": round(batch_tokens / batched.wall_seconds, 1),
            "peak_gib": batch_peak,
        },
        "one_at_a_time": {
            "seconds": round(single_seconds, 3),
            "tokens": single_tokens,
            "tokens_per_second": round(single_tokens / single_seconds, 1),
            "per_prompt_tokens_per_second": round(
                sum(r.examples[0].tokens_per_second for r in singles) / len(singles), 1
            ),
            "peak_gib": single_peak,
        },
        "speedup": round(
            (batch_tokens / batched.wall_seconds) / (single_tokens / single_seconds), 2
        ),
        "greedy_identical": sum(d is None for d in differences),
        "first_difference_at_char": differences,
        "seeded_repeats": [e.completion for e in sampled[0].examples]
        == [e.completion for e in sampled[1].examples],
        "finished": [e.finished for e in batched.examples],
        "answers": [[p, e.final] for p, e in zip(prompts, batched.examples, strict=True)],
    }
    del loaded
    _empty_cache(device)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--models", default="trained,tiny,tiny-mxfp4,20b-16")
    parser.add_argument("--trained", type=Path, default=None, help="trained model folder")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--device", default="cuda", help="cpu only to try the script out")
    parser.add_argument(
        "--dtype",
        choices=["bfloat16", "float32"],
        help="diagnostic: load in this dtype instead of the device's own (float32 tells "
        "rounding from a batching bug when batched and one-by-one texts differ)",
    )
    args = parser.parse_args()
    if args.dtype:
        DTYPES[args.device] = getattr(torch, args.dtype)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device")
    results = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for name in args.models.split(","):
            start = time.perf_counter()
            prompts = (TRAINED_PROMPTS if name == "trained" else PROMPTS)[: args.prompts]
            if name == "trained":
                folder = args.trained or trained_model_folder()
            elif name == "tiny":
                folder = write_tiny_model(Path(tmp) / name, layout="bf16")
            elif name == "tiny-mxfp4":
                folder = write_tiny_model(Path(tmp) / name, layout="mxfp4")
            elif name == "20b-16":
                folder = build_20b_16(Path(tmp) / name, args.device)
            else:
                raise SystemExit(f"unknown model {name!r}")
            built = time.perf_counter() - start
            result = measure(name, folder, prompts, args.tokens, args.device)
            result["build_seconds"] = round(built, 1)
            print(json.dumps(result), flush=True)
            results.append(result)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
