"""Dry run of a release on CI: jobs, bytes downloaded and peak disk per job, per grouping.

Nothing is downloaded or built: sizes follow from the base config's tensor shapes (the
descriptor's table; `bot.model_stats.checkpoint_bytes`), and a job holds the base plus at most
one staged output at a time, as `hubbot publish` does. The baseline is one job per
variant (`--group variant`), each fetching the whole base.

Usage:
    python benchmarks/ci_jobs.py [--manifest manifests/gpt-oss-20b.yaml]
        [--group variant domain domain:8 10]
"""

from __future__ import annotations

import argparse
import statistics

from bot.manifest import load_manifest
from bot.overview import Grouping, job_disk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", default="manifests/gpt-oss-20b.yaml")
    parser.add_argument("--group", nargs="+", default=["variant", "domain", "domain:8", "10"])
    opts = parser.parse_args()
    manifest = load_manifest(opts.manifest)
    print(
        f"{opts.manifest}: {len(manifest.variants)} variants, "
        f"output {manifest.spec.output.format}; GB = 10^9 bytes"
    )
    head = (
        f"{'--group':<10} {'jobs':>5} {'variants/job':>13} {'downloaded':>11} {'x variant':>10} "
        f"{'peak disk/job: max':>19} {'median':>8}"
    )
    print(head)
    baseline = None
    for text in opts.group:
        jobs = job_disk(manifest, Grouping.parse(text))
        downloaded = sum(j.download_bytes for j in jobs)
        baseline = baseline or downloaded
        peaks = [j.peak_disk_bytes for j in jobs]
        print(
            f"{text:<10} {len(jobs):>5} {max(j.variants for j in jobs):>13} "
            f"{downloaded / 1e9:>9.0f}GB {downloaded / baseline:>10.3f} "
            f"{max(peaks) / 1e9:>17.1f}GB {statistics.median(peaks) / 1e9:>6.1f}GB"
        )


if __name__ == "__main__":
    main()
