"""The demo: the demo release of a tiny model, published to a local Hub.

It runs exactly what a real release runs, on the embedded defaults: a local
Hub-compatible server on 127.0.0.1, the base model the manifest pins uploaded to it
(`manifests/demo.yaml`: hubbot's trained tiny GPT-OSS model, `bot/data/tiny-moe`;
`manifests/demo-qwen3-moe.yaml`: a tiny random Qwen3-MoE one), and the manifest planned,
built and published through `HfApi`. Publishing a second
time shows that an unchanged release makes no commit. Everything stays under the work
folder: the Hub's repos in `hub/`, the built folders in `staged/<variant>`. With
`keep_serving` the Hub stays up afterwards (on `port`, if given) to browse. `seed_repo`
(the base model's upload, as a plain folder) is also how tests put a base model on a Hub.
"""

from __future__ import annotations

import contextlib
import secrets
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from bot import units
from bot.errors import HubbotError, InputError
from bot.families.hooks import chat_format
from bot.folders import claim_workdir
from bot.hub.plan import changed_files, local_files
from bot.hub.remote import read_state
from bot.hub.retry import HubCaller
from bot.provenance import FILENAME, read_provenance

if TYPE_CHECKING:
    from huggingface_hub import HfApi

    from bot.release import Outcome

DEMO_MANIFEST = Path("manifests/demo.yaml")
DEFAULT_WORKDIR = Path(".hubbot/demo")


def run_demo(
    workdir: Path,
    *,
    manifest_path: Path = DEMO_MANIFEST,
    keep_serving: bool = False,
    port: int = 0,
    echo: Callable[[str], None] = print,
) -> None:
    """Seed a local Hub with the trained tiny base model, then publish the demo release twice."""
    if not manifest_path.is_file():
        raise InputError(f"{manifest_path}: no such manifest (run from the repository root)")
    claim_workdir(workdir, "demo")  # new, empty, or an earlier demo's: nothing of the user's
    token = secrets.token_hex(16)
    from bot.hub.clients import clients_pointed_at
    from bot.localhub.server import HubServer

    with (
        HubServer(workdir / "hub", tokens=[token], port=port) as server,
        clients_pointed_at(server.endpoint, token, (workdir / "hf-home").resolve()),
    ):
        _publish_demo(server.endpoint, token, manifest_path, workdir, echo)
        staged = sorted(p.name for p in (workdir / "staged").glob("*") if p.is_dir())
        if staged:
            echo(f"built folders, as published: {workdir / 'staged'}/{{{','.join(staged)}}}")
        if keep_serving:
            echo(f"browse the release at {server.endpoint}/ (Ctrl-C to stop)")
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)
            return
    again = f"--workdir {workdir} " if workdir != DEFAULT_WORKDIR else ""
    echo(
        "the local Hub has stopped; to browse the release, serve it again with "
        f"`hubbot hub serve --root {workdir / 'hub'} --port 8000` and open "
        f"http://127.0.0.1:8000/ (or run `hubbot demo {again}--serve --port 8000`)"
    )


def _publish_demo(
    endpoint: str, token: str, manifest_path: Path, workdir: Path, echo: Callable[[str], None]
) -> None:
    from bot.fixtures.families import demo_base
    from bot.hub.publish import connect
    from bot.manifest import load_manifest
    from bot.release import publish_release

    manifest = load_manifest(manifest_path)
    api = connect(endpoint, token)
    base = manifest.spec.base
    with tempfile.TemporaryDirectory(prefix="hubbot-base-") as tmp:
        seeded = seed_repo(api, base.repo, demo_base(Path(tmp) / "base", manifest.base_config))
    echo(f"local Hub at {endpoint} (repos in {workdir / 'hub'})")
    echo(f"base model {base.repo} at {seeded[:12]}")

    staging = workdir / "staged"
    started = time.perf_counter()
    first = publish_release(
        manifest, api, workdir=workdir, staging=staging, on_outcome=_printer(echo)
    )
    echo(f"published in {time.perf_counter() - started:.1f} s: {tally(first)}")
    _show_answers(staging, echo)
    started = time.perf_counter()
    second = publish_release(manifest, api, workdir=workdir, staging=staging)
    commits = sum(1 for o in second if o.result and o.result.commit)
    echo(
        f"published again: {commits} commits, {_actions(second)} in "
        f"{time.perf_counter() - started:.1f} s (an unchanged release changes nothing)"
    )
    failed = [o for o in first + second if o.error]
    if failed:
        raise HubbotError(f"{len(failed)} demo variants failed")
    variant = manifest.variants[0]
    examples = manifest.domain(variant.domain).examples
    mxfp4 = manifest.spec.output.format == "mxfp4"
    _load_one(variant.repo_id, examples[0] if examples else "Hello", mxfp4, echo)


def seed_repo(api: HfApi, repo_id: str, folder: Path, *, private: bool = False) -> str:
    """Create `repo_id` if needed and upload `folder` to it as is; return the head commit id.

    A folder the repo already holds is not uploaded again: no request for an empty commit.
    """
    calls = HubCaller.for_api(api, repo_id, None)
    calls("create repo", api.create_repo, repo_id, private=private, exist_ok=True)
    state = read_state(api, repo_id, calls)
    if state.head and not changed_files(local_files(folder), state):
        return state.head
    info = calls(
        "upload folder",
        api.upload_folder,
        repo_id=repo_id,
        folder_path=str(folder),
        commit_message="hubbot: seed base model",
    )
    return str(info.oid)


def _actions(outcomes: list[Outcome]) -> str:
    """`4 create` or `1 card-only, 3 no-op` (failures counted as `failed`)."""
    by_action: dict[str, int] = {}
    for o in outcomes:
        key = "failed" if o.error else str(o.action)
        by_action[key] = by_action.get(key, 0) + 1
    return ", ".join(f"{n} {action}" for action, n in by_action.items())


def tally(outcomes: list[Outcome]) -> str:
    """What a publish did: `4 create, 4 commits, 40 files, 1.0 MB sent` or `4 no-op, no commit`."""
    parts = [_actions(outcomes)]
    results = [o.result for o in outcomes if o.result is not None and o.result.commit]
    if not results:
        return ", ".join([*parts, "no commit"])
    files = sum(len(r.uploaded) + len(r.deleted) for r in results)
    sent = sum(r.bytes_uploaded for r in results)
    commits = f"{len(results)} commit" + ("s" if len(results) != 1 else "")
    return ", ".join([*parts, commits, f"{files} files", f"{units.size(sent)} sent"])


def _printer(echo: Callable[[str], None]) -> Callable[[object], None]:
    def show(outcome: object) -> None:
        result = getattr(outcome, "result", None)
        variant = getattr(outcome, "variant", None)
        action = getattr(outcome, "action", "")
        error = getattr(outcome, "error", None)
        name = getattr(variant, "repo_id", "?")
        if error:
            echo(f"  FAILED {name}: {error}")
        elif result is not None and result.commit:
            sent = units.size(result.bytes_uploaded)
            files = f"{len(result.uploaded)} files"
            echo(f"  {action:<9} {name}: commit {result.commit[:12]}, {files}, {sent}")
        elif result is not None:
            echo(f"  {action:<9} {name}: no commit (nothing differs)")
        else:
            echo(f"  {action:<9} {name}")

    return show


def _show_answers(staging: Path, echo: Callable[[str], None]) -> None:
    """Each built variant's example answers, as its card shows them (one line each): the
    answer, or where the model gave none (no `final` channel), its raw output, marked."""

    for record_path in sorted(staging.glob(f"*/{FILENAME}")):
        record = read_provenance(record_path)
        if record.examples is None:
            continue
        echo(f"  answers of {record_path.parent.name}:")
        for example in record.examples.examples:
            answer = example.final
            if answer is None:
                answer = f"(no answer; raw output) {example.completion}"
            echo(f"    {_one_line(example.prompt)} -> {_one_line(answer)}")


def _one_line(text: str, width: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _load_one(repo_id: str, prompt: str, mxfp4: bool, echo: Callable[[str], None]) -> None:
    """Download one published variant with transformers and answer one of its examples."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Mxfp4Config

    from bot.examples import quiet_loading

    options = {"quantization_config": Mxfp4Config(dequantize=True)} if mxfp4 else {}
    with quiet_loading():
        tokenizer = AutoTokenizer.from_pretrained(repo_id)
        model = AutoModelForCausalLM.from_pretrained(repo_id, **options)
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=24, do_sample=False)
    text = tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=False)
    plain = tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    _, final = chat_format(model.config.to_dict()).parse(text, plain)
    answer = final or text
    echo(f"loaded {repo_id} from the local Hub with transformers: {prompt} -> {_one_line(answer)}")
