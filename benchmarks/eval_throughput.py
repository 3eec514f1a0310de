"""Quality evaluation of a whole release on one GPU: every variant of the 20b layout.

The model is gpt-oss-20b's architecture (manifests/gpt-oss-20b.config.json) with random
BF16 weights, built directly on the GPU (no checkpoint). Each of `--domains` domains gets
its own random expert ranking per layer and `--tokens` scored tokens of random text; one
general set is shared. Every count `--min`..`--max` of every domain is evaluated on its
domain's set and on the general set by `bot.quality.evaluate.evaluate_variants` (one
model, router masks), as `hubbot eval` does.

Printed (and written to --out as JSON): wall time of the whole release, scored tokens per
second (a variant's token counts once per variant) and model tokens per second (base
passes included); the setup before the first domain (building the model, compiling
attention, the baseline and the determinism check) and the process time so far; each
domain's time (29 variants on 2 sets: the same work 8 times) and their median; as the
baseline, measured in the same run, the median time of a bare forward pass over one batch
on the model's loaded attention (no masks, no metrics), and the ratio of the release's
model-token rate to it; whether a repeated evaluation of two variants gives the same
figures bit for bit; peak GPU memory.

Window length and batch size default to the manifest's (`EvaluationSpec`). The model runs
the attention `hubbot eval` gives it (`evaluation_attention`: flex attention on CUDA for
gpt-oss); `--attention eager` keeps the loaded one. Timing per domain runs the general
set's base pass once per domain, 7 more passes than one `hubbot eval` call (~1%).

Usage:
    python benchmarks/eval_throughput.py [--tokens 32768] [--general-tokens 32768]
        [--attention auto|eager] [--only 0 1 2 3] [--out r.json]

A whole release runs close to one device command's 10-minute limit: time it in two calls,
`--only 0 1 2 3` and `--only 4 5 6 7`, and add the two `wall_s`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from contextlib import ExitStack, nullcontext
from pathlib import Path

import torch

from bot.descriptors import descriptor_for
from bot.quality.evaluate import evaluate_variants, evaluation_attention
from bot.quality.spec import EvaluationSpec
from bot.quality.texts import EvalSet

ROOT = Path(__file__).resolve().parents[1]


def build_model(config_path: Path, device: str, implementation: str | None) -> torch.nn.Module:
    from transformers import AutoConfig, AutoModelForCausalLM

    data = json.loads(config_path.read_text())
    for key in ("quantization_config", "architectures", "transformers_version"):
        data.pop(key, None)
    if implementation:
        data["experts_implementation"] = implementation
    config = AutoConfig.for_model(data.pop("model_type"), **data)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    with torch.no_grad():  # routers with a spread of a few units, as a trained model has
        for layer in model.model.layers:
            layer.mlp.router.weight.normal_(0, 3.0 * config.hidden_size**-0.5)
    return model.eval()


def random_set(name: str, tokens: int, length: int, vocab: int, seed: int) -> EvalSet:
    gen = torch.Generator().manual_seed(seed)
    windows, left = [], tokens
    while left > 0:
        n = min(length, left + 1)
        windows.append(tuple(torch.randint(0, vocab, (n,), generator=gen).tolist()))
        left -= n - 1
    return EvalSet(name, "random tokens", tuple(windows), 1, f"seed {seed}", f"seed {seed}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--domains", type=int, default=8)
    parser.add_argument(
        "--only",
        type=int,
        nargs="+",
        help="time only these domain numbers (0-based; each domain's text and ranking are "
        "seeded by its number, so two calls with halves measure exactly the whole release)",
    )
    parser.add_argument("--min", type=int, default=4)
    parser.add_argument("--max", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=32768, help="scored tokens per domain")
    parser.add_argument("--general-tokens", type=int, default=32768)
    defaults = EvaluationSpec()
    parser.add_argument("--sequence-length", type=int, default=defaults.sequence_length)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--attention", choices=["auto", "eager"], default="auto")
    parser.add_argument("--experts-implementation", default=None)
    parser.add_argument("--device", default="cuda")
    parser.add_argument(
        "--config", type=Path, default=ROOT / "manifests" / "gpt-oss-20b.config.json"
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    cuda = args.device.startswith("cuda")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    started = time.perf_counter()
    model = build_model(args.config, args.device, args.experts_implementation)
    sync()
    build_s = time.perf_counter() - started
    config = model.config
    data = config.to_dict()
    descriptor = descriptor_for(data)
    layers, experts = descriptor.moe_layer_indices(data), descriptor.num_experts(data)
    vocab = config.vocab_size
    length, batch = args.sequence_length, args.batch_size

    sets = [
        random_set(f"d{d}", args.tokens, length, vocab, seed=d + 1) for d in range(args.domains)
    ]
    general = args.general_tokens > 0
    if general:
        sets.append(random_set("general", args.general_tokens, length, vocab, seed=0))
    variants = {}
    gen = torch.Generator().manual_seed(1234)
    for d in range(args.domains):
        order = {layer: torch.randperm(experts, generator=gen).tolist() for layer in layers}
        for n in range(args.min, args.max + 1):
            keep = {layer: sorted(order[layer][:n]) for layer in layers}
            names = [f"d{d}", "general"] if general else [f"d{d}"]
            variants[f"d{d}-{n}"] = (keep, names)

    auto = args.attention == "auto"
    attention = evaluation_attention(model, sets, batch) if auto else nullcontext("eager")
    stack = ExitStack()
    attention_name = stack.enter_context(attention)
    # Baseline: a bare forward pass over one full batch, median of five after a warm-up
    # (the warm-up also compiles flex attention's kernels, so the release is not charged).
    full = [list(w) for w in sets[0].windows if len(w) == length][:batch]
    ids = torch.tensor(full, device=args.device)
    print(f"model built in {build_s:.1f} s; attention {attention_name}", flush=True)
    times = []
    with torch.inference_mode():
        sync()
        t = time.perf_counter()
        model(input_ids=ids, use_cache=False)
        sync()
        first_s = time.perf_counter() - t
        for i in range(6):
            sync()
            t = time.perf_counter()
            model(input_ids=ids, use_cache=False)
            sync()
            if i:
                times.append(time.perf_counter() - t)
    forward_s = statistics.median(times)
    forward_rate = ids.numel() / forward_s

    # Determinism: two variants, twice.
    pair = dict(list(variants.items())[:1] + list(variants.items())[-1:])
    small = [s for s in sets if s.name in ("d0", f"d{args.domains - 1}")]
    small = [EvalSet(s.name, s.source, s.windows[: 2 * batch], 1, "", "") for s in small]
    pair = {v: (keep, [n for n in names if n != "general"]) for v, (keep, names) in pair.items()}
    first = evaluate_variants(model, small, pair, batch_size=batch, progress=False)
    second = evaluate_variants(model, small, pair, batch_size=batch, progress=False)
    deterministic = first == second

    cuda and torch.cuda.reset_peak_memory_stats()
    timed = args.only if args.only is not None else list(range(args.domains))
    result: dict = {
        "gpu": torch.cuda.get_device_name() if cuda else "cpu",
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "experts_implementation": getattr(config, "_experts_implementation", None),
        "attention": attention_name,
        "variants": len(variants),
        "domains": args.domains,
        "timed_domains": list(timed),
        "tokens_per_domain": args.tokens,
        "general_tokens": args.general_tokens,
        "sequence_length": length,
        "batch_size": batch,
        "model_build_s": round(build_s, 1),
        "first_forward_s": round(first_s, 1),
        "baseline_forward_s": round(forward_s, 4),
        "baseline_forward_tokens_per_s": round(forward_rate),
        "deterministic": deterministic,
        "setup_s": round(time.perf_counter() - started, 1),
        "per_domain_s": [],
    }
    # One call per domain (its counts on its own set and the general set), timed apiece and
    # written out as it goes, so that a run cut short still says how far it got.
    figures: dict = {}
    wall = 0.0
    model_tokens = 0
    for d in timed:
        chosen = {v: spec for v, spec in variants.items() if v.startswith(f"d{d}-")}
        names = {n for _, spec in chosen.values() for n in spec}
        used = [s for s in sets if s.name in names]
        sync()
        t = time.perf_counter()
        figures.update(evaluate_variants(model, used, chosen, batch_size=batch, progress=False))
        sync()
        seconds = time.perf_counter() - t
        wall += seconds
        model_tokens += sum(s.tokens * (1 + len(chosen)) for s in used)
        result["per_domain_s"].append(round(seconds, 1))
        scored = sum(f.tokens for per in figures.values() for f in per.values())
        result.update(
            {
                "variants_done": len(figures),
                "wall_s": round(wall, 1),
                "median_domain_s": round(statistics.median(result["per_domain_s"]), 1),
                "scored_tokens": scored,
                "scored_tokens_per_s": round(scored / wall),
                "model_tokens": model_tokens,
                "model_tokens_per_s": round(model_tokens / wall),
                "ratio_to_bare_forward": round(model_tokens / wall / forward_rate, 3),
                "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1)
                if cuda
                else None,
            }
        )
        result["process_s"] = round(time.perf_counter() - started, 1)
        print(f"domain {d}: {seconds:.1f} s, {len(figures)} variants done", flush=True)
        if args.out:
            args.out.write_text(json.dumps(result, indent=2) + "\n")
    result["sample"] = {
        v: {n: vars(f) for n, f in figures[v].items()}
        for v in ("d0-4", "d0-16", f"d0-{args.max}")
        if v in figures
    }
    stack.close()
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
