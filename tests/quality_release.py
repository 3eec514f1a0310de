"""A small release with evaluation text, on the tiny random model (shared by quality tests)."""

from __future__ import annotations

import shutil
from pathlib import Path

from bot.fixtures import write_tiny_model

ROOT = Path(__file__).resolve().parents[1]
TINY_CONFIG = next(
    path
    for path in (ROOT / "tests" / "data" / "tiny-gpt-oss.config.json",
                 ROOT / "manifests" / "tiny-gpt-oss.config.json")
    if path.is_file()
)  # fmt: skip

GENERAL = """\
The committee met on Tuesday to discuss the new library opening hours.
Most members agreed that longer evening hours would help students and workers.
A short report on the budget will follow next month, with figures for each branch.
"""

MANIFEST = """\
base:
  repo: hubbot-demo/tiny-gpt-oss
  revision: main
  path: ../base
  config: tiny-gpt-oss.config.json
naming: "{{base_name}}-{{domain}}-pruned-{{experts}}-experts"
hub:
  namespace: hubbot-demo
experts:
  counts: [2, 4, 6]
output:
  format: mxfp4
  max_shard_bytes: 1048576
card:
  template: ../templates/model_card.md.j2
  tags: [demo]
generation:
  max_new_tokens: 2
  reasoning_effort: low
evaluation:
  tokens: 96
  sequence_length: 32
  batch_size: 4
  general:
    files: [general.txt]
{quality}domains:
  - id: prose
    title: Prose
    description: experts the base model routes to most on everyday prose
    statistics:
      source: calibration
      prompts:
        - "What is the capital of France?"
        - "Give me three tips for a good night's sleep."
    evaluation:
      prompts:
        - "Leaves change colour in autumn because the green chlorophyll breaks down."
        - "A good breakfast keeps you going until lunch, or so the saying goes."
    examples: ["Hello"]
  - id: math
    title: Math
    description: experts the base model routes to most on arithmetic
    statistics:
      source: calibration
      prompts:
        - "What is 17 times 23?"
        - "Solve for x: 2x + 3 = 11."
    evaluation:
      prompts:
        - "What is 12 plus 30? It is 42. What is 7 times 6? It is 42 as well."
        - "Is 91 a prime number? No: 91 is 7 times 13."
    examples: ["What is 2 + 2?"]
"""


def write_release(folder: Path, *, quality: str = "", base: bool = True) -> Path:
    """The release's manifest in `folder/manifests`, its base model in `folder/base`.

    `quality` is a line such as `quality: {max_kl: 0.1}` put before `domains`.
    """
    (folder / "manifests").mkdir(parents=True)
    shutil.copytree(ROOT / "templates", folder / "templates")
    shutil.copy(TINY_CONFIG, folder / "manifests")
    (folder / "manifests" / "general.txt").write_text(GENERAL, encoding="utf-8")
    if base:
        write_tiny_model(folder / "base", layout="mxfp4")
    path = folder / "manifests" / "release.yaml"
    path.write_text(MANIFEST.format(quality=quality + "\n" if quality else ""), encoding="utf-8")
    return path
