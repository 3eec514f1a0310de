"""The descriptor registry and the GPT-OSS descriptor, checked against transformers itself."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from safetensors import safe_open

import bot.descriptors as registry
from bot.descriptors import ModelDescriptor, TensorSpec, descriptor_for, register
from bot.descriptors.gpt_oss import GPT_OSS
from bot.errors import HubbotError, InputError
from bot.fixtures import TinySpec, tiny_config, write_tiny_model
from bot.fixtures.real_layout import reference_config
from bot.verify import expected_tensors

SPEC = TinySpec()


def test_gpt_oss_is_registered_with_its_router_module() -> None:
    descriptor = descriptor_for(tiny_config())
    assert descriptor is GPT_OSS
    assert descriptor.router_module.format(layer_idx=5) == "model.layers.5.mlp.router"
    assert [layout.name for layout in descriptor.layouts] == ["bf16", "mxfp4", "per_expert"]


def test_unknown_model_type_is_an_error_with_a_suggestion() -> None:
    with pytest.raises(InputError, match=r"'gpt-oss'.*did you mean 'gpt_oss'"):
        descriptor_for({"model_type": "gpt-oss"})
    with pytest.raises(InputError, match="no descriptor for model type 'llama'"):
        descriptor_for({"model_type": "llama"})
    with pytest.raises(InputError, match="no model_type"):
        descriptor_for({"hidden_size": 4})


def test_register_adds_a_family_and_refuses_a_clash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    toy = replace(GPT_OSS, model_type="toy_moe", router_module="model.layers.{layer_idx}.gate")
    assert register(toy) is toy
    assert descriptor_for({"model_type": "toy_moe"}) is toy
    assert registry.registered_types() == ["gpt_oss", "toy_moe"]
    register(toy)  # the same descriptor again is fine
    with pytest.raises(HubbotError, match="already has a descriptor"):
        register(replace(toy, expert_axis=1))


def test_a_descriptor_with_a_broken_template_is_refused() -> None:
    with pytest.raises(ValueError, match=r"lacks \{layer_idx\}"):
        ModelDescriptor(
            model_type="broken",
            router_module="model.layers.{layer_idx}.router",
            router_tensors=(TensorSpec("router.weight", ("num_local_experts",)),),
            layouts=(replace(GPT_OSS.layout("bf16"), tensors=(TensorSpec("w", ("1",)),)),),
        )


def test_importing_the_registry_imports_neither_torch_nor_transformers() -> None:
    code = (
        "import sys, bot.descriptors as d; d.descriptor_for({'model_type': 'gpt_oss'}); "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("config", [tiny_config(SPEC), reference_config()], ids=["tiny", "real"])
def test_bf16_layout_shapes_are_the_shapes_transformers_builds(config: dict) -> None:
    """The descriptor's shape expressions agree with a meta-device GptOssForCausalLM."""
    config = {k: v for k, v in config.items() if k != "quantization_config"}
    model = expected_tensors(config)
    for layer in range(config["num_hidden_layers"]):
        for spec in (*GPT_OSS.router_tensors, *GPT_OSS.layout("bf16").tensors):
            name = spec.tensor_name(layer)
            assert model[name][0] == spec.resolve_shape(config), name


@pytest.mark.parametrize("layout", ["mxfp4", "per_expert"])
def test_stored_layout_shapes_match_the_fixture_checkpoints(tmp_path: Path, layout: str) -> None:
    folder = write_tiny_model(tmp_path / layout, layout=layout, spec=SPEC)
    config = json.loads((folder / "config.json").read_text())
    shapes = {}
    for shard in folder.glob("*.safetensors"):
        with safe_open(shard, "pt") as f:
            shapes.update({name: tuple(f.get_slice(name).get_shape()) for name in f.keys()})  # noqa: SIM118
    chosen = GPT_OSS.detect_layout(config, shapes.keys())
    assert chosen.name == layout
    experts = range(SPEC.num_experts) if chosen.per_expert else [None]
    for layer in range(SPEC.num_layers):
        for spec in chosen.tensors:
            for expert in experts:
                assert shapes[spec.tensor_name(layer, expert)] == spec.resolve_shape(config)


def test_rewrite_config_sets_expert_count_and_keeps_top_k_keys_consistent() -> None:
    config = reference_config()
    config["experts_per_token"] = 3  # disagrees with num_experts_per_tok = 4
    out = GPT_OSS.rewrite_config(config, 16)
    assert (out["num_local_experts"], out["num_experts_per_tok"], out["experts_per_token"]) == (
        16,
        4,
        4,
    )
    assert out["quantization_config"] == config["quantization_config"]
    assert config["num_local_experts"] == 32  # the input is not changed
    small = GPT_OSS.rewrite_config(config, 2, drop_quantization=True)
    assert (small["num_experts_per_tok"], small["experts_per_token"]) == (2, 2)
    assert "quantization_config" not in small


def test_shape_expressions_need_whole_numbers_and_integer_keys() -> None:
    spec = GPT_OSS.layout("mxfp4").tensors[0]
    config = {"num_local_experts": 4, "intermediate_size": 64, "hidden_size": 70}
    with pytest.raises(InputError, match="hidden_size/32"):
        spec.resolve_shape(config)
    with pytest.raises(InputError, match="hidden_size must be an integer"):
        spec.resolve_shape({**config, "hidden_size": "64"})
    assert spec.resolve_shape({**config, "hidden_size": 64}, num_local_experts=2) == (2, 128, 2, 16)
