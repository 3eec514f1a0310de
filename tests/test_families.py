"""Every family: a tiny transformers model pruned by `hubbot prune` loads cleanly and
computes what its base computes with the removed experts masked out of routing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers

from bot.descriptors import descriptor_for
from bot.families.hooks import masked_routers
from bot.fixtures.families import FAMILIES, write_family_model
from bot.model_stats import model_stats, parameter_counts
from tests.test_cli import run

# kept experts: two of each routing group (experts 0..3, 4..7), so group-limited routing holds
KEEP = [0, 2, 5, 7]


@pytest.fixture(scope="module", params=FAMILIES)
def family(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    model_type = request.param
    root = tmp_path_factory.mktemp(model_type)
    base = write_family_model(root / "base", model_type)
    config = json.loads((base / "config.json").read_text())
    layers = descriptor_for(config).moe_layer_indices(config)
    keep_file = root / "keep.json"
    keep_file.write_text(json.dumps({str(layer): KEEP for layer in layers}))
    code, _, err = run("prune", str(base), str(root / "pruned"), "--keep", str(keep_file))
    assert code == 0, err
    return model_type, base, root / "pruned", {layer: KEEP for layer in layers}


def _load(folder: Path) -> tuple[torch.nn.Module, dict]:
    model, info = transformers.AutoModelForCausalLM.from_pretrained(
        folder, dtype=torch.float32, output_loading_info=True
    )
    return model.eval(), info


def test_pruned_model_loads_with_no_missing_or_unexpected_keys(family: tuple) -> None:
    _, _, pruned, _ = family
    _, info = _load(pruned)
    assert not info["missing_keys"]
    assert not info["unexpected_keys"]
    assert not info["mismatched_keys"]
    config = json.loads((pruned / "config.json").read_text())
    assert descriptor_for(config).num_experts(config) == len(KEEP)


def test_pruned_logits_equal_the_masked_base(family: tuple) -> None:
    _, base, pruned, keep = family
    base_model, _ = _load(base)
    pruned_model, _ = _load(pruned)
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, base_model.config.vocab_size, (2, 12), generator=generator)
    with torch.no_grad():
        plain = base_model(ids).logits
        with masked_routers(base_model, keep):
            masked = base_model(ids).logits
        got = pruned_model(ids).logits
    torch.testing.assert_close(got, masked, rtol=0, atol=1e-5)
    assert (plain - masked).abs().max() > 1e-4, "masking changed nothing: the test cannot fail"


def test_stats_equal_a_meta_device_count(family: tuple) -> None:
    _, base, pruned, _ = family
    base_config = json.loads((base / "config.json").read_text())
    stats = model_stats(pruned, base_config=base_config)
    config = transformers.AutoConfig.from_pretrained(pruned)
    with torch.device("meta"):
        meta = transformers.AutoModelForCausalLM.from_config(config)
    assert stats.total_params == sum(p.numel() for p in meta.parameters())
    counts = parameter_counts(base_config)
    with torch.device("meta"):
        full = transformers.AutoModelForCausalLM.from_config(
            transformers.AutoConfig.from_pretrained(base)
        )
    assert counts.total == sum(p.numel() for p in full.parameters())
    assert counts.total_for(len(KEEP)) == stats.total_params
    # active: everything but the input embeddings and the experts a token does not use,
    # one expert's worth measured as what a meta model with one expert fewer lacks
    fewer = json.loads((pruned / "config.json").read_text())
    fewer = descriptor_for(fewer).rewrite_config(fewer, len(KEEP) - 1)
    with torch.device("meta"):
        smaller = transformers.AutoModelForCausalLM.from_config(
            transformers.AutoConfig.for_model(fewer.pop("model_type"), **fewer)
        )
    total = sum(p.numel() for p in meta.parameters())
    one_expert = total - sum(p.numel() for p in smaller.parameters())
    embedding = meta.get_input_embeddings().weight.numel()
    unused = (len(KEEP) - stats.top_k) * one_expert
    assert stats.active_params == total - embedding - unused
    assert stats.params_per_expert * len(keep_layers(pruned)) == one_expert


def keep_layers(folder: Path) -> list[int]:
    config = json.loads((folder / "config.json").read_text())
    return descriptor_for(config).moe_layer_indices(config)


def test_an_unknown_model_type_names_the_families(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "config.json").write_text('{"model_type": "llama4_moe"}')
    keep = tmp_path / "keep.json"
    keep.write_text('{"0": [0, 1]}')
    code, _, err = run("prune", str(tmp_path / "src"), str(tmp_path / "dst"), "--keep", str(keep))
    assert code == 2
    assert "llama4_moe" in err
    for model_type in ("gpt_oss", *FAMILIES):
        assert model_type in err


def test_a_tensor_off_the_family_layout_is_named(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    base = write_family_model(tmp_path / "base", "mixtral")
    shard = base / "model.safetensors"
    tensors = load_file(shard)
    name = "model.layers.1.block_sparse_moe.experts.3.w2.weight"
    tensors["model.layers.1.block_sparse_moe.experts.3.w2_renamed.weight"] = tensors.pop(name)
    save_file(tensors, shard, metadata={"format": "pt"})
    keep = tmp_path / "keep.json"
    keep.write_text(json.dumps({str(layer): KEEP for layer in range(3)}))
    code, _, err = run("prune", str(base), str(tmp_path / "dst"), "--keep", str(keep))
    assert code == 2
    assert f"lacks tensor {name}" in err
    assert not (tmp_path / "dst").exists()


def test_group_limited_routing_needs_the_same_count_in_every_group(tmp_path: Path) -> None:
    base = write_family_model(tmp_path / "base", "deepseek_v3")
    keep = tmp_path / "keep.json"
    keep.write_text(json.dumps({"1": [0, 1, 2, 4], "2": [0, 2, 5, 7]}))
    code, _, err = run("prune", str(base), str(tmp_path / "dst"), "--keep", str(keep))
    assert code == 2
    assert "layer 1 keeps [3, 1] experts of its 2 routing groups" in err
    keep.write_text(json.dumps({"1": [0, 1, 4], "2": [0, 2, 5]}))
    code, _, err = run("prune", str(base), str(tmp_path / "dst"), "--keep", str(keep))
    assert code == 2
    assert "n_group is 2: keep a multiple of 2 experts" in err
    keep.write_text(json.dumps({"0": [0, 1, 4, 5], "1": [0, 1, 4, 5], "2": [0, 2, 5, 7]}))
    code, _, err = run("prune", str(base), str(tmp_path / "dst"), "--keep", str(keep))
    assert code == 2
    assert "layer 0 is dense (it has no experts)" in err


def _code_strings(path: Path) -> list[tuple[int, str]]:
    """String constants of a module that are code, not docstrings (f-string parts too), and
    attribute names."""
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    strings = [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]
    # `config.num_local_experts` names a key as surely as `config["num_local_experts"]`
    attributes = [
        (node.lineno, node.attr)
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr not in _OWN_ATTRIBUTES
    ]
    return strings + attributes


# Our own attributes that share a family key's name (`descriptor.num_experts(config)`).
_OWN_ATTRIBUTES = {"num_experts"}

# Our own formats' fields that happen to share a family key's name (not config keys).
_OWN_FIELDS = {
    ("bot/selection/check.py", "num_experts"),  # the packed fingerprint index
    ("bot/selection/fingerprints.py", "num_experts"),
}


def test_no_family_config_key_is_named_outside_the_families_folder() -> None:
    """The engine asks the family: no code outside bot/families/ names a family's config
    key (test fixtures, which build models of a family, and the data files excepted)."""
    import re

    from bot.descriptors import registered_types

    keys = set()
    for model_type in registered_types():
        keys |= descriptor_for({"model_type": model_type}).config_keys()
    assert {"num_local_experts", "n_group", "mlp_only_layers"} <= keys
    pattern = re.compile(r"\b(" + "|".join(sorted(keys)) + r")\b")
    root = Path(__file__).resolve().parent.parent
    sources = [*(root / "bot").rglob("*.py"), *(root / "benchmarks").rglob("*.py")]
    found = []
    for path in sources:
        relative = path.relative_to(root).as_posix()
        if relative.startswith(("bot/families/", "bot/fixtures/")):
            continue
        for line, text in _code_strings(path):
            if pattern.search(text) and (relative, text) not in _OWN_FIELDS:
                found.append(f"{relative}:{line}: {text!r}")
    assert found == []


def test_the_qwen3_moe_demo_publishes_to_the_local_hub_and_loads_back(tmp_path: Path) -> None:
    """A second demo release, of a family other than GPT-OSS: built with its chat template,
    published, unchanged on a second run, one variant loaded back with transformers."""
    import huggingface_hub

    from bot.demo import run_demo
    from bot.hub.clients import clients_pointed_at
    from bot.localhub.server import HubServer

    root = Path(__file__).resolve().parents[1]
    lines: list[str] = []
    workdir = tmp_path / "demo"
    run_demo(workdir, manifest_path=root / "manifests" / "demo-qwen3-moe.yaml", echo=lines.append)
    text = "\n".join(lines)
    assert text.count("  create ") == 4, text
    assert "published again: 0 commits" in text
    loaded = "loaded hubbot-demo/tiny-qwen3-moe-general-pruned-4-experts from the local Hub"
    assert f"{loaded} with transformers: What is the capital of France? -> " in text
    with (
        HubServer(workdir / "hub", tokens=["t"]) as server,
        clients_pointed_at(server.endpoint, "t", (tmp_path / "hf-home").resolve()),
    ):
        repo = "hubbot-demo/tiny-qwen3-moe-general-pruned-4-experts"
        card = Path(huggingface_hub.hf_hub_download(repo, "README.md")).read_text()
        record = json.loads(Path(huggingface_hub.hf_hub_download(repo, "hubbot.json")).read_text())
    assert "harmony" not in card.lower() and "reasoning_effort" not in card
    assert "chat template (Qwen3-MoE)" in card
    assert record["stats"]["model_type"] == "qwen3_moe"
    assert sorted(record["selection"]["kept_experts"]) == ["0", "2"]  # layer 1 is dense
    example = record["examples"]["examples"][0]
    assert example["final"] and example["completion"]  # the text without special tokens
    assert "\nAnswer:\n" in card and "`final` channel" not in card
    assert record["examples"]["settings"]["stop_tokens"] == ["<|im_end|>"]


_RELEASE = """\
base:
  repo: hubbot-test/tiny-{model_type}
  revision: main
  path: ../base
  config: base.config.json
naming: "{{base_name}}-{{domain}}-{{experts}}"
hub: {{namespace: hubbot-test}}
experts: {{counts: [4]}}
output: {{format: bf16}}
card: {{template: ../templates/model_card.md.j2, license: apache-2.0}}
generation: {{max_new_tokens: 4, sampling: greedy}}
domains:
  - id: often
    title: Often
    description: chosen most often
    statistics: {{source: calibration, prompts: ["What is the capital?", "Name two planets."]}}
    examples: ["Hello there"]
  - id: mass
    title: Mass
    description: most routing weight
    statistics: {{source: calibration, prompts: ["Is 91 a prime number?"]}}
    selection: {{strategy: router_mass}}
    examples: ["Hi"]
  - id: mixed
    title: Mixed
    description: interleaved with often
    statistics: {{source: calibration, prompts: ["Solve 2x + 3 = 11."]}}
    selection: {{strategy: interleave, with: often}}
    examples: ["Hi"]
  - id: rare
    title: Rare
    description: the reverse of often
    selection: {{strategy: inverse, of: often}}
    examples: ["Hi"]
"""


@pytest.mark.parametrize("model_type", FAMILIES)
def test_calibration_every_strategy_and_a_build_for_each_family(
    model_type: str, tmp_path: Path
) -> None:
    """Router hooks calibrate every MoE layer, every strategy selects, and a build runs the
    examples with the family's chat template and renders a card without harmony wording."""
    import shutil

    from bot.build import build_variant
    from bot.manifest import load_manifest
    from bot.selection.select import domain_ranking, select_experts

    root = Path(__file__).resolve().parents[1]
    base = write_family_model(tmp_path / "base", model_type)
    (tmp_path / "manifests").mkdir()
    shutil.copytree(root / "templates", tmp_path / "templates")
    shutil.copy(base / "config.json", tmp_path / "manifests" / "base.config.json")
    path = tmp_path / "manifests" / "release.yaml"
    path.write_text(_RELEASE.format(model_type=model_type))
    manifest = load_manifest(path)
    config = json.loads((base / "config.json").read_text())
    descriptor = descriptor_for(config)
    layers = [str(layer) for layer in descriptor.moe_layer_indices(config)]
    kept = {}
    for variant in manifest.variants:
        record = select_experts(manifest, variant)
        assert sorted(record.kept_experts, key=int) == layers, variant.id
        for experts in record.kept_experts.values():
            assert len(set(experts)) == 4 and all(0 <= e < 8 for e in experts)
            groups = [descriptor.group_of(config, e) for e in experts]
            assert len({groups.count(g) for g in set(groups)}) == 1  # equal per routing group
        kept[variant.domain] = record.kept_experts
    assert kept["rare"] != kept["often"]
    scores = domain_ranking(manifest, "often").to_json()
    assert [str(row["layer"]) for row in scores["layers"]] == layers  # model layers, not rows
    built = build_variant(manifest, manifest.variant("often-4"), tmp_path / "out", progress=False)
    record = built.provenance
    assert record.examples is not None
    assert record.examples.examples[0].completion_tokens >= 1
    assert record.examples.settings["stop_tokens"] == ["<|im_end|>"]
    card = (built.folder / "README.md").read_text()
    assert "harmony" not in card.lower() and "reasoning" not in card.lower()
    assert f"chat template ({descriptor.title})" in card
    _, info = _load(built.folder)
    assert not info["missing_keys"] and not info["unexpected_keys"]


def test_a_manifest_is_checked_against_its_family(tmp_path: Path) -> None:
    """Expert counts, routing groups and output formats are the family's."""
    from bot.errors import InputError
    from bot.manifest import load_manifest

    root = Path(__file__).resolve().parents[1]
    (tmp_path / "manifests").mkdir()
    config = json.loads((root / "manifests" / "tiny-qwen3-moe.config.json").read_text())
    config.update(model_type="deepseek_v3", n_routed_experts=8, n_group=2, topk_group=1)
    config.update(first_k_dense_replace=1, n_shared_experts=1, kv_lora_rank=8)
    config.update(q_lora_rank=8, qk_rope_head_dim=4, qk_nope_head_dim=4, v_head_dim=4)
    del config["num_experts"]
    (tmp_path / "manifests" / "base.config.json").write_text(json.dumps(config))
    text = (root / "manifests" / "demo-qwen3-moe.yaml").read_text()
    text = text.replace("tiny-qwen3-moe.config.json", "base.config.json")
    text = text.replace("counts: [4, 6]", "counts: [3, 4]").replace("format: bf16", "format: mxfp4")
    text = text.replace("sampling: greedy", "sampling: greedy\n  reasoning_effort: low")
    text = text.replace("../templates/", str(root / "templates") + "/")
    path = tmp_path / "manifests" / "release.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_manifest(path)
    message = str(info.value)
    assert "DeepSeek-V3 checkpoints have no mxfp4 layout" in message
    assert "expert count 3: n_group is 2: keep a multiple of 2 experts" in message
    assert "DeepSeek-V3's chat template takes no reasoning_effort" in message
    path.write_text(text.replace("counts: [3, 4]", "counts: [4, 9]"))
    with pytest.raises(InputError, match=r"expert count 9 is outside 2\.\.8"):
        load_manifest(path)


_VARIANTS = {
    "qwen3_moe": [{"tie_word_embeddings": True}, {"attention_bias": True}, {"mlp_only_layers": []}],
    "qwen2_moe": [{"qkv_bias": False}, {"decoder_sparse_step": 2, "mlp_only_layers": []}],
    "mixtral": [{"tie_word_embeddings": True}],
    "olmoe": [{"attention_bias": True}],
    "deepseek_v3": [{"q_lora_rank": None}, {"attention_bias": True}, {"n_shared_experts": 2}],
    "glm4_moe": [{"use_qk_norm": False}, {"attention_bias": True}, {"first_k_dense_replace": 0}],
}


@pytest.mark.parametrize(
    ("model_type", "change"),
    [(t, c) for t, changes in _VARIANTS.items() for c in changes],
    ids=[f"{t}-{'-'.join(c)}" for t, changes in _VARIANTS.items() for c in changes],
)
def test_parameter_counts_equal_a_meta_device_count(model_type: str, change: dict) -> None:
    """The family's arithmetic, for config variants the tiny models do not cover."""
    from bot.fixtures.families import family_config_kwargs

    config = transformers.AutoConfig.for_model(
        model_type, **{**family_config_kwargs(model_type), **change}
    )
    data = {**config.to_dict(), **change}
    with torch.device("meta"):
        meta = transformers.AutoModelForCausalLM.from_config(config)
    assert parameter_counts(data).total == sum(p.numel() for p in meta.parameters())


def test_plan_rows_show_the_first_moe_layer_when_layer_0_is_dense() -> None:
    from bot.overview import kept_text

    assert kept_text({"1": [0, 2, 5, 7], "2": [1, 2, 4, 5]}) == "layer 1: 0 2 5 7 (+1 layers)"
    assert kept_text({"0": [0, 2], "1": [1, 2]}) == "0 2 (+1 layers)"


@pytest.mark.parametrize("model_type", ["deepseek_v3", "glm4_moe"])
def test_multi_token_prediction_layers_are_dropped(model_type: str, tmp_path: Path) -> None:
    """The Hub's DeepSeek-V3 and GLM-4.5 store an MTP layer after the last that
    transformers does not load: the pruned checkpoint leaves it out and says so."""
    from safetensors.torch import load_file, save_file

    base = write_family_model(tmp_path / "base", model_type)
    shard = base / "model.safetensors"
    tensors = load_file(shard)
    mtp = {k.replace("model.layers.2.", "model.layers.3."): v.clone() for k, v in tensors.items()}
    save_file({**tensors, **{k: v for k, v in mtp.items() if ".layers.3." in k}}, shard)
    config = json.loads((base / "config.json").read_text())
    assert config["num_nextn_predict_layers"] == 1
    keep = tmp_path / "keep.json"
    keep.write_text(json.dumps({"1": KEEP, "2": KEEP}))
    code, _, err = run("prune", str(base), str(tmp_path / "out"), "--keep", str(keep))
    assert code == 0, err
    out = json.loads((tmp_path / "out" / "config.json").read_text())
    assert out["num_nextn_predict_layers"] == 0
    index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    assert not [name for name in index["weight_map"] if name.startswith("model.layers.3.")]
    _, info = _load(tmp_path / "out")
    assert not info["missing_keys"] and not info["unexpected_keys"]


def test_gpt_oss_masked_routing_hook_matches_its_pruned_checkpoint(tmp_path: Path) -> None:
    """The topk_softmax rule, on the GPT-OSS fixture (one module per expert on disk)."""
    from bot.fixtures import write_tiny_model

    base = write_tiny_model(tmp_path / "base", layout="bf16")
    config = json.loads((base / "config.json").read_text())
    keep = {layer: [1, 3, 4, 6] for layer in descriptor_for(config).moe_layer_indices(config)}
    keep_file = tmp_path / "keep.json"
    keep_file.write_text(json.dumps({str(k): v for k, v in keep.items()}))
    code, _, err = run("prune", str(base), str(tmp_path / "out"), "--keep", str(keep_file))
    assert code == 0, err
    base_model, _ = _load(base)
    pruned_model, _ = _load(tmp_path / "out")
    ids = torch.randint(0, 300, (2, 10), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        with masked_routers(base_model, keep):
            masked = base_model(ids).logits
        torch.testing.assert_close(pruned_model(ids).logits, masked, rtol=0, atol=1e-5)
        assert (base_model(ids).logits - masked).abs().max() > 1e-4


def test_a_record_from_before_families_renders_as_gpt_oss() -> None:
    """hubbot.json files published before records named their model type (the seed
    release) re-render exactly as the GPT-OSS records written now."""
    import sys

    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "benchmarks"))
    try:
        from render_cards import TEMPLATE, make_records
    finally:
        sys.path.pop(0)
    from bot.card import render_card

    record = make_records()[0]
    assert record.stats is not None and record.stats.model_type is None
    named = record.model_copy(
        update={"stats": record.stats.model_copy(update={"model_type": "gpt_oss"})}
    )
    card = render_card(record, TEMPLATE)
    assert render_card(named, TEMPLATE) == card
    assert "harmony format" in card and "`final` channel" in card


def test_quality_of_a_variant_is_its_pruned_checkpoints_for_every_router_rule(
    family: tuple,
) -> None:
    """`hubbot eval` measures a variant in the masked base; its figures equal those of the
    pruned checkpoint itself (the same next-token distributions)."""
    from bot.quality.evaluate import evaluate_checkpoint, evaluate_variants
    from bot.quality.texts import EvalSet

    _, base, pruned, keep = family
    base_model, _ = _load(base)
    pruned_model, _ = _load(pruned)
    gen = torch.Generator().manual_seed(3)
    windows = tuple(tuple(torch.randint(0, 300, (16,), generator=gen).tolist()) for _ in range(3))
    texts = EvalSet("random", "random tokens", windows, 1, "seed 3", "seed 3")
    masked = evaluate_variants(base_model, [texts], {"v": (keep, ["random"])}, progress=False)
    direct = evaluate_checkpoint(base_model, pruned_model, [texts])
    assert masked["v"]["random"].kl > 0
    assert masked["v"]["random"].kl == pytest.approx(direct["random"].kl, abs=1e-5)
    assert masked["v"]["random"].top1 == direct["random"].top1
