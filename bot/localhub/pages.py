"""Plain HTML pages of the local Hub: the front page (collections, repos) and a repo's card.

Cards are rendered as the Hub renders them: CommonMark with GitHub's tables and
strikethrough (markdown-it-py), raw HTML allowed (`<details>`, `<summary>`, `<br>`, ...).
The HTML that comes out is then sanitised by nh3 (the Ammonia sanitiser): scripts, styles,
event handlers and links other than http(s), mailto and relative ones are removed, and
inline styles keep only `text-align` (table columns). Relative image and link targets point
at the file in the repo at the commit shown. Front matter is shown as a code block above
the card.

Example:
    >>> render_markdown("Hi <script>x()</script> [docs](https://x.y/?a=1&b=2)")
    '<p>Hi  <a href="https://x.y/?a=1&amp;b=2" rel="noopener noreferrer">docs</a></p>\\n'
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from html import escape
from urllib.parse import quote

import nh3
from markdown_it import MarkdownIt

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: .2rem .5rem; }
pre { background: #f4f4f4; padding: .5rem; overflow-x: auto; } .private { color: #a00; }
details { border: 1px solid #ddd; border-radius: 4px; padding: .3rem .6rem; margin: .5rem 0; }
summary { cursor: pointer; } .collection { margin-bottom: 1rem; }
"""
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
URL_SCHEMES = frozenset({"http", "https", "mailto"})


@dataclass(frozen=True)
class RepoLink:
    """A line of the repo list."""

    repo_id: str
    private: bool
    last_modified: str


@dataclass(frozen=True)
class CollectionLink:
    """A collection on the front page: its title, slug, and the repos it lists, in order."""

    title: str
    slug: str
    private: bool
    description: str | None
    items: tuple[str, ...]


@dataclass(frozen=True)
class FileRow:
    """A line of a repo's file list."""

    path: str
    size: int
    lfs: bool


def split_front_matter(text: str) -> tuple[str | None, str]:
    """(YAML text between the leading `---` lines or None, the rest of the card)."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].rstrip() != "---":
        return None, text
    for i, line in enumerate(lines[1:], start=1):
        if line.rstrip() == "---":
            return "".join(lines[1:i]), "".join(lines[i + 1 :])
    return None, text


@lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    markdown = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
    markdown.validateLink = lambda url: True  # nh3 alone decides which targets stay
    return markdown


def render_markdown(text: str, resolve: str = "") -> str:
    """Sanitised HTML for a Markdown text; relative targets are joined to `resolve`."""

    def attribute(element: str, name: str, value: str) -> str | None:
        if (element, name) in (("img", "src"), ("a", "href")):
            return _target(value, resolve)
        return value

    return nh3.clean(
        _markdown().render(text),
        attributes={
            **nh3.ALLOWED_ATTRIBUTES,
            "th": nh3.ALLOWED_ATTRIBUTES["th"] | {"style"},
            "td": nh3.ALLOWED_ATTRIBUTES["td"] | {"style"},
            "details": {"open"},
        },
        attribute_filter=attribute,
        url_schemes=set(URL_SCHEMES),
        filter_style_properties={"text-align"},
    )


def _target(url: str, resolve: str) -> str | None:
    """A link or image target as the page should use it; None drops it."""
    if _SCHEME.match(url):
        return url if url.split(":", 1)[0].lower() in URL_SCHEMES else None
    if url.startswith(("/", "#", "?")) or not resolve:
        return url
    return f"{resolve}/{url.removeprefix('./')}"


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )


def _private(private: bool) -> str:
    return " <span class=private>private</span>" if private else ""


def index_page(repos: list[RepoLink], collections: Iterable[CollectionLink] = ()) -> str:
    """The front page: collections with their repos, then every repo, newest change first."""
    parts = ["<h1>Local Hub</h1>"]
    shown = list(collections)
    if shown:
        parts.append(f"<h2>Collections</h2>\n<p>{len(shown)} collections</p>")
        for c in shown:
            items = "".join(
                f'<li><a href="/{escape(item)}">{escape(item)}</a></li>' for item in c.items
            )
            about = f"<p>{escape(c.description)}</p>" if c.description else ""
            parts.append(
                f'<section class="collection"><h3>{escape(c.title)}{_private(c.private)}</h3>'
                f"<p><small>{escape(c.slug)}, {len(c.items)} items</small></p>{about}"
                f"<ul>{items}</ul></section>"
            )
    rows = "".join(
        f'<li><a href="/{escape(r.repo_id)}">{escape(r.repo_id)}</a>{_private(r.private)}'
        f" <small>{escape(r.last_modified)}</small></li>"
        for r in sorted(repos, key=lambda r: r.last_modified, reverse=True)
    )
    parts.append(f"<h2>Models</h2>\n<p>{len(repos)} model repos</p>\n<ul>{rows}</ul>")
    return _page("Local Hub", "\n".join(parts))


def repo_page(repo_id: str, commit_id: str, readme: str | None, files: list[FileRow]) -> str:
    """A repo's card (front matter as a code block, then the Markdown) and its files."""
    resolve = f"/{repo_id}/resolve/{commit_id}"
    parts = [f'<p><a href="/">Local Hub</a></p>\n<h1>{escape(repo_id)}</h1>']
    parts.append(f"<p>commit <code>{escape(commit_id)}</code></p>")
    if readme is None:
        parts.append("<p><em>No README.md</em></p>")
    else:
        metadata, card = split_front_matter(readme)
        if metadata is not None:
            parts.append(f'<pre class="metadata"><code>{escape(metadata)}</code></pre>')
        parts.append(f"<article>\n{render_markdown(card, resolve)}\n</article>")
    rows = "".join(
        f'<tr><td><a href="{escape(resolve)}/{escape(quote(f.path))}">{escape(f.path)}</a></td>'
        f"<td>{f.size:,}</td><td>{'LFS' if f.lfs else ''}</td></tr>"
        for f in files
    )
    parts.append(f"<h2>Files</h2>\n<table><tbody>{rows}</tbody></table>")
    return _page(repo_id, "\n".join(parts))
