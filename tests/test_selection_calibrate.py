"""Calibration on a tiny GPT-OSS model whose router is rigged to favour known experts."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import datasets
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from bot.errors import InputError
from bot.fixtures import TinySpec, write_tiny_model
from bot.manifest import load_manifest
from bot.selection.calibrate import calibrate, calibration_texts
from bot.selection.select import domain_statistics, select_experts
from bot.selection.spec import CalibrationStatistics, DatasetTexts
from bot.selection.statistics import save_statistics
from bot.selection.strategies import ranking

TEMPLATE = Path(__file__).resolve().parents[1] / "templates" / "model_card.md.j2"

FAVOURED = {0: (5, 2), 1: (6, 1)}
"""Layer -> experts the rigged router bias sends every token to (first one the stronger)."""
TEXTS = ["The sky is blue.", "Water boils at one hundred degrees.", "Hi"]


@pytest.fixture(scope="module")
def rigged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model (2 layers, 8 experts, top-2) saved with a rigged router bias."""
    folder = write_tiny_model(tmp_path_factory.mktemp("tiny") / "base", spec=TinySpec())
    model = AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        for layer, (strong, weak) in FAVOURED.items():
            bias = model.model.layers[layer].mlp.router.bias
            bias[strong], bias[weak] = 60.0, 57.0
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def loaded(rigged: Path) -> tuple[torch.nn.Module, object]:
    return AutoModelForCausalLM.from_pretrained(rigged), AutoTokenizer.from_pretrained(rigged)


def test_calibration_recovers_the_favoured_experts(loaded: tuple) -> None:
    model, tokenizer = loaded
    stats = calibrate(model, tokenizer, TEXTS, progress=False)
    tokens = sum(len(tokenizer(t)["input_ids"]) for t in TEXTS)
    assert stats.tokens == tokens
    assert stats.weight.tolist() == [tokens, tokens]
    for layer, (strong, weak) in FAVOURED.items():
        expected = [0.0] * 8
        expected[strong] = expected[weak] = float(tokens)
        assert stats.selections[layer].tolist() == expected
    # Equal counts tie, and the tie goes to the lower index; router mass separates them.
    assert ranking(stats.frequency(), stats.tie_rank) == [[2, 5], [1, 6]]
    assert ranking(stats.router_mass(), stats.tie_rank) == [[5, 2], [6, 1]]
    assert stats.mass.sum(axis=1) == pytest.approx([tokens, tokens], rel=1e-2)


def test_padding_and_batching_do_not_change_the_counts(loaded: tuple) -> None:
    model, tokenizer = loaded
    one = calibrate(model, tokenizer, TEXTS, batch_size=1, progress=False)
    three = calibrate(model, tokenizer, TEXTS, batch_size=3, progress=False)
    assert one.selections.tolist() == three.selections.tolist()
    assert one.mass == pytest.approx(three.mass, rel=1e-2)


def test_max_tokens_cuts_each_text(loaded: tuple) -> None:
    model, tokenizer = loaded
    stats = calibrate(model, tokenizer, TEXTS, max_tokens=4, progress=False)
    expected = sum(min(4, len(tokenizer(t)["input_ids"])) for t in TEXTS)
    assert stats.tokens == expected


def test_texts_come_from_prompts_files_and_a_dataset(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("from a file", encoding="utf-8")
    rows = [{"body": "row one", "n": 1}, {"body": "row two", "n": 2}, {"body": "row 3", "n": 3}]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    spec = CalibrationStatistics(
        source="calibration",
        prompts=["a prompt"],
        files=["a.txt"],
        dataset=DatasetTexts(name="json", data_files=["d.jsonl"], column="body", limit=2),
    )
    assert calibration_texts(spec, tmp_path) == ["a prompt", "from a file", "row one", "row two"]


def test_texts_from_a_saved_dataset_split(tmp_path: Path) -> None:
    splits = {
        "train": datasets.Dataset.from_dict({"text": ["t1", "t2"]}),
        "validation": datasets.Dataset.from_dict({"text": ["v1"]}),
    }
    datasets.DatasetDict(splits).save_to_disk(str(tmp_path / "saved"))
    spec = DatasetTexts(name="saved", split="validation")
    calibration = CalibrationStatistics(source="calibration", dataset=spec)
    assert calibration_texts(calibration, tmp_path) == ["v1"]
    wrong = CalibrationStatistics(
        source="calibration", dataset=DatasetTexts(name="saved", split="x")
    )
    with pytest.raises(InputError, match=r"no split 'x' \(splits: train, validation\)"):
        calibration_texts(wrong, tmp_path)


def test_bad_texts_are_named(tmp_path: Path) -> None:
    datasets.Dataset.from_dict({"txt": ["a"]}).save_to_disk(str(tmp_path / "cols"))
    empty = datasets.Dataset.from_dict({"text": []}, features=_text_only())
    empty.save_to_disk(str(tmp_path / "empty"), num_shards=1)
    cases = {
        "cols": r"no column 'text' \(did you mean 'txt'\?\); columns: txt",
        "empty": r"dataset 'empty': split 'train' is empty",
    }
    for name, message in cases.items():
        spec = CalibrationStatistics(source="calibration", dataset=DatasetTexts(name=name))
        with pytest.raises(InputError, match=message):
            calibration_texts(spec, tmp_path)
    missing = CalibrationStatistics(source="calibration", files=["nope.txt"])
    with pytest.raises(InputError, match=r"calibration file .*nope\.txt does not exist"):
        calibration_texts(missing, tmp_path)
    blank = CalibrationStatistics(source="calibration", prompts=["  "])
    with pytest.raises(InputError, match="calibration has no text"):
        calibration_texts(blank, tmp_path)


def test_a_calibration_domain_selects_and_saves_through_the_manifest(
    rigged: Path, tmp_path: Path
) -> None:
    manifest_path = tmp_path / "release.yaml"
    shutil.copy(TEMPLATE, tmp_path / "card.md.j2")  # the template is part of the repository
    manifest_path.write_text(
        f"base: {{repo: tester/rigged, path: {rigged}, config: {rigged / 'config.json'}}}\n"
        "card: {template: card.md.j2}\n"
        'naming: "tiny-{domain}-{experts}"\n'
        "hub: {namespace: tester}\n"
        "experts: {counts: [2, 3]}\n"
        "domains:\n"
        "  - {id: cal, title: Cal, description: d, examples: [hi],\n"
        f"     statistics: {{source: calibration, prompts: {json.dumps(TEXTS)}}}}}\n"
    )
    manifest = load_manifest(manifest_path)
    record = select_experts(manifest, manifest.variant("cal-2"))
    assert record.kept_experts == {"0": [2, 5], "1": [1, 6]}
    assert record.routing_coverage is not None and record.routing_coverage.mean == 1.0
    assert record.statistics_source.startswith("calibration (3 texts")
    saved = save_statistics(domain_statistics(manifest, "cal"), tmp_path / "cal.safetensors")
    reuse = manifest_path.read_text().replace(
        f"{{source: calibration, prompts: {json.dumps(TEXTS)}}}",
        f"{{source: file, path: {saved.name}}}",
    )
    manifest_path.write_text(reuse)
    again = load_manifest(manifest_path)
    assert select_experts(again, again.variant("cal-2")) == record


def _text_only() -> datasets.Features:
    return datasets.Features({"text": datasets.Value("string")})


def test_a_text_file_that_is_not_a_regular_file_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.txt")  # no writer: reading it would hang
    for name, kind in (("pipe.txt", "a named pipe"), ("/dev/zero", "a character device")):
        spec = CalibrationStatistics(source="calibration", files=[name])
        with pytest.raises(InputError, match=rf"calibration file .*{kind}, not a regular file"):
            calibration_texts(spec, tmp_path)
