"""The descriptor registry and the GPT-OSS descriptor, checked against transformers itself."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from safetensors import safe_open

import bot.descriptors as registry
from bot.descriptors import ModelDescriptor, TensorSpec, descriptor_for, register
from bot.errors import HubbotError, InputError
from bot.fixtures import TinySpec, tiny_config, write_tiny_model
from bot.fixtures.real_layout import reference_config

SPEC = TinySpec()
GPT_OSS = descriptor_for({"model_type": "gpt_oss"})


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
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._registry()))
    families = registry.registered_types()
    toy = replace(GPT_OSS, model_type="toy_moe", router_module="model.layers.{layer_idx}.gate")
    assert register(toy) is toy
    assert descriptor_for({"model_type": "toy_moe"}) is toy
    assert registry.registered_types() == sorted([*families, "toy_moe"])
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


def _meta_tensors(config: dict) -> dict[str, tuple[int, ...]]:
    """Name -> shape of the parameters and persistent buffers transformers builds."""
    from bot.meta import meta_model

    model = meta_model(config)
    non_persistent = {
        f"{prefix}.{name}" if prefix else name
        for prefix, module in model.named_modules()
        for name in module._non_persistent_buffers_set
    }
    tensors = dict(model.named_parameters())
    tensors.update((n, b) for n, b in model.named_buffers() if n not in non_persistent)
    assert all(t.is_floating_point() for t in tensors.values())
    return {name: tuple(t.shape) for name, t in tensors.items()}


_VARIANTS = {
    "tiny": tiny_config(SPEC),
    "real": reference_config(),
    "no-bias-tied": {**tiny_config(SPEC), "attention_bias": False, "tie_word_embeddings": True},
    "defaults": {
        k: v
        for k, v in tiny_config(TinySpec(head_dim=64)).items()
        if k not in ("attention_bias", "tie_word_embeddings", "head_dim")
    },
}


@pytest.mark.parametrize("config", list(_VARIANTS.values()), ids=list(_VARIANTS))
def test_shape_table_and_counts_are_what_transformers_builds(config: dict) -> None:
    """The descriptor's arithmetic equals a meta-device GptOssForCausalLM: names, shapes, counts."""
    from bot.model_stats import parameter_counts

    config = {k: v for k, v in config.items() if k != "quantization_config"}
    assert GPT_OSS.dequantized_shapes(config) == _meta_tensors(config)
    counts = parameter_counts(config)
    for experts in (1, 3, config["num_local_experts"]):
        pruned = GPT_OSS.rewrite_config(config, experts)
        meta = _meta_tensors(pruned)
        assert counts.total_for(experts) == sum(math.prod(s) for s in meta.values()), experts
    assert counts.top_k == config["num_experts_per_tok"]


def test_counting_parameters_imports_neither_torch_nor_transformers() -> None:
    config = Path(__file__).resolve().parents[1] / "manifests" / "gpt-oss-20b.config.json"
    code = (
        "import sys, json; from bot.model_stats import parameter_counts; "
        f"config = json.load(open({str(config)!r})); "
        "print(parameter_counts(config).total, "
        "sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "20914757184 []"


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
                assert shapes[spec.tensor_name(layer, expert)] == GPT_OSS.shape(spec, config)


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
        GPT_OSS.shape(spec, config)
    with pytest.raises(InputError, match="hidden_size must be an integer"):
        GPT_OSS.shape(spec, {**config, "hidden_size": "64"})
    assert GPT_OSS.shape(spec, {**config, "hidden_size": 64}, 2) == (2, 128, 2, 16)
