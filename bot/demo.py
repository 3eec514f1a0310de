"""The demo: the demo release of a tiny model, published to a local Hub.

It runs exactly what a real release runs, on the embedded defaults: a local
Hub-compatible server on 127.0.0.1, a tiny random GPT-OSS base model uploaded to it, and
`manifests/demo.yaml` planned, built and published through `HfApi`. Publishing a second
time shows that an unchanged release makes no commit.
"""

from __future__ import annotations

import contextlib
import secrets
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bot.errors import HubbotError, InputError

DEMO_MANIFEST = Path("manifests/demo.yaml")


def run_demo(
    workdir: Path,
    *,
    manifest_path: Path = DEMO_MANIFEST,
    keep_serving: bool = False,
    echo: Callable[[str], None] = print,
) -> None:
    """Seed a local Hub with the tiny base model, then publish the demo release twice."""
    if not manifest_path.is_file():
        raise InputError(f"{manifest_path}: no such manifest (run from the repository root)")
    workdir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(16)
    from transformers.utils import logging as transformers_logging

    from bot.hub.clients import clients_pointed_at
    from bot.hub.server import HubServer

    transformers_logging.disable_progress_bar()
    with (
        HubServer(workdir / "hub", tokens=[token]) as server,
        clients_pointed_at(server.endpoint, token, (workdir / "hf-home").resolve()),
    ):
        _publish_demo(server.endpoint, token, manifest_path, workdir, echo)
        if keep_serving:
            echo(f"serving {server.endpoint} (Ctrl-C to stop)")
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)


def _publish_demo(
    endpoint: str, token: str, manifest_path: Path, workdir: Path, echo: Callable[[str], None]
) -> None:
    from bot.fixtures import write_tiny_model
    from bot.hub.publish import connect
    from bot.hub.seed import seed_repo
    from bot.manifest import load_manifest
    from bot.release import publish_release

    manifest = load_manifest(manifest_path)
    api = connect(endpoint, token)
    base = manifest.spec.base
    with tempfile.TemporaryDirectory(prefix="hubbot-base-") as tmp:
        folder = write_tiny_model(Path(tmp) / "tiny", layout="mxfp4")
        seeded = seed_repo(api, base.repo, folder)
    echo(f"local Hub at {endpoint}: base model {base.repo} at {seeded[:12]}")

    started = time.perf_counter()
    first = publish_release(manifest, api, workdir=workdir, on_outcome=_printer(echo))
    echo(f"published {len(first)} variants in {time.perf_counter() - started:.1f} s")
    second = publish_release(manifest, api, workdir=workdir)
    commits = sum(1 for o in second if o.result and o.result.commit)
    echo(f"published again: {commits} commits (an unchanged release changes nothing)")
    failed = [o for o in first + second if o.error]
    if failed:
        raise HubbotError(f"{len(failed)} demo variants failed")
    _load_one(manifest.variants[0].repo_id, echo)
    echo(f"browse the release at {endpoint}/")


def _printer(echo: Callable[[str], None]) -> Callable[[object], None]:
    def show(outcome: object) -> None:
        result = getattr(outcome, "result", None)
        variant = getattr(outcome, "variant", None)
        action = getattr(outcome, "action", "")
        error = getattr(outcome, "error", None)
        name = getattr(variant, "repo_id", "?")
        if error:
            echo(f"  FAILED {name}: {error}")
        elif result is not None:
            commit = (result.commit or "no commit")[:12]
            echo(f"  {action:<9} {name}: commit {commit}, {len(result.uploaded)} files")
        else:
            echo(f"  {action:<9} {name}")

    return show


def _load_one(repo_id: str, echo: Callable[[str], None]) -> None:
    """Download one published variant with transformers and generate a few tokens."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Mxfp4Config

    tokenizer = AutoTokenizer.from_pretrained(repo_id)
    model = AutoModelForCausalLM.from_pretrained(
        repo_id, quantization_config=Mxfp4Config(dequantize=True)
    )
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hello"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    new = out.shape[1] - inputs["input_ids"].shape[1]
    echo(f"loaded {repo_id} from the local Hub with transformers: generated {new} tokens")
