"""Example runs: a variant's prompts through the model, in one batched `generate`.

The device is CUDA, then MPS, then CPU unless one is named. Each device has one dtype:
bfloat16 on CUDA, float16 on MPS (its bfloat16 support depends on the macOS version),
float32 on CPU (exact, and faster than bfloat16 on CPUs without bfloat16 units; a CPU
run is for small models and tests). MXFP4 checkpoints run natively where transformers
has kernels for them (CUDA), and are otherwise unpacked to BF16 while loading
(`Mxfp4Config(dequantize=True)`); the record says which. Prompts go through the
repository's own chat template, left-padded, with the KV cache; decoding is greedy or
sampling seeded from the spec. The family's chat format (`bot.families.hooks`) says which
settings the template takes, which tokens end a turn and how an answer splits into
reasoning and final text (harmony). Remote code is never run.

Example:
    >>> run = run_examples(Path("out/science-16"), ["Why is the sky blue?"],
    ...                    GenerationSpec(max_new_tokens=64))          # doctest: +SKIP
    >>> run.examples[0].final                                          # doctest: +SKIP
    'Shorter wavelengths scatter more ...'
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bot import __version__
from bot.errors import HubbotError, InputError
from bot.families.hooks import chat_format
from bot.generation import GenerationSpec
from bot.inputs import read_config
from bot.progress import steps
from bot.provenance import ExampleRecord, ExampleRun

DTYPES: dict[str, torch.dtype] = {
    "cuda": torch.bfloat16,
    "mps": torch.float16,
    "cpu": torch.float32,
}


def choose_device(requested: str | None = None) -> str:
    """The device to run on: `requested` if given and present, else CUDA, MPS, CPU."""
    if requested is None:
        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    kind = requested.split(":", 1)[0]
    if kind not in DTYPES:
        raise InputError(f"unknown device {requested!r}; expected cuda, mps or cpu")
    present = {
        "cuda": torch.cuda.is_available(),
        "mps": torch.backends.mps.is_available(),
        "cpu": True,
    }
    if not present[kind]:
        raise InputError(f"device {requested!r} is not available on this machine")
    return requested


def run_examples(
    model_dir: Path,
    prompts: list[str],
    generation: GenerationSpec,
    *,
    device: str | None = None,
    progress: bool = True,
) -> ExampleRun:
    """Load the model in `model_dir`, answer every prompt in one batch, record the run."""
    if not prompts:
        raise InputError("no example prompts to run")
    return generate_examples(
        load_model(model_dir, device=device), prompts, generation, progress=progress
    )


@dataclass(frozen=True)
class LoadedModel:
    """A model and its tokenizer, loaded for example runs."""

    model: Any
    tokenizer: Any
    device: str
    dtype: torch.dtype
    dequantized: bool


class _AskedToDequantize(logging.Filter):
    """Drops transformers' advice to set `use_kernels=True` for MXFP4 on CPU.

    We load MXFP4 off CUDA with `Mxfp4Config(dequantize=True)`: unpacking to BF16 is what
    we asked for, so the advice does not apply.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("MXFP4 inference on CPU requires use_kernels")


_DEQUANTIZE_ADVICE = _AskedToDequantize()


@contextmanager
def quiet_loading() -> Iterator[None]:
    """Within the block, transformers loads without its tqdm bars or the MXFP4-on-CPU advice."""
    from transformers.utils import logging as transformers_logging

    quantizer_log = logging.getLogger("transformers.quantizers.quantizer_mxfp4")
    quantizer_log.addFilter(_DEQUANTIZE_ADVICE)
    shown = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        quantizer_log.removeFilter(_DEQUANTIZE_ADVICE)
        if shown:
            transformers_logging.enable_progress_bar()


def load_model(model_dir: Path, *, device: str | None = None) -> LoadedModel:
    """Load a checkpoint folder on `device` (or the best one) in that device's dtype."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, Mxfp4Config

    device = choose_device(device)
    dtype = DTYPES[device.split(":", 1)[0]]
    packed = _is_mxfp4(model_dir)
    options: dict[str, Any] = {}
    if packed and not device.startswith("cuda"):
        options["quantization_config"] = Mxfp4Config(dequantize=True)
    try:
        with quiet_loading():
            tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
            model = AutoModelForCausalLM.from_pretrained(
                model_dir, dtype=dtype, device_map=device, trust_remote_code=False, **options
            )
    except (OSError, ValueError) as exc:
        raise InputError(f"{model_dir}: cannot load model: {exc}") from None
    # Where transformers has no MXFP4 kernels it unpacks on its own; read back what it did.
    quantizer = getattr(model, "hf_quantizer", None)
    dequantized = packed and (quantizer is None or bool(quantizer.quantization_config.dequantize))
    return LoadedModel(model, tokenizer, device, dtype, dequantized)


def generate_examples(
    loaded: LoadedModel, prompts: list[str], generation: GenerationSpec, *, progress: bool = True
) -> ExampleRun:
    """Answer every prompt in one left-padded batch with the KV cache; record the run."""
    from transformers import GenerationConfig, StoppingCriteriaList

    if not prompts:
        raise InputError("no example prompts to run")
    model, tokenizer = loaded.model, loaded.tokenizer
    chat = chat_format(model.config.to_dict())
    stop_ids = _stop_ids(tokenizer, model.generation_config, chat.stop_tokens)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    template_options = {name: getattr(generation, name) for name in chat.template_options}
    texts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}],
            tokenize=False,
            add_generation_prompt=True,
            **template_options,
        )
        for prompt in prompts
    ]
    batch = tokenizer(
        texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False
    ).to(model.device)
    sampling = generation.sampling == "seeded"
    options: dict[str, Any] = {"do_sample": False}
    if sampling:  # pure temperature + nucleus sampling: transformers' default top-k is off
        options = {
            "do_sample": True,
            "temperature": generation.temperature,
            "top_p": generation.top_p,
            "top_k": 0,
        }
    config = GenerationConfig(
        max_new_tokens=generation.max_new_tokens,
        eos_token_id=stop_ids,
        pad_token_id=pad_id,
        use_cache=True,
        **options,
    )
    clock = _StepClock(loaded.device, len(prompts), generation.max_new_tokens, progress)
    if sampling:
        torch.manual_seed(generation.seed)
    with clock:
        output = model.generate(
            **batch, generation_config=config, stopping_criteria=StoppingCriteriaList([clock])
        )
    width, stops = batch["input_ids"].shape[1], set(stop_ids)
    examples = []
    for row, prompt in enumerate(prompts):
        tokens = output[row, width:].tolist()
        ends = [i for i, token in enumerate(tokens) if token in stops]
        finished = bool(ends)
        tokens = tokens[: ends[0] + 1] if finished else tokens
        completion = tokenizer.decode(tokens, skip_special_tokens=False)
        plain = tokenizer.decode(tokens, skip_special_tokens=True)
        analysis, final = chat.parse(completion, plain)
        examples.append(
            ExampleRecord(
                prompt=prompt,
                completion=completion,
                analysis=analysis,
                final=final,
                finished=finished,
                prompt_tokens=int(batch["attention_mask"][row].sum()),
                completion_tokens=len(tokens),
                tokens_per_second=len(tokens) / clock.seconds_until(len(tokens)),
            )
        )
    return ExampleRun(
        device=loaded.device,
        dtype=str(loaded.dtype).removeprefix("torch."),
        dequantized=loaded.dequantized,
        settings={
            **generation.model_dump(),
            "batch_size": len(prompts),
            "stop_tokens": tokenizer.convert_ids_to_tokens(stop_ids),
        },
        versions=_versions(),
        wall_seconds=clock.wall_seconds,
        examples=examples,
    )


def _is_mxfp4(model_dir: Path) -> bool:
    config = read_config(Path(model_dir) / "config.json")
    return (config.get("quantization_config") or {}).get("quant_method") == "mxfp4"


def _stop_ids(tokenizer: Any, generation_config: Any, stop_tokens: tuple[str, ...]) -> list[int]:
    """End-of-sequence ids: the repo's own, plus the chat format's turn-ending tokens."""
    ids = generation_config.eos_token_id
    ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
    vocab = tokenizer.get_vocab()
    ids += [vocab[token] for token in stop_tokens if token in vocab]
    ids = sorted(set(ids))
    if not ids:
        raise HubbotError("the model has no end-of-sequence token")
    return ids


def _versions() -> dict[str, str]:
    import transformers

    return {
        "hubbot": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


class _StepClock:
    """Stopping criterion that never stops: timestamps each decoding step, shows progress.

    Step `n` ends when every row has `n` new tokens, so a prompt that finished after `n`
    tokens took `seconds_until(n)`, counted from the call to `generate` (prefill included).
    """

    def __init__(self, device: str, prompts: int, max_new_tokens: int, progress: bool) -> None:

        self._sync = device.startswith("cuda")
        plural = "prompt" if prompts == 1 else "prompts"
        self._bar = steps(
            f"answering {prompts} {plural}",
            total=max_new_tokens,
            unit="new tokens each",
            enabled=progress,
        )
        self._advance: Any = None
        self._start = 0.0
        self._steps: list[float] = []
        self.wall_seconds = 0.0

    def __enter__(self) -> _StepClock:
        self._advance = self._bar.__enter__()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_seconds = time.perf_counter() - self._start
        self._bar.__exit__(None, None, None)

    def __call__(
        self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any
    ) -> torch.Tensor:
        if self._sync:
            torch.cuda.synchronize()
        self._steps.append(time.perf_counter() - self._start)
        self._advance()
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    def seconds_until(self, tokens: int) -> float:
        return self._steps[min(tokens, len(self._steps)) - 1]
