"""The local Hub's pages: cards rendered as the Hub renders them, sanitised, in a real browser."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import HfApi
from huggingface_hub.utils import get_session
from PIL import Image

from bot.localhub.pages import render_markdown
from bot.localhub.server import HubServer
from tests.browser import Browser, find_chromium

REPO = "org/card-page"
CARD = """# Card page

- first item, whose text
  goes on on the next line of the file
- second item,
  also continued
- third item

<details>
<summary>Raw output: 3 tokens, ended by the model</summary>

```text
inside the fold
```

</details>

After the fold.
"""
PRE_BACKGROUND = (244, 244, 244)  # `pre` in the pages' style sheet


def test_html_blocks_of_our_card_render_as_elements():
    html = render_markdown(CARD)
    assert "<details>" in html and "<summary>Raw output" in html
    assert "&lt;details&gt;" not in html
    assert "<pre><code>inside the fold" in html


def test_a_list_item_continued_on_the_next_line_stays_one_item():
    html = render_markdown("- one\n  more of one\n- two\n")
    assert html.count("<li>") == 2
    assert "<li>one\nmore of one</li>" in html
    assert "<p>" not in html


def test_sanitiser_removes_scripts_handlers_and_unsafe_targets():
    html = render_markdown(
        '<script>steal()</script><img src="x.png" onerror="steal()">\n\n'
        "[a](javascript:steal()) ![b](data:text/html,boom)\n\n"
        '<a href="vbscript:x">c</a> <p style="color:red">d</p>',
        resolve="/org/m/resolve/abc",
    )
    for bad in ("<script", "steal()", "onerror", "javascript:", "data:", "vbscript:", "color"):
        assert bad not in html
    assert '<img src="/org/m/resolve/abc/x.png">' in html  # relative: the repo's file


def test_table_alignment_is_kept_and_links_stay_where_they_point():
    html = render_markdown(
        "| a | n |\n|---|--:|\n| x | 1 |\n\n"
        "[base](/org/base) [doc](https://hf.co/x) [f](hubbot.json)",
        resolve="/org/m/resolve/abc",
    )
    assert '<td style="text-align:right">1</td>' in html
    assert 'href="/org/base"' in html and 'href="https://hf.co/x"' in html
    assert 'href="/org/m/resolve/abc/hubbot.json"' in html


def test_front_page_lists_collections_with_their_repos(hub_server: HubServer, hub_api: HfApi):
    for name in ("org/a-4", "org/a-8", "org/other"):
        hub_api.create_repo(name)
    collection = hub_api.create_collection("A family", namespace="org", description="two sizes")
    for name in ("org/a-8", "org/a-4"):
        hub_api.add_collection_item(collection.slug, name, "model")
    hidden = hub_api.create_collection("Secret", namespace="org", private=True)
    hub_api.add_collection_item(hidden.slug, "org/other", "model")

    page = get_session().get(f"{hub_server.endpoint}/").text  # anonymous, like a browser
    assert "<h2>Collections</h2>" in page and "A family" in page and "two sizes" in page
    section = page.split("A family")[1].split("</section>")[0]
    assert section.index('href="/org/a-8"') < section.index('href="/org/a-4"')  # its order
    assert "Secret" not in page  # private collections need a token
    assert "3 model repos" in page


# ------------------------------------------------------------------ in a real browser


@pytest.fixture(scope="module")
def chromium() -> str:
    binary = find_chromium()
    if binary is None:
        reason = "no Chromium on PATH (apt-get install chromium; nox -s tests does it as root)"
        if os.environ.get("HUBBOT_REQUIRE_BROWSER") == "1":
            pytest.fail(f"HUBBOT_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    return binary


def _dark_rows(png: Path) -> list[tuple[int, int]]:
    """(first row, leftmost dark column) of each line of text in a screenshot."""
    dark = np.asarray(Image.open(png).convert("L")) < 110
    lines: list[tuple[int, int]] = []
    in_line = False
    for y, row in enumerate(dark):
        if row.any():
            left = int(row.argmax())
            if in_line:
                lines[-1] = (lines[-1][0], min(lines[-1][1], left))
            else:
                lines.append((y, left))
        in_line = bool(row.any())
    return lines


def _count(png: Path, colour: tuple[int, int, int]) -> int:
    """Pixels of exactly `colour` in a screenshot."""
    pixels = np.asarray(Image.open(png).convert("RGB"))
    return int((pixels == np.array(colour, dtype=np.uint8)).all(axis=-1).sum())


@pytest.mark.slow
def test_card_in_chromium_folds_details_and_keeps_list_items_whole(
    chromium: str, hub_server: HubServer, hub_api: HfApi, tmp_path: Path
):
    hub_api.create_repo(REPO)
    readme = f"---\nlicense: mit\n---\n{CARD}".encode()
    hub_api.upload_file(path_or_fileobj=readme, path_in_repo="README.md", repo_id=REPO)
    with Browser(chromium) as browser:
        browser.open(f"{hub_server.endpoint}/{REPO}")

        # Lists: one line of text per item, each starting at its bullet.
        article = browser.rect("article")
        top, bottom = browser.rect("article ul"), browser.rect("article details")
        region = {"x": article["x"], "y": top["y"], "width": article["width"]}
        region["height"] = bottom["y"] - top["y"] - 2
        lines = _dark_rows(browser.screenshot(region, tmp_path / "list.png"))
        assert len(lines) == 3, f"expected 3 list lines, saw {lines}"
        bullets = {left for _, left in lines}
        assert max(bullets) - min(bullets) <= 2, f"a line starts away from its bullet: {lines}"
        assert min(bullets) >= 10  # indented from the article's edge: bullets, not paragraphs

        # <details>: closed shows only its summary; a click on the summary opens it.
        assert browser.evaluate("document.querySelector('article details').open") is False
        closed = browser.screenshot("article details", tmp_path / "closed.png")
        assert _count(closed, PRE_BACKGROUND) < 100  # the code block is folded away (edges aside)
        assert len(_dark_rows(closed)) == 1  # the summary line alone
        browser.click("article summary")
        assert browser.evaluate("document.querySelector('article details').open") is True
        opened = browser.screenshot("article details", tmp_path / "open.png")
        assert _count(opened, PRE_BACKGROUND) > 1000  # the code block shows
        assert Image.open(opened).height > Image.open(closed).height + 20
        browser.click("article summary")
        assert browser.evaluate("document.querySelector('article details').open") is False
