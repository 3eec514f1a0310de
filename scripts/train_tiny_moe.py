"""Train hubbot's tiny GPT-OSS base model on the four-domain corpus, seeded.

The model is transformers' own `GptOssForCausalLM` (4 layers, 16 experts per layer, top-2,
hidden size 256), trained from scratch on what `scripts/build_tiny_moe_corpus.py` wrote:
each batch row is one domain's (arithmetic chat, Python, prose, licence text), drawn with
fixed weights; a text-domain row is either a window of raw text or packed chat pairs.

Three things differ from a plain `model(**batch)` loop, none in what is saved:

- the experts compute densely (every expert on every token, weighted by the router's top-k
  softmax, zero elsewhere): the same function and gradients as transformers' loop over
  experts, in three large matrix products instead of sixty-four small ones;
- for the last `--qat` fraction of steps the expert weights pass through MXFP4 fake
  quantization (straight-through gradient), so the model learns to work with the 4-bit
  experts it ships with. At the end the experts are replaced by their MXFP4 values, which
  BF16 holds exactly, so `scripts/pack_tiny_moe.py` reproduces them bit for bit;
- experts specialise by domain on purpose: each domain owns 4 of the 16 experts per layer
  (a seeded draw, `expert_groups`), a routing loss pulls each row's router probability
  towards its domain's experts, and in `--route-mask` of the rows the router may choose
  only among them. Large MoE models specialise by domain only in part; this model does it
  clearly, so that pruning for a domain (which finds the experts by calibration, knowing
  nothing of the groups) visibly keeps what the domain needs and loses the rest.

Written to --out: the model (`save_pretrained`, BF16, shards under 15 MB) and
`train-metrics.json` (losses, steps, wall time, held-out accuracy and perplexity as
evaluated here). Needs torch, transformers, numpy, tokenizers; a GPU for speed.

The shipped model was trained in two stages on one H200 (figures in
bot/data/tiny-moe/README.md):

    python scripts/train_tiny_moe.py --corpus C --out stage1 --steps 2800 --route-mask 0 \
        --route-loss 0
    python scripts/train_tiny_moe.py --corpus C --out stage2 --init stage1 --steps 1300 \
        --lr 1e-3 --warmup 100

Usage:
    python scripts/train_tiny_moe.py --corpus CORPUS --out OUT [--steps 5000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
import types
from pathlib import Path

import numpy as np
import torch

MIXTURE = {"arithmetic": 0.35, "python": 0.3, "prose": 0.2, "legal": 0.15}
"""Share of batch rows per domain."""
CHAT_SHARE = 0.5
"""Share of a text domain's rows that are chat pairs rather than raw text."""

GROUP = 4
"""Experts each domain owns per layer."""

_FP4_GRID = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
_FP4_MIDPOINTS = (0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0)


def model_config(vocab_size: int, ids: dict[str, int]) -> dict:
    """config.json of the model, in the form of openai/gpt-oss-20b's (no quantization yet)."""
    layers = 4
    return {
        "architectures": ["GptOssForCausalLM"],
        "attention_bias": True,
        "attention_dropout": 0.0,
        "bos_token_id": ids["<|startoftext|>"],
        "eos_token_id": ids["<|return|>"],
        "experts_per_token": 2,
        "head_dim": 64,
        "hidden_act": "silu",
        "hidden_size": 256,
        "initial_context_length": 128,
        "initializer_range": 0.02,
        "intermediate_size": 256,
        "layer_types": [
            "sliding_attention" if i % 2 == 0 else "full_attention" for i in range(layers)
        ],
        "max_position_embeddings": 4096,
        "model_type": "gpt_oss",
        "num_attention_heads": 4,
        "num_experts_per_tok": 2,
        "num_hidden_layers": layers,
        "num_key_value_heads": 2,
        "num_local_experts": 16,
        "output_router_logits": False,
        "pad_token_id": ids["<|endoftext|>"],
        "rms_norm_eps": 1e-05,
        "rope_scaling": {
            "beta_fast": 32.0,
            "beta_slow": 1.0,
            "factor": 32.0,
            "original_max_position_embeddings": 128,
            "rope_type": "yarn",
            "truncate": False,
        },
        "rope_theta": 150000,
        "router_aux_loss_coef": 0.02,
        "sliding_window": 128,
        "swiglu_limit": 7.0,
        "tie_word_embeddings": False,
        "use_cache": True,
        "vocab_size": vocab_size,
    }


def fake_mxfp4(weight: torch.Tensor, axis: int) -> torch.Tensor:
    """`weight` rounded to MXFP4 along `axis` (blocks of 32, as bot.mxfp4 packs it), with a
    straight-through gradient."""
    w = weight.transpose(axis, -1)
    g = w.float().reshape(*w.shape[:-1], -1, 32)
    amax = g.abs().amax(-1, keepdim=True)
    mantissa, exponent = torch.frexp(amax)
    exponent = exponent - 3 + (mantissa >= 0.875).to(exponent.dtype)
    exponent = torch.where(amax > 0, exponent, torch.zeros_like(exponent))
    scaled = torch.ldexp(g, -exponent.float())
    grid = torch.tensor(_FP4_GRID, device=g.device)
    codes = torch.bucketize(
        scaled.abs().clamp(max=6.0), torch.tensor(_FP4_MIDPOINTS, device=g.device)
    )
    q = torch.ldexp(grid[codes] * torch.sign(scaled), exponent.float())
    q = q.reshape(w.shape).transpose(axis, -1).to(weight.dtype)
    return weight + (q - weight).detach()


def expert_groups(layers: int, experts: int, seed: int) -> torch.Tensor:
    """[domains, layers, experts] bool: the experts each domain owns in each layer."""
    gen = torch.Generator().manual_seed(seed + 1)
    owned = torch.zeros(len(MIXTURE), layers, experts, dtype=torch.bool)
    for layer in range(layers):
        order = torch.randperm(experts, generator=gen)
        for domain in range(len(MIXTURE)):
            owned[domain, layer, order[domain * GROUP : (domain + 1) * GROUP]] = True
    return owned


def grouped_router_forward(self, hidden_states):
    """GptOssTopKRouter.forward, with `self.route_bias` (0 or -1e4 per token and expert)
    added before the top-k while training; keeps the plain logits for the routing loss."""
    logits = torch.nn.functional.linear(hidden_states, self.weight, self.bias)
    self.raw_logits = logits
    bias = getattr(self, "route_bias", None)
    chosen = logits if bias is None else logits + bias.to(logits.dtype)
    top_value, top_index = torch.topk(chosen, self.top_k, dim=-1)
    scores = torch.nn.functional.softmax(top_value, dim=1, dtype=top_value.dtype)
    return chosen, scores, top_index


def dense_experts_forward(self, hidden_states, router_indices=None, routing_weights=None):
    """GptOssExperts.forward computed densely (same outputs and gradients)."""
    tokens = hidden_states.shape[0]
    weights = torch.zeros(
        tokens, self.num_experts, device=hidden_states.device, dtype=routing_weights.dtype
    )
    weights = weights.scatter(1, router_indices, routing_weights)
    gate_up, down = self.gate_up_proj, self.down_proj
    if getattr(self, "qat", False):
        gate_up, down = fake_mxfp4(gate_up, axis=-2), fake_mxfp4(down, axis=-2)
    h = torch.einsum("th,ehf->etf", hidden_states, gate_up) + self.gate_up_proj_bias[:, None]
    h = self._apply_gate(h)
    out = torch.einsum("etf,efh->eth", h, down) + self.down_proj_bias[:, None]
    return torch.einsum("eth,te->th", out, weights.to(out.dtype)).to(hidden_states.dtype)


class Batches:
    """Seeded batch rows drawn from the corpus arrays."""

    def __init__(self, corpus: Path, seq: int, pad: int, seed: int, device: str) -> None:
        self.seq, self.pad, self.device = seq, pad, device
        self.rng = np.random.default_rng(seed)
        self.text, self.chat = {}, {}
        for domain in MIXTURE:
            text = corpus / f"train-{domain}-text.npy"
            if text.exists():
                self.text[domain] = np.load(text, allow_pickle=False).astype(np.int64)
            flat = np.load(corpus / f"train-{domain}-chat.npy", allow_pickle=False)
            offsets = np.load(corpus / f"train-{domain}-chat-offsets.npy", allow_pickle=False)
            self.chat[domain] = (flat.astype(np.int64), offsets)
        self.domains = list(MIXTURE)
        self.weights = np.array([MIXTURE[d] for d in self.domains])

    def row(self, domain: str) -> tuple[np.ndarray, np.ndarray]:
        seq = self.seq
        if domain in self.text and self.rng.random() >= CHAT_SHARE:
            stream = self.text[domain]
            start = int(self.rng.integers(0, len(stream) - seq - 1))
            ids = stream[start : start + seq]
            return ids, ids.copy()
        flat, offsets = self.chat[domain]
        ids = np.full(seq, self.pad, dtype=np.int64)
        labels = np.full(seq, -100, dtype=np.int64)
        used = 0
        while used < seq:
            k = int(self.rng.integers(0, len(offsets) - 1))
            example = flat[offsets[k] : offsets[k + 1]][: seq - used]
            ids[used : used + len(example)] = example
            labels[used : used + len(example)] = example
            used += len(example)
            if seq - used < 24:
                break
        return ids, labels

    def batch(self, rows: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Token ids, labels (-100 on padding) and each row's domain index."""
        picks = self.rng.choice(len(self.domains), size=rows, p=self.weights / self.weights.sum())
        pairs = [self.row(self.domains[i]) for i in picks]
        ids = torch.from_numpy(np.stack([p[0] for p in pairs]))
        labels = torch.from_numpy(np.stack([p[1] for p in pairs]))
        domains = torch.from_numpy(picks.astype(np.int64))
        return (
            ids.to(self.device, non_blocking=True),
            labels.to(self.device, non_blocking=True),
            domains.to(self.device, non_blocking=True),
        )


@torch.no_grad()
def arithmetic_accuracy(model, tokenizer, heldout: list[dict], device: str) -> dict:
    """Greedy answers to the held-out questions, through the chat template; exact matches."""
    tokenizer.padding_side = "left"
    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": q["question"]}],
            tokenize=False,
            add_generation_prompt=True,
            reasoning_effort="low",
        )
        for q in heldout
    ]
    correct = 0
    samples = []
    for start in range(0, len(prompts), 256):
        enc = tokenizer(
            prompts[start : start + 256],
            return_tensors="pt",
            padding=True,
            add_special_tokens=False,
        ).to(device)
        out = model.generate(
            **enc,
            max_new_tokens=20,
            do_sample=False,
            eos_token_id=tokenizer.convert_tokens_to_ids("<|return|>"),
            pad_token_id=tokenizer.pad_token_id,
        )
        for i, row in enumerate(out[:, enc["input_ids"].shape[1] :]):
            text = tokenizer.decode(row, skip_special_tokens=False)
            answer = text.split("<|message|>", 1)[-1].split("<|return|>")[0].split("<|end|>")[0]
            expected = heldout[start + i]["answer"]
            correct += answer.strip() == expected
            if len(samples) < 8:
                samples.append([heldout[start + i]["question"], answer])
    return {
        "correct": correct,
        "total": len(prompts),
        "accuracy": correct / len(prompts),
        "samples": samples,
    }


@torch.no_grad()
def perplexity(model, tokenizer, texts: list[str], device: str, seq: int = 256) -> float:
    """Token-level perplexity over the first `seq` tokens of each held-out text."""
    total, count = 0.0, 0
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][:seq]
        if len(ids) < 8:
            continue
        ids = torch.tensor([ids], device=device)
        out = model(input_ids=ids, labels=ids)
        total += float(out.loss) * (ids.shape[1] - 1)
        count += ids.shape[1] - 1
    return math.exp(total / count)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=96, help="rows of --seq tokens per step")
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--qat", type=float, default=0.25, help="final share of steps with MXFP4")
    parser.add_argument(
        "--time-budget",
        type=float,
        default=None,
        help="seconds: cut --steps to what fits, measured after 50 steps",
    )
    parser.add_argument(
        "--route-mask", type=float, default=0.5, help="share of rows routed in-domain only"
    )
    parser.add_argument("--route-loss", type=float, default=0.05, help="routing loss weight")
    parser.add_argument("--init", type=Path, default=None, help="start from this saved model")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)

    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig
    from transformers.models.gpt_oss.modeling_gpt_oss import GptOssExperts, GptOssTopKRouter

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cuda.matmul.allow_tf32 = True
    tokenizer = AutoTokenizer.from_pretrained(args.corpus / "tokenizer")
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in tokenizer.all_special_tokens}
    ids.update({t: tokenizer.convert_tokens_to_ids(t) for t in ("<|return|>", "<|startoftext|>")})
    data = model_config(len(tokenizer), ids)
    config = AutoConfig.for_model(**{k: v for k, v in data.items() if k != "architectures"})
    config.architectures = data["architectures"]
    if args.init:  # a second stage starts from an earlier stage's saved model
        model = AutoModelForCausalLM.from_pretrained(args.init, dtype=torch.float32)
        for key in ("hidden_size", "num_hidden_layers", "num_local_experts", "vocab_size"):
            if getattr(model.config, key) != getattr(config, key):
                raise SystemExit(f"--init {args.init}: {key} differs from the script's config")
        model = model.to(args.device)
    else:
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).to(args.device)
    experts = [m for m in model.modules() if isinstance(m, GptOssExperts)]
    for module in experts:
        module.forward = types.MethodType(dense_experts_forward, module)
    routers = [m for m in model.modules() if isinstance(m, GptOssTopKRouter)]
    for module in routers:
        module.forward = types.MethodType(grouped_router_forward, module)
    owned = expert_groups(len(routers), config.num_local_experts, args.seed).to(args.device)
    mask_rng = torch.Generator(device="cpu").manual_seed(args.seed + 2)
    print(f"parameters: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M", flush=True)

    batches = Batches(args.corpus, args.seq, tokenizer.pad_token_id, args.seed, args.device)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "router" not in n]
    other = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "router" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": other, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.95),
        fused=args.device == "cuda",
    )
    steps, warmup = args.steps, args.warmup
    log: list[dict] = []
    model.train()
    started = time.perf_counter()
    step = 0
    while step < steps:
        qat = step >= int(steps * (1 - args.qat))
        for module in experts:
            module.qat = qat
        progress = min(1.0, max(0.0, (step - warmup) / max(1, steps - warmup)))
        lr = (
            args.lr
            * min(1.0, (step + 1) / warmup)
            * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
        )
        for group in optimizer.param_groups:
            group["lr"] = lr
        input_ids, labels, domains = batches.batch(args.batch)
        masked = (torch.rand(len(domains), generator=mask_rng) < args.route_mask).to(args.device)
        for layer, module in enumerate(routers):
            mine = owned[domains, layer]  # [rows, experts]
            bias = torch.where(mine | ~masked[:, None], 0.0, -1e4)
            module.route_bias = bias.repeat_interleave(args.seq, dim=0)
        with torch.autocast(args.device, dtype=torch.bfloat16, enabled=args.device == "cuda"):
            out = model(
                input_ids=input_ids, labels=labels, output_router_logits=True, use_cache=False
            )
        real = (labels != -100).reshape(-1)
        route_loss = 0.0
        for layer, module in enumerate(routers):
            logp = torch.log_softmax(module.raw_logits.float(), dim=-1)
            mine = owned[domains, layer].repeat_interleave(args.seq, dim=0)
            in_group = torch.logsumexp(logp.masked_fill(~mine, -1e4), dim=-1)
            route_loss = route_loss - in_group[real].mean() / len(routers)
        (out.loss + args.route_loss * route_loss).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        if step == 50 and args.time_budget:
            rate = (time.perf_counter() - started) / 50
            fit = int(args.time_budget / rate) // 100 * 100
            if fit < steps:
                print(f"{rate * 1000:.0f} ms/step: cutting {steps} steps to {fit}", flush=True)
                steps = max(fit, 100)
        if step % 100 == 0 or step == steps:
            entry = {
                "step": step,
                "loss": round(float(out.loss), 4),
                "aux": round(float(out.aux_loss), 4),
                "route": round(float(route_loss), 4),
                "lr": lr,
                "qat": qat,
                "seconds": round(time.perf_counter() - started, 1),
            }
            log.append(entry)
            print(json.dumps(entry), flush=True)
    train_seconds = time.perf_counter() - started

    for module in routers:
        del module.forward, module.route_bias, module.raw_logits
    with torch.no_grad():  # the experts become their MXFP4 values (exact in BF16)
        for module in experts:
            module.gate_up_proj.copy_(fake_mxfp4(module.gate_up_proj, axis=-2))
            module.down_proj.copy_(fake_mxfp4(module.down_proj, axis=-2))
            module.qat = False
    model = model.to(torch.bfloat16).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|startoftext|>"],
        do_sample=True,
        eos_token_id=[ids["<|return|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
    )
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out, max_shard_size="14MB")

    heldout = json.loads((args.corpus / "heldout" / "arithmetic.json").read_text())
    metrics = {
        "seed": args.seed,
        "steps": steps,
        "batch": args.batch,
        "seq": args.seq,
        "lr": args.lr,
        "init": str(args.init) if args.init else None,
        "qat_share": args.qat,
        "route_mask": args.route_mask,
        "route_loss": args.route_loss,
        "expert_groups": {
            d: [torch.nonzero(owned[i, layer]).flatten().tolist() for layer in range(len(routers))]
            for i, d in enumerate(MIXTURE)
        },
        "train_seconds": round(train_seconds, 1),
        "device": torch.cuda.get_device_name() if args.device == "cuda" else args.device,
        "torch": torch.__version__,
        "log": log,
        "heldout_arithmetic_phrased": arithmetic_accuracy(model, tokenizer, heldout, args.device),
        "perplexity": {
            d: perplexity(
                model,
                tokenizer,
                json.loads((args.corpus / "heldout" / f"{d}.json").read_text())[:60],
                args.device,
            )
            for d in ("python", "prose", "legal")
        },
    }
    (args.out / "train-metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    print(json.dumps({k: v for k, v in metrics.items() if k != "log"}, indent=1), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
