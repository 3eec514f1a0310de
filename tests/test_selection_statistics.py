"""The statistics type: checked construction, digest, safetensors files and their errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

from bot.errors import InputError
from bot.selection.statistics import (
    make_statistics,
    read_statistics,
    save_statistics,
    shape_problems,
)


def _stats(**changes: object):
    args = {
        "selections": [[3.0, 0.0, 1.0], [2.0, 2.0, 0.0]],
        "mass": [[2.0, 0.0, 0.5], [1.0, 1.5, 0.0]],
        "weight": [2.0, 2.0],
        "tokens": 2,
        "source": "test",
    }
    args.update(changes)
    return make_statistics(**args)  # type: ignore[arg-type]


def test_scores_divide_by_the_layer_weight() -> None:
    stats = _stats()
    assert stats.frequency().tolist() == [[1.5, 0.0, 0.5], [1.0, 1.0, 0.0]]
    assert stats.router_mass().tolist() == [[1.0, 0.0, 0.25], [0.5, 0.75, 0.0]]


def test_default_tie_rank_is_the_index_of_selected_experts() -> None:
    assert _stats().tie_rank.tolist() == [[0, -1, 2], [0, 1, -1]]


def test_digest_depends_on_numbers_not_on_the_source_name() -> None:
    a = _stats()
    assert a.digest == _stats(source="renamed").digest
    assert a.digest != _stats(tokens=3).digest
    assert a.digest != _stats(selections=[[3.0, 0.0, 1.0], [2.0, 1.0, 0.0]]).digest
    assert len(a.digest) == 64


def test_save_and_read_round_trip(tmp_path: Path) -> None:
    stats = _stats(tie_rank=[[1, -1, 0], [1, 0, -1]], source="calibration (2 texts)")
    path = save_statistics(stats, tmp_path / "sub" / "s.safetensors")
    back = read_statistics(path)
    assert back.digest == stats.digest
    assert back.source == "calibration (2 texts)"
    assert back.tie_rank.tolist() == [[1, -1, 0], [1, 0, -1]]
    assert back.tokens == 2


def test_read_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"statistics file .*nope.safetensors does not exist"):
        read_statistics(tmp_path / "nope.safetensors")


def test_read_rejects_a_file_that_is_not_statistics(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_text("not safetensors")
    with pytest.raises(InputError, match=r"bad\.safetensors: not a safetensors statistics file"):
        read_statistics(bad)
    other = tmp_path / "other.safetensors"
    save_file({"x": np.zeros(2)}, str(other))
    with pytest.raises(InputError, match=r"other\.safetensors: not a hubbot statistics file"):
        read_statistics(other)


def test_read_names_the_layer_and_expert_of_a_bad_value(tmp_path: Path) -> None:
    path = save_statistics(_stats(), tmp_path / "s.safetensors")
    tensors = {k: v.copy() for k, v in _tensors(path).items()}
    tensors["mass"][1, 2] = -1.0
    save_file(tensors, str(path), metadata=_metadata(path))
    with pytest.raises(InputError, match=r"s.safetensors: mass of layer 1, expert 2 is negative"):
        read_statistics(path)


def test_a_layer_without_data_is_an_error() -> None:
    with pytest.raises(InputError, match="layer 1 has no data"):
        _stats(weight=[2.0, 0.0])


def test_mismatched_shapes_are_errors() -> None:
    with pytest.raises(InputError, match="mass has shape"):
        _stats(mass=[[1.0, 2.0]])


def test_shape_problems_compare_with_the_base_config() -> None:
    stats = _stats()
    gpt_oss = {"model_type": "gpt_oss"}
    assert shape_problems(stats, {**gpt_oss, "num_hidden_layers": 2, "num_local_experts": 3}) == []
    problems = shape_problems(stats, {**gpt_oss, "num_hidden_layers": 24, "num_local_experts": 32})
    assert problems == [
        "the statistics have 2 layers, the base model 24 (num_hidden_layers)",
        "the statistics have 3 experts per layer, the base model 32 (num_local_experts)",
    ]


def _tensors(path: Path) -> dict[str, np.ndarray]:
    with safe_open(str(path), framework="np") as fh:
        return {name: fh.get_tensor(name) for name in fh.keys()}  # noqa: SIM118


def _metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="np") as fh:
        return fh.metadata()
