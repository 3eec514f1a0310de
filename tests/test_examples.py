"""Example runs on the tiny GPT-OSS fixture (real transformers generation), and harmony parsing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bot.errors import InputError
from bot.examples import LoadedModel, choose_device, generate_examples, load_model, run_examples
from bot.fixtures import write_tiny_model
from bot.generation import GenerationSpec
from bot.harmony import parse_harmony
from bot.provenance import ExampleRun

PROMPTS = [
    "Hi",
    "Explain the water cycle in two sentences, please.",
    "What is 2 + 2?",
]
GREEDY = GenerationSpec(max_new_tokens=12, reasoning_effort="low")
SEEDED = GenerationSpec(max_new_tokens=12, sampling="seeded", seed=7, temperature=0.9, top_p=0.95)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("tiny") / "bf16")


@pytest.fixture(scope="module")
def loaded(tiny: Path) -> LoadedModel:
    return load_model(tiny, device="cpu")


@pytest.fixture(scope="module")
def batched(tiny: Path) -> ExampleRun:
    return run_examples(tiny, PROMPTS, GREEDY, device="cpu", progress=False)


def _texts(run: ExampleRun) -> list[str]:
    return [example.completion for example in run.examples]


def test_batched_equals_one_prompt_at_a_time(loaded: LoadedModel, batched: ExampleRun) -> None:
    singles = [
        generate_examples(loaded, [prompt], GREEDY, progress=False).examples[0]
        for prompt in PROMPTS
    ]

    assert len({e.prompt_tokens for e in batched.examples}) > 1  # the batch really is padded
    assert len(set(_texts(batched))) == len(PROMPTS)  # and the prompts get different answers
    for together, alone in zip(batched.examples, singles, strict=True):
        assert together.completion == alone.completion
        assert together.finished == alone.finished
        assert together.prompt_tokens == alone.prompt_tokens


def test_record_describes_the_run(batched: ExampleRun) -> None:
    assert (batched.device, batched.dtype, batched.dequantized) == ("cpu", "float32", False)
    assert batched.settings["max_new_tokens"] == 12
    assert batched.settings["reasoning_effort"] == "low"
    assert batched.settings["batch_size"] == 3
    assert "<|return|>" in batched.settings["stop_tokens"]
    assert set(batched.versions) == {"hubbot", "torch", "transformers"}
    assert batched.wall_seconds > 0
    for example in batched.examples:
        assert 0 < example.completion_tokens <= 12
        assert example.tokens_per_second > 0
        stopped = any(example.completion.endswith(t) for t in batched.settings["stop_tokens"])
        assert example.finished == stopped
        if not example.finished:
            assert example.completion_tokens == 12
        parsed = parse_harmony(example.completion)
        assert (example.analysis, example.final) == (parsed.analysis, parsed.final)


def test_seeded_sampling_repeats(loaded: LoadedModel, batched: ExampleRun) -> None:
    first = generate_examples(loaded, PROMPTS, SEEDED, progress=False)
    again = generate_examples(loaded, PROMPTS, SEEDED, progress=False)
    other = generate_examples(
        loaded, PROMPTS, SEEDED.model_copy(update={"seed": 8}), progress=False
    )

    assert _texts(first) == _texts(again)
    assert _texts(first) != _texts(other)
    assert _texts(first) != _texts(batched)


def test_mxfp4_checkpoint_is_dequantized_on_cpu(tiny: Path, batched: ExampleRun) -> None:
    packed = write_tiny_model(tiny.parent / "mxfp4", layout="mxfp4")

    run = run_examples(packed, PROMPTS, GREEDY, device="cpu", progress=False)

    assert run.dequantized is True
    # The fixture's MXFP4 experts unpack to exactly its BF16 experts: same answers.
    assert _texts(run) == _texts(batched)


def test_device_choice() -> None:
    assert choose_device("cpu") == "cpu"
    assert choose_device() in ("cuda", "mps", "cpu")
    with pytest.raises(InputError, match="unknown device"):
        choose_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="not available"):
            choose_device("cuda")


def test_no_prompts_is_bad_input(tiny: Path) -> None:
    with pytest.raises(InputError):
        run_examples(tiny, [], GREEDY, device="cpu", progress=False)


# ---------------------------------------------------------------- harmony parsing


def test_harmony_analysis_then_final() -> None:
    out = parse_harmony(
        "<|channel|>analysis<|message|>User wants 4.<|end|>"
        "<|start|>assistant<|channel|>final<|message|>2 + 2 = 4.<|return|>"
    )
    assert (out.analysis, out.final) == ("User wants 4.", "2 + 2 = 4.")
    assert all(m.closed for m in out.messages)


def test_harmony_final_only() -> None:
    out = parse_harmony("<|channel|>final<|message|>Hello!\n\nBye.<|return|>")
    assert (out.analysis, out.final) == (None, "Hello!\n\nBye.")


def test_harmony_truncated_by_the_token_limit() -> None:
    out = parse_harmony("<|channel|>analysis<|message|>Let me count: one, two")
    assert out.analysis == "Let me count: one, two"
    assert out.final is None
    assert out.messages[-1].closed is False
    cut_in_header = parse_harmony("<|channel|>analysis<|message|>ok<|end|><|start|>assistant<|chan")
    assert (cut_in_header.analysis, cut_in_header.final) == ("ok", None)


def test_harmony_without_channels() -> None:
    out = parse_harmony("Just some text, no harmony tokens.")
    assert (out.analysis, out.final) == (None, None)
    assert [m.content for m in out.messages] == ["Just some text, no harmony tokens."]
    assert parse_harmony("").messages == ()


def test_harmony_tool_call_header() -> None:
    out = parse_harmony(
        "<|channel|>commentary to=functions.lookup <|constrain|>json<|message|>{}<|call|>"
    )
    (message,) = out.messages
    assert (message.channel, message.content) == ("commentary", "{}")
    assert message.header.startswith("to=functions.lookup")
