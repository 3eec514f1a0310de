"""Model cards: render `README.md` and `experts.png` from a provenance record alone.

The only module that knows Jinja. Templates run in jinja2's immutable sandbox with
`StrictUndefined`: a misspelt name or an attempt to reach Python internals fails the
render. The record reaches the template as plain JSON data; its strings (manifest text,
model output) are values, never compiled as templates. Model output goes through the
`fence` filter, whose fence is longer than any backtick run inside, so it cannot close
its block early. Front matter is checked with huggingface_hub's card tools (no network)
before anything is written.

Example:
    >>> folder, template = Path("out/science-16"), Path("templates/model_card.md.j2")
    >>> write_card(folder, read_provenance(folder), template)  # doctest: +SKIP
    [PosixPath('out/science-16/README.md'), PosixPath('out/science-16/experts.png')]
"""

from __future__ import annotations

import json
import math
import re
import shlex
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import yaml
from huggingface_hub.utils import HFValidationError, validate_repo_id
from jinja2.sandbox import ImmutableSandboxedEnvironment

from bot import units
from bot.errors import InputError
from bot.families.hooks import card_family
from bot.provenance import Provenance, Quality, TextFigures
from bot.quality.gate import shortfall
from bot.quality.spec import QualityFloor

README = "README.md"

# The Hub's licence identifiers (huggingface/hub-docs, docs/hub/repositories-licenses.md).
HUB_LICENSES = frozenset(
    """
    apache-2.0 mit openrail bigscience-openrail-m creativeml-openrail-m
    bigscience-bloom-rail-1.0 bigcode-openrail-m afl-3.0 artistic-2.0 bsl-1.0 bsd
    bsd-2-clause bsd-3-clause bsd-3-clause-clear c-uda cc cc0-1.0 cc-by-2.0 cc-by-2.5
    cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0 cc-by-nc-4.0
    cc-by-nd-4.0 cc-by-nc-nd-3.0 cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0
    cc-by-nc-sa-4.0 cdla-sharing-1.0 cdla-permissive-1.0 cdla-permissive-2.0 wtfpl ecl-2.0
    epl-1.0 epl-2.0 etalab-2.0 eupl-1.1 agpl-3.0 gfdl gpl gpl-2.0 gpl-3.0 lgpl lgpl-2.1
    lgpl-3.0 isc lppl-1.3c ms-pl mpl-2.0 odc-by odbl openrail++ osl-3.0 postgresql ofl-1.1
    ncsa unlicense zlib pddl lgpl-lr deepfloyd-if-license llama2 llama3 llama3.1 llama3.2
    llama3.3 gemma unknown other
    """.split()  # noqa: SIM905 (a word list reads better than 76 quoted lines)
)

_BACKTICKS = re.compile(r"`+")


def render_card(record: Provenance, template: Path) -> str:
    """The README text for `record`, rendered with `template` and checked.

    Raises `InputError` for a record lacking what a card shows, a template that fails
    (undefined name, sandbox violation, syntax), or bad front matter.
    """
    missing = [name for name in ("variant", "stats", "release") if getattr(record, name) is None]
    if missing:
        raise InputError(f"provenance record lacks {', '.join(missing)}: cannot render a card")
    from bot import picture  # numpy and PIL: not on the paths that only check manifests

    compiled = _template(Path(template).resolve())
    context = record.model_dump(mode="json")
    context["picture"] = picture.FILENAME
    context["quality_view"] = quality_view(record)
    context["model_index"] = model_index(record)
    context["family"] = card_family(record.stats.model_type if record.stats else None)
    try:
        text = compiled.render(context)
    except jinja2.TemplateError as exc:
        raise InputError(f"{template}:{_template_line(exc, compiled.filename)}: {exc}") from None
    check_front_matter(text)
    return text


def check_template(template: Path) -> None:
    """Parse a card template without rendering it; `InputError` with its file and line."""
    _template(Path(template).resolve())


def write_card(folder: Path, record: Provenance, template: Path) -> list[Path]:
    """Render and check the card, then write `README.md` and `experts.png` into `folder`."""
    from bot import picture

    text = render_card(record, template)
    assert record.stats is not None  # checked by render_card
    png = picture.kept_experts_png(record.selection.kept_experts, record.stats.experts_before)
    readme, experts_png = folder / README, folder / picture.FILENAME
    readme.write_text(text, encoding="utf-8")
    experts_png.write_bytes(png)
    written = [readme, experts_png]
    if record.quality is not None and record.variant is not None:
        chart = folder / picture.QUALITY_FILENAME
        experts = record.stats.experts_before
        chart.write_bytes(_quality_chart(record.quality, record.variant, experts))
        written.append(chart)
    return written


# ---------------------------------------------------------------- quality section


def quality_view(record: Provenance) -> dict[str, Any] | None:
    """What the card's quality section shows: this variant's figures (with the base's), the
    family of its domain by expert count with its own row marked, and the texts measured."""
    from bot.picture import QUALITY_FILENAME

    quality, variant = record.quality, record.variant
    if quality is None or variant is None:
        return None
    point = quality.point(variant.id)
    if point is None:
        raise InputError(f"hubbot.json: quality figures lack this variant {variant.id!r}")
    domain_key = f"domain:{variant.domain}"
    family = sorted(
        (p for p in quality.family if p.domain == variant.domain), key=lambda p: p.experts
    )
    floor = record.release.quality_floor if record.release else None
    return {
        "this": point.model_dump(mode="json"),
        "domain_text": _dump(quality.texts.get(domain_key)),
        "general_text": _dump(quality.texts.get("general")),
        "family": [
            {
                **p.model_dump(mode="json"),
                "this": p.variant == variant.id,
                "held": shortfall(p, floor) is not None,
            }
            for p in family
        ],
        "floor": _floor_words(floor) if floor else None,
        "picture": QUALITY_FILENAME,
    }


def _floor_words(floor: QualityFloor) -> str:
    """`KL at most 0.500 and top-1 agreement at least 60.0%` (on a domain's own text)."""
    parts = []
    if floor.max_kl is not None:
        parts.append(f"KL at most {floor.max_kl:.3f}")
    if floor.min_top1 is not None:
        parts.append(f"top-1 agreement at least {_percent(floor.min_top1)}")
    return " and ".join(parts)


def model_index(record: Provenance) -> list[dict[str, Any]]:
    """The card's `model-index`: this variant's figures as huggingface_hub `EvalResult`s."""
    from huggingface_hub import EvalResult
    from huggingface_hub.repocard_data import eval_results_to_model_index

    quality, variant = record.quality, record.variant
    point = quality.point(variant.id) if quality and variant else None
    if point is None or record.release is None or variant is None:
        return []
    title = record.release.domain.title
    results = []
    for label, key, figures in (
        (f"{title} evaluation text", f"domain:{variant.domain}", point.domain_text),
        ("General evaluation text", "general", point.general_text),
    ):
        if figures is None:
            continue
        text = quality.texts.get(key)
        results += _eval_results(EvalResult, label, key, text.source if text else "", figures)
    return eval_results_to_model_index(variant.repo_id.split("/")[-1], results)


def _eval_results(make: Any, label: str, key: str, source: str, figures: TextFigures) -> list[Any]:
    common = {
        "task_type": "text-generation",
        "task_name": "Text generation (closeness to the base model)",
        "dataset_type": f"hubbot-eval/{key.replace(':', '-')}",
        "dataset_name": label,
        "dataset_args": {"source": source, "tokens": figures.tokens} if source else None,
    }
    metrics = (
        ("kl_divergence", "KL(base || variant), nats/token", figures.kl),
        ("top1_agreement", "Top-1 agreement with base", figures.top1),
        ("perplexity", "Perplexity", figures.perplexity),
        ("base_perplexity", "Perplexity of the base model", figures.base_perplexity),
    )
    return [
        make(**common, metric_type=kind, metric_name=name, metric_value=round(value, 6))
        for kind, name, value in metrics
    ]


def _quality_chart(quality: Quality, variant: Any, experts_before: int) -> bytes:
    from bot.picture import QualityLine, quality_png

    lines = []
    for domain in dict.fromkeys(p.domain for p in quality.family):
        points = sorted(
            (p for p in quality.family if p.domain == domain and (p.domain_text or p.general_text)),
            key=lambda p: p.experts,
        )
        figures = [p.domain_text or p.general_text for p in points]
        if points:
            lines.append(
                QualityLine(
                    domain=domain,
                    experts=tuple(p.experts for p in points),
                    kl=tuple(f.kl for f in figures if f),
                    top1=tuple(f.top1 for f in figures if f),
                )
            )
    return quality_png(
        lines,
        marked=(variant.domain, variant.experts),
        experts_before=experts_before,
        text="each domain on its own evaluation text",
    )


def _dump(value: Any) -> Any:
    return value.model_dump(mode="json") if value is not None else None


def check_front_matter(text: str) -> dict[str, Any]:
    """Parse a card's front matter with huggingface_hub and check the fields we rely on."""
    from huggingface_hub import ModelCard  # its import brings the Hub client: only here

    if not text.startswith("---\n"):
        raise InputError("model card: no YAML front matter at the top")
    try:
        data = ModelCard(text, ignore_metadata_errors=False).data.to_dict()
    except (yaml.YAMLError, ValueError) as exc:
        raise InputError(f"model card front matter does not parse: {exc}") from None
    license_id = data.get("license")
    if license_id not in HUB_LICENSES:
        raise InputError(f"model card front matter: license {license_id!r} is not a Hub licence id")
    base = data.get("base_model")
    for field, values in (("base_model", [base]), ("datasets", data.get("datasets") or [])):
        for value in values if isinstance(values, list) else [values]:
            if not is_repo_id(value):
                raise InputError(f"model card front matter: {field} {value!r} is not a repo id")
    return data


def fence(text: str, info: str = "") -> str:
    """`text` as a fenced code block whose fence no backtick run inside can close."""
    longest = max((len(run) for run in _BACKTICKS.findall(text)), default=0)
    marker = "`" * max(3, longest + 1)
    body = text if text.endswith("\n") or not text else text + "\n"
    return f"{marker}{info}\n{body}{marker}"


def is_repo_id(value: object, *, owner: bool = True) -> bool:
    """Whether the Hub accepts `value` as a repo id (`owner/name`; `name` alone if not `owner`)."""
    if not isinstance(value, str) or (value.count("/") != 1 and (owner or "/" in value)):
        return False
    try:
        validate_repo_id(value)
    except HFValidationError:
        return False
    return True


def _json(value: Any) -> str:
    """A value as JSON, which is also YAML and Python: data that cannot inject syntax."""
    return json.dumps(value, ensure_ascii=False)


def _cell(value: Any) -> str:
    """Text safe inside one Markdown table cell."""
    return " ".join(str(value).split()).replace("|", "\\|")


def _billions(value: int) -> str:
    """Fixed unit (the `{params_b}` of repo names); cards use `count`."""
    return f"{value / 1e9:.1f}B"


def _thousands(value: int) -> str:
    return f"{value:,}"


def _gigabytes(value: int) -> str:
    """Fixed unit; cards use `size`."""
    return f"{value / 1e9:.1f} GB"


def _percent(value: float, digits: int = 1) -> str:
    return f"{100 * value:.{digits}f}%"


def _figure(value: float, digits: int = 3) -> str:
    """A measured figure to `digits` significant digits, never in exponent form (`0.000412`)."""
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    decimals = max(0, digits - 1 - magnitude)
    return f"{value:.{decimals}f}"


@lru_cache(maxsize=8)
def _environment(folder: Path) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        loader=jinja2.FileSystemLoader(folder),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        fence=fence,
        json=_json,
        shell=shlex.quote,
        cell=_cell,
        count=units.count,
        size=units.size,
        billions=_billions,
        thousands=_thousands,
        gigabytes=_gigabytes,
        percent=_percent,
        figure=_figure,
    )
    return env


def _template(path: Path) -> jinja2.Template:
    try:
        return _environment(path.parent).get_template(path.name)
    except jinja2.TemplateNotFound:
        raise InputError(f"{path}: card template does not exist") from None
    except jinja2.TemplateSyntaxError as exc:
        raise InputError(f"{path}:{exc.lineno}: {exc.message}") from None


def _template_line(exc: BaseException, filename: str | None) -> int | str:
    """Line of the template where rendering failed (from jinja's rewritten traceback)."""
    line: int | str = "?"
    tb = exc.__traceback__
    while tb is not None:
        if filename and tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
