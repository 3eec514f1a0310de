"""Tiny GPT-OSS fixtures, the harmony test tokenizer and the real-layout checkpoint writer."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from jinja2 import TemplateError
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer, Mxfp4Config

from bot.errors import InputError
from bot.fixtures import (
    TinySpec,
    real_layout_bytes,
    tiny_config,
    write_real_layout,
    write_tiny_model,
    write_tokenizer,
)
from bot.fixtures.real_layout import REFERENCE_DIR

REPO_ROOT = Path(__file__).resolve().parents[1]
LAYOUTS = ("bf16", "mxfp4", "per_expert")


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {layout: write_tiny_model(root / layout, layout=layout) for layout in LAYOUTS}


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    tensors = {}
    for shard in sorted(folder.glob("*.safetensors")):
        with safe_open(shard, "pt") as f:
            tensors.update({name: f.get_tensor(name) for name in list(f.keys())})
    return tensors


def _index(folder: Path) -> dict:
    return json.loads((folder / "model.safetensors.index.json").read_text())


def _load(folder: Path, layout: str):
    quantization = (
        {"quantization_config": Mxfp4Config(dequantize=True)} if layout == "mxfp4" else {}
    )
    return AutoModelForCausalLM.from_pretrained(folder, output_loading_info=True, **quantization)


def test_config_has_the_real_files_form() -> None:
    config = tiny_config(layout="mxfp4")
    real = json.loads((REFERENCE_DIR / "config.json").read_text())
    assert set(config) == set(real) - {"transformers_version"}
    assert config["model_type"] == "gpt_oss"
    assert config["num_experts_per_tok"] == config["experts_per_token"] == 2
    assert config["layer_types"] == ["sliding_attention", "full_attention"]
    assert config["rope_scaling"]["rope_type"] == "yarn"
    assert config["quantization_config"]["quant_method"] == "mxfp4"
    assert "quantization_config" not in tiny_config(layout="bf16")
    assert "quantization_config" not in tiny_config(layout="per_expert")


def test_pinned_random_release_config_matches_the_generator() -> None:
    pinned = (REPO_ROOT / "tests" / "data" / "tiny-gpt-oss.config.json").read_text()
    assert pinned == json.dumps(tiny_config(layout="mxfp4"), indent=2, sort_keys=True) + "\n"


def test_bad_spec_and_layout_raise_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="multiples of 32"):
        TinySpec(hidden_size=48)
    with pytest.raises(InputError, match="top_k"):
        TinySpec(num_experts=2, top_k=4)
    with pytest.raises(InputError, match="unknown layout"):
        write_tiny_model(tmp_path, layout="fp8")  # type: ignore[arg-type]
    (tmp_path / "stale.safetensors").write_bytes(b"")
    with pytest.raises(InputError, match="not an empty folder"):
        write_tiny_model(tmp_path)
    with pytest.raises(InputError, match="not an empty folder"):
        write_real_layout(tmp_path, num_layers=1)


@pytest.mark.parametrize("layout", ["bf16", "mxfp4"])
def test_transformers_loads_and_generates(tiny_models: dict[str, Path], layout: str) -> None:
    folder = tiny_models[layout]
    model, info = _load(folder, layout)
    assert not info["missing_keys"]
    assert not info["unexpected_keys"]
    assert not info["mismatched_keys"]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Tell me about the sea."}],
        add_generation_prompt=True,
        reasoning_effort="low",
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**prompt, max_new_tokens=12, do_sample=False)
    new_tokens = out[0, prompt["input_ids"].shape[1] :].tolist()
    assert len(new_tokens) >= 6  # may stop early at <|return|> or <|endoftext|>
    assert len(set(new_tokens)) >= 4  # not one token forever


def test_bf16_and_mxfp4_fixtures_hold_the_same_model(tiny_models: dict[str, Path]) -> None:
    bf16, _ = _load(tiny_models["bf16"], "bf16")
    mxfp4, _ = _load(tiny_models["mxfp4"], "mxfp4")
    ours, theirs = bf16.state_dict(), mxfp4.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[name], theirs[name]) for name in ours)


def test_router_has_clear_preferences(tiny_models: dict[str, Path]) -> None:
    model, _ = _load(tiny_models["bf16"], "bf16")
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["bf16"])
    inputs = tokenizer(
        "The quick brown fox jumps over the lazy dog by the river.", return_tensors="pt"
    )
    with torch.no_grad():
        logits = model(**inputs, output_router_logits=True).router_logits
    for layer_logits in logits:
        probs = torch.softmax(layer_logits.float(), dim=-1)
        assert probs.max(dim=-1).values.mean() > 0.4  # far from uniform (1/8)
        used = layer_logits.topk(2, dim=-1).indices.unique()
        assert len(used) >= 6  # yet most experts get tokens


@pytest.mark.parametrize("layout", LAYOUTS)
def test_same_arguments_give_byte_identical_files(tmp_path: Path, layout: str) -> None:
    first = write_tiny_model(tmp_path / "a", layout=layout, seed=3)
    second = write_tiny_model(tmp_path / "b", layout=layout, seed=3)
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in second.iterdir())
    assert all((first / n).read_bytes() == (second / n).read_bytes() for n in names)
    other = write_tiny_model(tmp_path / "c", layout=layout, seed=4)
    assert (first / "model-00000-of-00002.safetensors").read_bytes() != (
        other / "model-00000-of-00002.safetensors"
    ).read_bytes()


@pytest.mark.parametrize("layout", LAYOUTS)
def test_shards_named_as_real_repo_and_index_complete(
    tiny_models: dict[str, Path], layout: str
) -> None:
    folder = tiny_models[layout]
    shards = sorted(p.name for p in folder.glob("*.safetensors"))
    assert shards == [f"model-0000{i}-of-00002.safetensors" for i in range(3)]
    index = _index(folder)
    tensors = _tensors(folder)
    assert set(index["weight_map"]) == set(tensors)
    assert index["metadata"]["total_size"] == sum(
        t.numel() * t.element_size() for t in tensors.values()
    )
    for shard in shards:
        with safe_open(folder / shard, "pt") as f:
            assert all(index["weight_map"][name] == shard for name in list(f.keys()))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_layers_experts_sit_in_another_shard_than_its_router(
    tiny_models: dict[str, Path], layout: str
) -> None:
    weight_map = _index(tiny_models[layout])["weight_map"]
    split_layers = []
    for layer in range(TinySpec().num_layers):
        prefix = f"model.layers.{layer}.mlp."
        router = weight_map[prefix + "router.weight"]
        experts = {s for n, s in weight_map.items() if n.startswith(prefix + "experts.")}
        if experts - {router}:
            split_layers.append(layer)
    assert split_layers


def test_mxfp4_fixture_uses_the_real_checkpoint_names(tiny_models: dict[str, Path]) -> None:
    tensors = _tensors(tiny_models["mxfp4"])
    spec = TinySpec()
    e, h, i = spec.num_experts, spec.hidden_size, spec.intermediate_size
    p = "model.layers.0.mlp.experts."
    assert tensors[p + "gate_up_proj_blocks"].shape == (e, 2 * i, h // 32, 16)
    assert tensors[p + "gate_up_proj_scales"].shape == (e, 2 * i, h // 32)
    assert tensors[p + "down_proj_blocks"].shape == (e, h, i // 32, 16)
    assert tensors[p + "gate_up_proj_bias"].dtype == torch.bfloat16
    assert tensors[p + "down_proj_scales"].dtype == torch.uint8
    assert not any(name.endswith((".gate_up_proj", ".down_proj")) for name in tensors)


def test_per_expert_layout_transposes_each_fused_expert(tiny_models: dict[str, Path]) -> None:
    fused = _tensors(tiny_models["bf16"])
    split = _tensors(tiny_models["per_expert"])
    spec = TinySpec()
    assert not any(name.endswith(("gate_up_proj", "down_proj")) for name in split)
    for layer in range(spec.num_layers):
        p = f"model.layers.{layer}.mlp.experts."
        for e in range(spec.num_experts):
            for proj in ("gate_up_proj", "down_proj"):
                assert torch.equal(split[f"{p}{e}.{proj}.weight"], fused[p + proj][e].T)
                assert torch.equal(split[f"{p}{e}.{proj}.bias"], fused[f"{p}{proj}_bias"][e])
    assert split[f"{p}0.gate_up_proj.weight"].shape == (
        2 * spec.intermediate_size,
        spec.hidden_size,
    )
    shared = {n for n in fused if ".experts." not in n}
    assert all(torch.equal(split[n], fused[n]) for n in shared)


def test_tokenizer_renders_harmony_with_reasoning_effort(tmp_path: Path) -> None:
    write_tokenizer(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    messages = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Größe? ✓"},
    ]
    text = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True, reasoning_effort="low"
    )
    assert text.startswith("<|start|>system<|message|>Reasoning: low\n")
    assert "<|start|>developer<|message|># Instructions\n\nAnswer briefly.<|end|>" in text
    assert "<|start|>user<|message|>Hi!<|end|>" in text
    assert "<|start|>assistant<|channel|>final<|message|>Hello.<|end|>" in text
    assert text.endswith("<|start|>user<|message|>Größe? ✓<|end|><|start|>assistant")
    default = tokenizer.apply_chat_template(messages[1:2], tokenize=False)
    assert "Reasoning: medium" in default and not default.endswith("<|start|>assistant")
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids) == text
    with pytest.raises(TemplateError, match="reasoning_effort"):
        tokenizer.apply_chat_template(messages, tokenize=False, reasoning_effort="max")
    for special in ("<|start|>", "<|channel|>", "<|message|>", "<|end|>", "<|return|>"):
        assert len(tokenizer(special)["input_ids"]) == 1


def test_tokenizer_matches_the_config(tiny_models: dict[str, Path]) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["bf16"])
    config = tiny_config()
    assert len(tokenizer) == config["vocab_size"]
    assert 200 < len(tokenizer) < 1000
    assert tokenizer.eos_token == "<|return|>"
    assert tokenizer.eos_token_id == config["eos_token_id"]
    assert tokenizer.pad_token_id == config["pad_token_id"]


@pytest.fixture
def one_layer_real(tmp_path: Path) -> Iterator[Path]:
    folder = write_real_layout(tmp_path / "gpt-oss-20b", num_layers=1)
    yield folder
    shutil.rmtree(folder)  # 2.8 GB: do not leave it in pytest's kept temp folders


def test_real_layout_bytes_match_the_reference_index() -> None:
    reference = json.loads((REFERENCE_DIR / "model.safetensors.index.json").read_text())
    assert real_layout_bytes() == reference["metadata"]["total_size"] == 13_761_264_768
    assert real_layout_bytes(1) < real_layout_bytes(2) < real_layout_bytes()
    with pytest.raises(InputError, match="num_layers"):
        real_layout_bytes(25)


def test_real_layout_one_layer_matches_the_reference(one_layer_real: Path) -> None:
    reference = json.loads((REFERENCE_DIR / "model.safetensors.index.json").read_text())
    expected = {
        name: shard
        for name, shard in reference["weight_map"].items()
        if not re.match(r"model\.layers\.(?!0\.)", name)
    }
    index = _index(one_layer_real)
    assert index["weight_map"] == expected
    assert index["metadata"]["total_size"] == real_layout_bytes(1)

    config = json.loads((one_layer_real / "config.json").read_text())
    assert config["num_hidden_layers"] == 1 and config["layer_types"] == ["sliding_attention"]
    assert config["num_local_experts"] == 32 and config["vocab_size"] == 201_088

    shapes = {}
    for shard in sorted(set(expected.values())):
        with safe_open(one_layer_real / shard, "pt") as f:
            for name in list(f.keys()):
                assert expected[name] == shard
                part = f.get_slice(name)
                shapes[name] = (part.get_dtype(), tuple(part.get_shape()))
    assert shapes.keys() == expected.keys()
    p = "model.layers.0."
    assert shapes["model.embed_tokens.weight"] == ("BF16", (201_088, 2880))
    assert shapes[p + "self_attn.q_proj.weight"] == ("BF16", (4096, 2880))
    assert shapes[p + "self_attn.k_proj.bias"] == ("BF16", (512,))
    assert shapes[p + "self_attn.sinks"] == ("BF16", (64,))
    assert shapes[p + "mlp.router.weight"] == ("BF16", (32, 2880))
    assert shapes[p + "mlp.experts.gate_up_proj_blocks"] == ("U8", (32, 5760, 90, 16))
    assert shapes[p + "mlp.experts.gate_up_proj_scales"] == ("U8", (32, 5760, 90))
    assert shapes[p + "mlp.experts.down_proj_blocks"] == ("U8", (32, 2880, 90, 16))
    assert shapes[p + "mlp.experts.down_proj_bias"] == ("BF16", (32, 2880))

    with safe_open(one_layer_real / expected[p + "mlp.router.weight"], "pt") as f:
        assert torch.isfinite(f.get_tensor(p + "mlp.router.weight")).all()
        scales = f.get_slice(p + "mlp.experts.down_proj_scales")[0]
        assert int(scales.min()) >= 118 and int(scales.max()) <= 133
