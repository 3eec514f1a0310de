"""CI jobs at release scale: variants grouped per job, stable job names, bytes per job."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bot.errors import InputError
from bot.manifest import load_manifest
from bot.overview import Grouping, github_matrices, job_disk, job_groups

ROOT = Path(__file__).resolve().parents[1]
SEED = load_manifest(ROOT / "manifests" / "gpt-oss-20b.yaml")
BASE_BYTES = 13_761_264_768  # the published index's total_size
BF16_32_BYTES = 41_829_514_368  # every expert dequantized to BF16


def test_grouping_is_written_variant_domain_n_or_domain_n() -> None:
    assert Grouping.parse("variant") == Grouping(by_domain=False, per_job=1)
    assert Grouping.parse("domain") == Grouping(by_domain=True, per_job=None)
    assert Grouping.parse("8") == Grouping(by_domain=False, per_job=8)
    assert Grouping.parse("domain:8") == Grouping(by_domain=True, per_job=8)
    for bad in ("domains", "0", "domain:0", "-3", ""):
        with pytest.raises(InputError, match="--group"):
            Grouping.parse(bad)


def test_seed_release_in_one_job_per_domain() -> None:
    (matrix,) = github_matrices(SEED, online=False, grouping=Grouping.parse("domain"))
    jobs = matrix["include"]
    assert [job["job"] for job in jobs][:2] == ["all-4..all-32", "science-4..science-32"]
    assert len(jobs) == 8 and {job["count"] for job in jobs} == {29}
    assert [v for job in jobs for v in job["variants"].split(",")] == [v.id for v in SEED.variants]


@pytest.mark.parametrize("text", ["10", "domain:10", "variant"])
def test_groups_cover_every_variant_once_within_their_limits(text: str) -> None:
    grouping = Grouping.parse(text)
    groups = job_groups(SEED, grouping)
    assert [v for group in groups for v in group] == list(SEED.variants)
    assert all(len(group) <= (grouping.per_job or 1000) for group in groups)
    if grouping.by_domain:
        assert all(len({v.domain for v in group}) == 1 for group in groups)
        assert len(groups) == 8 * 3  # 29 counts: 10 + 10 + 9
    assert len(groups) == {"10": 24, "domain:10": 24, "variant": 232}[text]


def test_jobs_never_mix_runners(tmp_path: Path) -> None:
    shutil.copy(ROOT / "manifests" / "gpt-oss-20b.config.json", tmp_path)
    shutil.copytree(ROOT / "templates", tmp_path.parent / "templates", dirs_exist_ok=True)
    text = (ROOT / "manifests" / "gpt-oss-20b.yaml").read_text()
    text = text.replace("  runner: gpu-80gb\n", "  runner: gpu-80gb\n  runners: {math: big-disk}\n")
    (tmp_path / "m.yaml").write_text(text)
    manifest = load_manifest(tmp_path / "m.yaml")

    (matrix,) = github_matrices(manifest, online=False, grouping=Grouping.parse("200"))

    assert [(job["runner"], job["count"]) for job in matrix["include"]] == [
        ("gpu-80gb", 58),  # all, science
        ("big-disk", 29),  # math
        ("gpu-80gb", 145),  # the other five domains
    ]


def test_bytes_downloaded_and_peak_disk_per_job_for_the_seed_release() -> None:
    per_variant = job_disk(SEED, Grouping.parse("variant"))
    grouped = job_disk(SEED, Grouping.parse("domain"))

    assert len(per_variant) == 232 and len(grouped) == 8
    assert sum(j.download_bytes for j in per_variant) == 232 * BASE_BYTES
    assert sum(j.download_bytes for j in grouped) == 8 * BASE_BYTES
    # one staged output at a time: the base plus the largest output of the job
    assert max(j.peak_disk_bytes for j in grouped) == BASE_BYTES + BF16_32_BYTES
    assert max(j.peak_disk_bytes for j in per_variant) == BASE_BYTES + BF16_32_BYTES
    assert min(j.peak_disk_bytes for j in per_variant) < BASE_BYTES + BF16_32_BYTES / 4
