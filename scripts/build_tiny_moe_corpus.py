"""Build the tiny MoE model's four-domain corpus and BPE tokenizer, offline, deterministically.

Domains (sources and licences: `bot/data/tiny-moe/NOTICE`):

- ``arithmetic``: harmony chat pairs made here (``What is 17 + 25?`` -> ``17 + 25 = 42``):
  sums and differences of numbers below 100, and the times tables up to 12 x 12;
- ``python``: source files of the Python standard library installed on this machine;
- ``prose``: English docstrings of those same modules (technical prose);
- ``legal``: the licence texts under ``/usr/share/common-licenses`` and Python's LICENSE.

Held-out text never reaches training: a module, a licence paragraph or an arithmetic
question is held out by a hash of its name (or text), so the split does not depend on the
order files are found in. Besides the raw text, the three text domains get harmony chat
pairs "Continue this ...:" -> the next lines, so that a chat prompt in any domain gets a
readable answer.

Writes into ``--out``:

- ``tokenizer/``: tokenizer.json (byte-level BPE, digits split one by one, the harmony
  special tokens first), tokenizer_config.json, chat_template.jinja;
- ``train-<domain>-text.npy`` (one token stream, documents joined by ``<|endoftext|>``) and
  ``train-<domain>-chat.npy`` + ``-chat-offsets.npy`` (rendered chat examples), uint16;
- ``heldout/<domain>.json``: held-out texts (for arithmetic: questions with answers), and
  ``heldout/LICENSE-PSF.txt``, the licence of the Python-derived texts;
- ``corpus.json``: what went in, with counts and the SHA-256 of every input file.

Running it twice on the same machine writes the same bytes.

Usage:
    python scripts/build_tiny_moe_corpus.py --out .dev/trained/corpus [--vocab 4096]
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import random
import re
import shutil
import sys
from pathlib import Path

import numpy as np
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.fixtures.tokenizer import BOS_TOKEN, CHAT_TEMPLATE, EOS_TOKEN, PAD_TOKEN, SPECIAL_TOKENS
from bot.fixtures.trained import arithmetic_problems, is_held_out, render_chat

STDLIB = Path(sys.base_prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
LICENCES = Path("/usr/share/common-licenses")
SKIPPED_STDLIB = ("test", "tests", "idlelib", "lib2to3", "turtledemo", "site-packages",
                  "dist-packages", "__pycache__", "ensurepip", "pydoc_data")  # fmt: skip
MAX_SOURCE_BYTES = 150_000
"""Larger stdlib files (generated tables, huge modules) are left out."""

PROMPTS = {
    "python": "Continue this Python code:\n\n",
    "prose": "Continue this text:\n\n",
    "legal": "Continue this licence text:\n\n",
}
"""The chat instruction of each text domain (the demo's examples use the same words)."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stdlib_files() -> list[Path]:
    """Standard-library sources, sorted, without tests, tools and oversized files."""
    files = []
    for path in sorted(STDLIB.rglob("*.py")):
        rel = path.relative_to(STDLIB)
        if any(part in SKIPPED_STDLIB for part in rel.parts) or rel.name.startswith("test_"):
            continue
        if path.is_symlink() or path.stat().st_size > MAX_SOURCE_BYTES:
            continue
        files.append(path)
    return files


def docstrings(source: str) -> list[str]:
    """English docstrings of one module (module, classes, functions), long enough to read."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    nodes = [tree, *ast.walk(tree)]
    out = []
    seen = set()
    for node in nodes:
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        text = ast.get_docstring(node, clean=True)
        if not text or len(text) < 160 or text in seen:
            continue
        letters = sum(c.isalpha() or c.isspace() for c in text)
        if letters < 0.85 * len(text):  # mostly code or tables
            continue
        seen.add(text)
        out.append(text)
    return out


def licence_files() -> list[Path]:
    """The licence texts: every real file under /usr/share/common-licenses, plus Python's."""
    files = sorted(p for p in LICENCES.iterdir() if p.is_file() and not p.is_symlink())
    return [*files, STDLIB / "LICENSE.txt"]


def paragraphs(text: str) -> list[str]:
    parts = [p.strip("\n") for p in re.split(r"\n\s*\n", text)]
    return [p for p in parts if p.strip()]


def collect_texts() -> tuple[dict[str, dict[str, list[str]]], dict]:
    """Train and held-out texts of the three text domains, and where they came from."""
    texts: dict[str, dict[str, list[str]]] = {
        d: {"train": [], "heldout": []} for d in ("python", "prose", "legal")
    }
    sources: dict[str, list[dict]] = {"python": [], "legal": []}
    for path in stdlib_files():
        rel = str(path.relative_to(STDLIB))
        split = "heldout" if is_held_out("module:" + rel, 10) else "train"
        source = path.read_text(encoding="utf-8", errors="replace")
        texts["python"][split].append(source)
        texts["prose"][split].extend(docstrings(source))
        sources["python"].append({"file": rel, "sha256": _sha256(path), "split": split})
    for path in licence_files():
        # Held-out paragraphs are whole paragraphs; the rest of the file stays one document.
        kept, held = [], []
        for para in paragraphs(path.read_text(encoding="utf-8", errors="replace")):
            (held if is_held_out("legal:" + para, 10) and len(para) > 200 else kept).append(para)
        texts["legal"]["train"].append("\n\n".join(kept))
        texts["legal"]["heldout"].extend(held)
        sources["legal"].append({"file": str(path), "sha256": _sha256(path)})
    return texts, sources


def continuation_pairs(domain: str, docs: list[str], count: int, rng: random.Random) -> list:
    """Chat pairs: a few lines of a training document, then its next lines as the answer."""
    pairs = []
    lines_of = [[line for line in doc.split("\n")] for doc in docs]
    lines_of = [lines for lines in lines_of if len(lines) >= 4]
    while len(pairs) < count:
        lines = rng.choice(lines_of)
        before = rng.randint(2, 6)
        after = rng.randint(2, 4)
        start = rng.randrange(0, max(1, len(lines) - before - after))
        head = "\n".join(lines[start : start + before]).strip("\n")
        tail = "\n".join(lines[start + before : start + before + after]).strip("\n")
        if len(head) < 20 or len(tail) < 10 or len(head) + len(tail) > 700:
            continue
        pairs.append((PROMPTS[domain] + head, tail))
    return pairs


def train_tokenizer(texts: list[str], vocab: int) -> Tokenizer:
    """Byte-level BPE with digits split one by one and the harmony special tokens as ids 0..8."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        min_frequency=2,
        show_progress=False,
        special_tokens=[AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return tokenizer


def write_tokenizer_files(tokenizer: Tokenizer, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(dst / "tokenizer.json"))
    config = {
        "bos_token": BOS_TOKEN,
        "clean_up_tokenization_spaces": False,
        "eos_token": EOS_TOKEN,
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": 4096,
        "pad_token": PAD_TOKEN,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    (dst / "tokenizer_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    (dst / "chat_template.jinja").write_text(CHAT_TEMPLATE, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    out: Path = args.out
    (out / "heldout").mkdir(parents=True, exist_ok=True)

    texts, sources = collect_texts()
    problems = arithmetic_problems()
    train_problems = [p for p in problems if not p.held_out]
    chats: dict[str, list[str]] = {"arithmetic": []}
    for problem in train_problems:
        for _ in range(2):  # two phrasings of each question
            question = problem.phrase(rng)
            chats["arithmetic"].append(
                render_chat(question, problem.answer, rng.choice(["low", "medium", "high"]))
            )
    counts = {"python": 12000, "prose": 8000, "legal": 4000}
    for domain, count in counts.items():
        chats[domain] = [
            render_chat(q, a, rng.choice(["low", "medium", "high"]))
            for q, a in continuation_pairs(domain, texts[domain]["train"], count, rng)
        ]

    tokenizer_texts = [t for d in texts.values() for t in d["train"]] + chats["arithmetic"][::4]
    tokenizer = train_tokenizer(tokenizer_texts, args.vocab)
    write_tokenizer_files(tokenizer, out / "tokenizer")
    pad = tokenizer.token_to_id(PAD_TOKEN)

    summary: dict = {"seed": args.seed, "vocab_size": tokenizer.get_vocab_size(), "domains": {}}
    for domain in ("arithmetic", "python", "prose", "legal"):
        entry: dict = {}
        if domain in texts:
            stream: list[int] = []
            for enc in tokenizer.encode_batch(texts[domain]["train"]):
                stream.extend(enc.ids)
                stream.append(pad)
            np.save(out / f"train-{domain}-text.npy", np.asarray(stream, dtype=np.uint16))
            entry["text_tokens"] = len(stream)
            entry["train_documents"] = len(texts[domain]["train"])
            heldout = texts[domain]["heldout"]
            entry["heldout_documents"] = len(heldout)
            (out / "heldout" / f"{domain}.json").write_text(json.dumps(heldout, indent=1) + "\n")
        encoded = [enc.ids for enc in tokenizer.encode_batch(chats[domain])]
        offsets = np.cumsum([0] + [len(ids) for ids in encoded])
        flat = np.asarray([i for ids in encoded for i in ids], dtype=np.uint16)
        np.save(out / f"train-{domain}-chat.npy", flat)
        np.save(out / f"train-{domain}-chat-offsets.npy", offsets.astype(np.int64))
        entry["chat_examples"] = len(encoded)
        entry["chat_tokens"] = int(flat.size)
        summary["domains"][domain] = entry
    held = [{"question": p.phrase(random.Random(i)), "answer": p.answer}
            for i, p in enumerate(p for p in problems if p.held_out)]  # fmt: skip
    (out / "heldout" / "arithmetic.json").write_text(json.dumps(held, indent=1) + "\n")
    shutil.copyfile(STDLIB / "LICENSE.txt", out / "heldout" / "LICENSE-PSF.txt")
    summary["domains"]["arithmetic"]["heldout_questions"] = len(held)
    summary["domains"]["arithmetic"]["train_problems"] = len(train_problems)
    summary["sources"] = sources
    (out / "corpus.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    print(json.dumps(summary["domains"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
