"""Model cards: rendered from hubbot.json alone, byte for byte, safely."""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import ModelCard
from PIL import Image

from bot.card import check_front_matter, fence, render_card, write_card
from bot.errors import InputError
from bot.fixtures.records import (
    example_run,
    harmony_example,
    reference_config,
    seed_release,
    variant_stats,
)
from bot.picture import KEPT_COLOUR, kept_experts_png
from bot.provenance import (
    BaseRef,
    DomainInfo,
    Provenance,
    RoutingCoverage,
    SelectionRecord,
    VariantRef,
)

TEMPLATE = Path(__file__).resolve().parents[1] / "templates" / "model_card.md.j2"
REPO_ID = "hubbot-models/gpt-oss-11.4b-specialized-science-pruned-moe-only-16-experts"


def make_record(
    *,
    completion: str = "<|channel|>final<|message|>Blue light scatters more.<|return|>",
    **release_changes: object,
) -> Provenance:
    """A realistic record of the science variant at 16 experts."""
    kept = {
        str(layer): sorted({(layer * 7 + 3 * i) % 32 for i in range(16)}) for layer in range(24)
    }
    example = harmony_example("Why is the sky blue?", "Blue light scatters more.")
    return Provenance(
        tool_version="0.1.0",
        variant=VariantRef(id="science-16", domain="science", experts=16, repo_id=REPO_ID),
        manifest_digest="ab" * 32,
        base=BaseRef(
            repo="openai/gpt-oss-20b", revision="6cee5e81ee83917806bbde320786a8fb61efebee"
        ),
        output_format="bf16",
        selection=SelectionRecord(
            strategy="frequency",
            statistics_source="fingerprints",
            statistics_digest="cd" * 32,
            kept_experts=kept,
            routing_coverage=RoutingCoverage(per_layer=[0.8] * 23 + [0.7], mean=0.7958),
        ),
        stats=variant_stats(reference_config(), 16),
        examples=example_run([example.model_copy(update={"completion": completion})]),
        release=seed_release(
            "science",
            "Science",
            "graduate-level physics, chemistry and biology questions",
            **release_changes,
        ),
    )


def _fenced_blocks(text: str) -> list[str]:
    """Bodies of the fenced code blocks of a Markdown text, as CommonMark reads them."""
    blocks, lines, i = [], text.split("\n"), 0
    while i < len(lines):
        opener = re.match(r"^(`{3,})[^`]*$", lines[i])
        if not opener:
            i += 1
            continue
        fence_len, body, i = len(opener.group(1)), [], i + 1
        while i < len(lines) and not re.match(rf"^`{{{fence_len},}}\s*$", lines[i]):
            body.append(lines[i])
            i += 1
        blocks.append("\n".join(body))
        i += 1
    return blocks


def test_rerender_is_byte_identical(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()

    paths_a = write_card(first, make_record(), TEMPLATE)
    paths_b = write_card(second, make_record(), TEMPLATE)

    assert [p.name for p in paths_a] == ["README.md", "experts.png"]
    for a, b in zip(paths_a, paths_b, strict=True):
        assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()
    assert paths_a[1].read_bytes().startswith(b"\x89PNG")


def test_card_shows_the_record() -> None:
    text = render_card(make_record(), TEMPLATE)
    data = ModelCard(text).data.to_dict()

    assert data["license"] == "apache-2.0"
    assert data["base_model"] == "openai/gpt-oss-20b"
    assert data["library_name"] == "transformers"
    assert data["pipeline_tag"] == "text-generation"
    assert "science" in data["tags"]
    assert "| Parameters (counted as BF16) | 11.4B (11,355,184,320) |" in text
    assert "16 of 32 (50.0% of expert parameters kept)" in text
    assert f'repo = "{REPO_ID}"' in text
    assert "trust_remote_code=" not in text
    assert "![Kept experts" in text and "(experts.png)" in text
    assert "79.6%" in text  # routing coverage


def test_card_renders_without_optional_parts() -> None:
    record = make_record(citation=None, statistics_credit=None)
    selection = record.selection.model_copy(update={"routing_coverage": None})
    record = record.model_copy(
        update={"examples": None, "output_format": "mxfp4", "selection": selection}
    )

    text = render_card(record, TEMPLATE)

    assert "No examples were generated" in text
    assert "Mxfp4Config(dequantize=True)" in text
    assert "## Citation" not in text


def test_model_output_stays_inside_its_fence() -> None:
    hostile = "```\n# Injected heading\n{{ 7*7 }} {% if true %}x{% endif %}\n````\n<script>"
    text = render_card(make_record(completion=hostile), TEMPLATE)

    assert hostile in _fenced_blocks(text)  # one block holds it whole, verbatim
    assert "49" not in text
    outside = re.sub(r"(?ms)^(`{3,}).*?^\1\s*$", "", text)
    assert "# Injected heading" not in outside


def test_manifest_text_is_not_evaluated() -> None:
    domain = DomainInfo(id="science", title="{{ 6*7 }}", description="{% raw %}{{ 1+1 }}")
    text = render_card(make_record(domain=domain), TEMPLATE)

    assert "{{ 6*7 }}" in text and "{% raw %}{{ 1+1 }}" in text
    assert "42" not in text


def test_fence_is_longer_than_any_backtick_run() -> None:
    assert fence("a ````` b", "text") == "``````text\na ````` b\n``````"
    assert fence("plain") == "```\nplain\n```"


def test_undefined_name_fails(tmp_path: Path) -> None:
    template = tmp_path / "card.md.j2"
    template.write_text("---\nlicense: mit\n---\n{{ stats.no_such_field }}\n")

    with pytest.raises(InputError, match=r"card\.md\.j2:4: .*no_such_field"):
        render_card(make_record(), template)


@pytest.mark.parametrize(
    "escape",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ release.__class__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{% set x = release.tags.append('y') %}",
    ],
)
def test_sandbox_escapes_fail(tmp_path: Path, escape: str) -> None:
    template = tmp_path / "card.md.j2"
    template.write_text(f"---\nlicense: mit\n---\n{escape}\n")

    with pytest.raises(InputError):
        render_card(make_record(), template)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"license": "apache2"}, "license"),
        ({"base_model": "not a repo id"}, "base_model"),
        ({"base_model": "gpt-oss-20b"}, "base_model"),
        ({"datasets": ["a/b/c"]}, "datasets"),
    ],
)
def test_bad_front_matter_is_refused_before_writing(
    tmp_path: Path, changes: dict[str, object], field: str
) -> None:
    with pytest.raises(InputError, match=field):
        write_card(tmp_path, make_record(**changes), TEMPLATE)
    assert list(tmp_path.iterdir()) == []


def test_front_matter_must_parse() -> None:
    with pytest.raises(InputError, match="does not parse"):
        check_front_matter("---\nlicense: [mit\n---\nbody\n")
    with pytest.raises(InputError, match="front matter"):
        check_front_matter("# no front matter\n")


def _kept_pixels(png: bytes) -> tuple[np.ndarray, np.ndarray]:
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    kept = [int(KEPT_COLOUR[i : i + 2], 16) for i in (1, 3, 5)]
    return np.nonzero((rgb == kept).all(axis=-1))


def test_picture_places_kept_cells_by_layer_and_expert() -> None:
    ys, xs = _kept_pixels(kept_experts_png({"0": [0], "1": [3]}, experts_before=4))
    top = ys < ys.mean()

    assert top.any() and (~top).any()
    assert xs[top].max() < xs[~top].min()  # layer 0 keeps expert 0, left of layer 1's expert 3
    one = len(_kept_pixels(kept_experts_png({"0": [1], "1": []}, experts_before=4))[0])
    assert abs(len(ys) - 2 * one) <= 0.1 * one
    with pytest.raises(InputError, match="outside"):
        kept_experts_png({"0": [4]}, experts_before=4)


def test_numbers_read_in_units_that_fit_and_repo_links_follow_the_hub() -> None:
    record = make_record()
    tiny = record.stats.model_copy(
        update={"total_params": 166_432, "active_params": 98_304, "size_bytes": 213_000}
    )
    text = render_card(record.model_copy(update={"stats": tiny}), TEMPLATE)
    assert "The model has 166K parameters, of which\n98.3K are active" in text
    assert "| Parameters (counted as BF16) | 166K (166,432) |" in text
    assert ", 0.2 MB |" in text
    assert "0.0B" not in text and "0.0 GB" not in text
    # Root-relative: on huggingface.co and on a local Hub alike, the base opens where it lives.
    assert "[openai/gpt-oss-20b](/openai/gpt-oss-20b)" in text
    assert "huggingface.co/openai" not in text


def test_rebuild_note_stands_above_the_rebuild_command() -> None:
    plain = render_card(make_record(), TEMPLATE)
    assert "HF_ENDPOINT" in plain and "local Hub" not in plain
    noted = render_card(make_record(rebuild_note="Start the local Hub first."), TEMPLATE)
    assert noted.index("Start the local Hub first.") < noted.index("hubbot build ")
