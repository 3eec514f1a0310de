"""Calibration: measure router statistics by running the base model over a domain's texts.

Forward hooks on the router of every MoE layer (the family's `router_module`, e.g.
`model.layers.{layer_idx}.mlp.router` for GPT-OSS, `...mlp.gate` for Qwen3-MoE) add up, per
layer and expert, how many tokens chose the expert among their top-k and the routing weight
it got (read by `bot.families.hooks.router_choice`). Only these [MoE layers, experts] sums
are kept, never per-token logs, so memory does not grow with the texts; dense layers have
no row. Padding is masked out; each text is cut to `max_tokens`.

Example:
    >>> texts = calibration_texts(spec, manifest_dir)                   # doctest: +SKIP
    >>> stats = calibrate(model, tokenizer, texts, device="cuda")       # doctest: +SKIP
    >>> stats.frequency()[0].argmax()                                   # doctest: +SKIP
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from bot.descriptors import descriptor_for
from bot.errors import HubbotError, InputError
from bot.families.hooks import router_choice
from bot.inputs import UnreadableFile, read_input_file
from bot.progress import steps
from bot.selection.spec import CalibrationStatistics, DatasetTexts
from bot.selection.statistics import ExpertStatistics, make_statistics

MAX_TEXT_BYTES = 1024 * 1024 * 1024
"""Largest calibration or evaluation text file read (regular files only: no pipe or device)."""


def calibration_texts(spec: CalibrationStatistics, base_dir: Path) -> list[str]:
    """The texts of a calibration source: prompts, then files, then the dataset column."""
    return source_texts(spec.prompts, spec.files, spec.dataset, base_dir, "calibration")


def source_texts(
    prompts: Sequence[str],
    files: Sequence[str],
    dataset: DatasetTexts | None,
    base_dir: Path,
    what: str,
) -> list[str]:
    """Prompts, then files (relative to `base_dir`), then a dataset column; `what` names the
    source in errors ("calibration", "evaluation")."""
    texts = list(prompts)
    for name in files:
        path = base_dir / name
        if not path.exists():
            raise InputError(f"{what} file {path} does not exist")
        try:
            texts.append(read_input_file(path, limit=MAX_TEXT_BYTES).decode("utf-8"))
        except UnreadableFile as exc:
            raise InputError(f"{what} file {path} {exc.reason}") from None
        except UnicodeDecodeError as exc:
            raise InputError(f"{what} file {path}: cannot read as UTF-8: {exc}") from None
    if dataset is not None:
        texts += dataset_texts(dataset, base_dir)
    if not any(t.strip() for t in texts):
        raise InputError(f"{what} has no text (prompts, files and dataset are all empty)")
    return texts


def dataset_texts(spec: DatasetTexts, base_dir: Path) -> list[str]:
    """One column of a `datasets` dataset (Hub id, builder + data_files, or saved folder)."""
    import datasets

    where = f"dataset {spec.name!r}"
    local = base_dir / spec.name
    try:
        if (local / "state.json").is_file() or (local / "dataset_dict.json").is_file():
            data = datasets.load_from_disk(str(local))
            if isinstance(data, datasets.DatasetDict):
                if spec.split not in data:
                    known = ", ".join(data)
                    raise InputError(f"{where}: no split {spec.split!r} (splits: {known})")
                data = data[spec.split]
        else:
            data = datasets.load_dataset(
                spec.name,
                spec.config,
                split=spec.split,
                revision=spec.revision,
                data_files=[str(base_dir / f) for f in spec.data_files] or None,
            )
    except InputError:
        raise
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise InputError(f"{where}: cannot load split {spec.split!r}: {exc}") from None
    except Exception as exc:  # datasets raises many types; keep its message
        raise HubbotError(f"{where}: cannot load: {type(exc).__name__}: {exc}") from None
    if not isinstance(data, datasets.Dataset):
        raise InputError(f"{where}: split {spec.split!r} is not a plain dataset")
    if spec.column not in data.column_names:
        hint = difflib.get_close_matches(spec.column, data.column_names, n=1)
        suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise InputError(
            f"{where}: no column {spec.column!r}{suffix}; columns: {', '.join(data.column_names)}"
        )
    if spec.limit is not None:
        data = data.select(range(min(spec.limit, len(data))))
    if len(data) == 0:
        raise InputError(f"{where}: split {spec.split!r} is empty")
    texts = data[spec.column]
    for row, text in enumerate(texts):
        if not isinstance(text, str):
            raise InputError(f"{where}: row {row} of column {spec.column!r} is not text")
    if not any(t.strip() for t in texts):
        raise InputError(f"{where}: column {spec.column!r} holds only empty texts")
    return list(texts)


class RouterCounter:
    """Forward hooks that add up each router's top-k choices into [layers, experts] sums."""

    def __init__(self, model: torch.nn.Module, device: torch.device) -> None:
        config = model.config.to_dict()
        descriptor = descriptor_for(config)
        self.template = descriptor.router_module
        self.layers = descriptor.moe_layer_indices(config)
        self.num_layers = len(self.layers)
        self.num_experts = descriptor.num_experts(config)
        self.model = model
        shape = (self.num_layers, self.num_experts)
        self.selections = torch.zeros(shape, dtype=torch.int64, device=device)
        self.mass = torch.zeros(shape, dtype=torch.float64, device=device)
        self.tokens = torch.zeros(self.num_layers, dtype=torch.int64, device=device)
        self.mask: torch.Tensor | None = None

    def _hook(self, layer: int) -> Any:
        def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
            weights, indices = router_choice(output)
            if self.mask is not None:
                weights, indices = weights[self.mask], indices[self.mask]
            flat = indices.reshape(-1)
            self.selections[layer].index_add_(0, flat, torch.ones_like(flat))
            self.mass[layer].index_add_(0, flat, weights.reshape(-1).to(torch.float64))
            self.tokens[layer] += indices.shape[0]

        return hook

    @contextmanager
    def attached(self) -> Iterator[RouterCounter]:
        """Hook every router for the duration of the block."""
        handles = []
        try:
            for row, layer in enumerate(self.layers):
                name = self.template.format(layer_idx=layer)
                try:
                    module = self.model.get_submodule(name)
                except AttributeError:
                    raise HubbotError(f"the model has no router module {name!r}") from None
                handles.append(module.register_forward_hook(self._hook(row)))
            yield self
        finally:
            for handle in handles:
                handle.remove()

    def statistics(self, source: str) -> ExpertStatistics:
        tokens = self.tokens.cpu()
        if int(tokens.min()) == 0:
            raise InputError("calibration saw no tokens")
        return make_statistics(
            self.selections.cpu().to(torch.float64).numpy(),
            self.mass.cpu().numpy(),
            tokens.to(torch.float64).numpy(),
            tokens=int(tokens[0]),
            source=source,
        )


def calibrate(
    model: torch.nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    max_tokens: int = 512,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> ExpertStatistics:
    """Run `model` over `texts` and return its router statistics.

    `device` defaults to the model's; a model elsewhere is moved there. Ties between
    experts of equal counts go to the lower index (see `bot.selection.strategies`).
    """
    target = torch.device(device) if device is not None else next(model.parameters()).device
    if next(model.parameters()).device != target:
        model.to(target)
    encoded = [
        ids
        for ids in (
            tokenizer(t, truncation=True, max_length=max_tokens)["input_ids"] for t in texts
        )
        if ids
    ]
    if not encoded:
        raise InputError("calibration texts give no tokens")
    counter = RouterCounter(model, target)
    was_training = model.training
    model.eval()
    try:
        with (
            counter.attached(),
            torch.inference_mode(),
            steps(
                "calibrating routers", total=len(encoded), unit="texts", enabled=progress
            ) as advance,
        ):
            for start in range(0, len(encoded), batch_size):
                batch = encoded[start : start + batch_size]
                ids, mask = _pad(batch, target)
                counter.mask = mask.reshape(-1).bool()
                model(input_ids=ids, attention_mask=mask, use_cache=False, logits_to_keep=1)
                advance(len(batch))
    finally:
        model.train(was_training)
    total = sum(len(ids) for ids in encoded)
    return counter.statistics(f"calibration ({len(encoded)} texts, {total} tokens)")


def _pad(batch: list[list[int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token lists into ids and attention mask (padding never reaches the sums)."""
    width = max(len(ids) for ids in batch)
    ids = torch.zeros((len(batch), width), dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, tokens in enumerate(batch):
        ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        mask[row, : len(tokens)] = 1
    return ids.to(device), mask.to(device)
