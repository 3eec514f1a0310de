"""Safetensors headers, byte ranges, the streaming shard writer and the index."""

from __future__ import annotations

import errno
import functools
import hashlib
import itertools
import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from bot.checkpoint import (
    BufferPool,
    Loaned,
    OutTensor,
    ShardWriter,
    SourceReader,
    encode_index,
    known_sha256,
    open_checkpoint,
    plan_shards,
    prefetched,
    read_header,
    shard_file_name,
)
from bot.errors import HubbotError, InputError


def _tensors() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {
        "a.weight": torch.randn(4, 6, generator=gen).to(torch.bfloat16),
        "b.codes": torch.randint(0, 255, (3, 5), generator=gen, dtype=torch.uint8),
        "c.bias": torch.randn(7, generator=gen),
    }


@pytest.fixture
def shard(tmp_path: Path) -> Path:
    path = tmp_path / "model.safetensors"
    save_file(_tensors(), str(path), metadata={"format": "pt"})
    return path


def test_header_gives_each_tensors_byte_range(shard: Path) -> None:
    header = read_header(shard)
    assert set(header) == {"a.weight", "b.codes", "c.bias"}
    data = shard.read_bytes()
    with safe_open(shard, "pt") as f:
        for name, info in header.items():
            tensor = f.get_tensor(name)
            assert info.shape == tuple(tensor.shape)
            assert (
                data[info.start : info.end]
                == tensor.contiguous().view(torch.uint8).numpy().tobytes()
            )
    assert header["b.codes"].dtype == "U8" and header["a.weight"].dtype == "BF16"


def _corrupt(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _with_header(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x01\x02", "truncated safetensors file"),
        (struct.pack("<Q", 10_000) + b"{}", "length 10000 but the file has 10 bytes"),
        (struct.pack("<Q", 4) + b"{x:1", "not JSON"),
        (
            _with_header({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"0" * 8),
            "tensor w: data offsets .* outside the file",
        ),
        (
            _with_header({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}}, b"0" * 16),
            "tensor w: 16 bytes do not hold F32",
        ),
        (
            _with_header({"w": {"dtype": "Q4", "shape": [3], "data_offsets": [0, 3]}}, b"0" * 3),
            "tensor w: unknown dtype",
        ),
        (
            _with_header({"w": {"dtype": "U8", "shape": [2], "data_offsets": [2, 4]}}, b"0" * 4),
            "tensor w starts at byte 2",
        ),
    ],
    ids=["short", "length", "json", "offsets", "size", "dtype", "hole"],
)
def test_corrupt_headers_are_input_errors_naming_file_and_tensor(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = _corrupt(tmp_path / "bad.safetensors", content)
    with pytest.raises(InputError, match=message) as info:
        read_header(path)
    assert str(path) in str(info.value)


def test_a_truncated_shard_is_reported(shard: Path) -> None:
    shard.write_bytes(shard.read_bytes()[:-5])
    with pytest.raises(InputError, match=r"tensor \S+: data offsets .* truncated"):
        read_header(shard)


def _index(folder: Path, weight_map: dict[str, str]) -> None:
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map})
    )


def test_checkpoint_follows_its_index(tmp_path: Path) -> None:
    tensors = _tensors()
    save_file({"a.weight": tensors["a.weight"]}, str(tmp_path / "one.safetensors"))
    save_file({k: tensors[k] for k in ("b.codes", "c.bias")}, str(tmp_path / "two.safetensors"))
    _index(
        tmp_path,
        {"a.weight": "one.safetensors", "b.codes": "two.safetensors", "c.bias": "two.safetensors"},
    )
    ckpt = open_checkpoint(tmp_path)
    assert ckpt.shards == (tmp_path / "one.safetensors", tmp_path / "two.safetensors")
    assert ckpt.tensors["c.bias"].file == tmp_path / "two.safetensors"

    _index(tmp_path, {"a.weight": "one.safetensors", "z": "three.safetensors"})
    with pytest.raises(InputError, match=r"names shard three\.safetensors, which does not exist"):
        open_checkpoint(tmp_path)
    _index(tmp_path, {"a.weight": "two.safetensors"})
    with pytest.raises(InputError, match=r"tensor a\.weight is not in its shard two\.safetensors"):
        open_checkpoint(tmp_path)
    _index(tmp_path, {"a.weight": "../one.safetensors"})
    with pytest.raises(InputError, match="outside the folder"):
        open_checkpoint(tmp_path)


def test_single_file_and_empty_folders(shard: Path, tmp_path: Path) -> None:
    assert set(open_checkpoint(shard.parent).tensors) == set(_tensors())
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(
        InputError, match=r"no model\.safetensors\.index\.json or model\.safetensors"
    ):
        open_checkpoint(empty)


def test_reader_hashes_every_byte_once_when_reads_follow_the_file(shard: Path) -> None:
    data = shard.read_bytes()
    info = read_header(shard)["b.codes"]
    reader = SourceReader([shard], [shard])
    assert reader.read(shard, info.start + 5, 5) == data[info.start + 5 : info.start + 10]
    assert reader.read(shard, info.start, 5) == data[info.start : info.start + 5]  # behind
    hashes = reader.finish()
    reader.close()
    assert hashes[shard] == hashlib.sha256(data).hexdigest()
    assert reader.bytes_read == len(data) + 5  # only the read behind the cursor is extra

    plain = SourceReader([shard], [])
    plain.read(shard, info.start, 15)
    assert plain.finish() == {} and plain.bytes_read == 15
    plain.close()


@pytest.mark.parametrize("kernel_copy", [True, False])
def test_writer_streams_a_file_safetensors_loads(
    tmp_path: Path, shard: Path, kernel_copy: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not kernel_copy:  # e.g. a destination on another file system

        def refuse(*args: object) -> int:
            raise OSError(errno.EXDEV, "cross-device")

        monkeypatch.setattr(os, "copy_file_range", refuse)
    tensors = _tensors()
    source = read_header(shard)
    reader = SourceReader([shard], [])
    planned = [
        OutTensor(n, d, tuple(t.shape))
        for (n, t), d in zip(tensors.items(), ("BF16", "U8", "F32"), strict=True)
    ]
    [planned_shard] = plan_shards(planned, 1 << 20)
    # 15 U8 bytes would leave the F32 tensor unaligned: largest elements first
    assert [t.name for t in planned_shard] == ["c.bias", "a.weight", "b.codes"]
    path = tmp_path / "out" / shard_file_name(0, 1)
    path.parent.mkdir()
    writer = ShardWriter(path, planned_shard)
    for t in planned_shard:
        if t.name == "a.weight":  # from memory, in two pieces
            raw = tensors[t.name].contiguous().view(torch.uint8).numpy().tobytes()
            writer.write_tensor(t.name, [raw[:3], raw[3:]])
        else:  # straight from the source file
            info = source[t.name]
            writer.write_tensor(t.name, [reader.slice(shard, info.start, info.nbytes)])
    reader.close()
    digest = writer.close()
    assert path.name == "model-00001-of-00001.safetensors"
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert writer.bytes_written == path.stat().st_size
    loaded = load_file(str(path))
    assert all(torch.equal(loaded[n], t) for n, t in tensors.items())


def test_writer_refuses_out_of_plan_writes(tmp_path: Path) -> None:
    planned = [OutTensor("x", "U8", (4,)), OutTensor("y", "U8", (2,))]
    writer = ShardWriter(tmp_path / "a.safetensors", planned)
    with pytest.raises(HubbotError, match="wrote y, planned x"):
        writer.write_tensor("y", [b"ab"])
    writer.abort()
    writer = ShardWriter(tmp_path / "b.safetensors", planned)
    with pytest.raises(HubbotError, match="x: wrote 3 of 4 bytes"):
        writer.write_tensor("x", [b"abc"])
    writer.abort()
    writer = ShardWriter(tmp_path / "c.safetensors", planned)
    writer.write_tensor("x", [b"abcd"])
    with pytest.raises(HubbotError, match="y was never written"):
        writer.close()


def test_shards_respect_the_byte_limit() -> None:
    tensors = [OutTensor(f"t{i}", "U8", (n,)) for i, n in enumerate([40, 30, 50, 200, 10])]
    shards = plan_shards(tensors, 100)
    assert [[t.name for t in s] for s in shards] == [["t0", "t1"], ["t2"], ["t3"], ["t4"]]
    index = json.loads(encode_index([(f"s{i}", s) for i, s in enumerate(shards)]))
    assert index["metadata"]["total_size"] == 330
    assert index["weight_map"]["t3"] == "s2"


def test_hub_cache_blobs_give_their_sha256_without_reading(tmp_path: Path, shard: Path) -> None:
    digest = hashlib.sha256(shard.read_bytes()).hexdigest()
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    shard.rename(blobs / digest)
    link = tmp_path / "model.safetensors"
    link.symlink_to(blobs / digest)
    assert known_sha256(link) == digest
    assert known_sha256(blobs / digest) is None  # not a link: nothing vouches for the name


def test_prefetched_passes_chunks_errors_and_early_stops_through() -> None:
    assert list(prefetched(iter([b"a", b"b", b"c"]))) == [b"a", b"b", b"c"]

    def broken() -> Iterator[bytes]:
        yield b"a"
        raise OSError("disk gone")

    chunks = prefetched(broken())
    assert next(chunks) == b"a"
    with pytest.raises(OSError, match="disk gone"):
        next(chunks)

    endless = prefetched(itertools.repeat(b"x"))
    assert next(endless) == b"x"
    endless.close()  # the reading thread stops instead of blocking forever


def test_loaned_chunks_are_written_hashed_and_given_back(tmp_path: Path) -> None:
    pool = BufferPool(keep=1)
    planned = [OutTensor("x", "U8", (6,))]
    writer = ShardWriter(tmp_path / "a.safetensors", planned)
    chunks = []
    for piece in (b"abc", b"def"):
        buffer = pool.take(len(piece))
        buffer[:] = piece
        chunks.append(Loaned(memoryview(buffer), functools.partial(pool.give_back, buffer)))
    writer.write_tensor("x", chunks)
    digest = writer.close()  # waits for the hashing, which gives the buffers back
    data = (tmp_path / "a.safetensors").read_bytes()
    assert data.endswith(b"abcdef") and digest == hashlib.sha256(data).hexdigest()
    reused = pool.take(2)
    assert bytes(reused) in (b"abc", b"def")  # kept one, not zeroed
    assert len(pool.take(100)) == 100  # none free: a new one
