"""Plain HTML pages of the local Hub: the repo list and a repo's README and files.

The README is rendered by a small Markdown subset of our own (headings, paragraphs,
lists, quotes, fenced code, pipe tables, links, images, code spans, bold, italics).
Every piece of text is HTML-escaped first, so HTML inside a README shows as text, and
links only keep http(s), mailto and relative targets. Front matter is shown as a code
block above the card.

Example:
    >>> render_markdown("# Hi <b>\\n\\nSee [docs](https://x.y/?a=1&b=2).")
    '<h1>Hi &lt;b&gt;</h1>\\n<p>See <a href="https://x.y/?a=1&amp;b=2">docs</a>.</p>'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import escape
from urllib.parse import quote

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_RULE = re.compile(r"^\s*([-*_])(\s*\1){2,}\s*$")
_BULLET = re.compile(r"^\s*[-*+]\s+(.*)$")
_NUMBERED = re.compile(r"^\s*\d+[.)]\s+(.*)$")
_TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")
_CODE_SPAN = re.compile(r"`([^`]+)`")
_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_ITALIC = re.compile(r"(?<![*\w])\*(?!\s)(.+?)(?<!\s)\*(?![*\w])")
_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: .2rem .5rem; }
pre { background: #f4f4f4; padding: .5rem; overflow-x: auto; } .private { color: #a00; }
"""


@dataclass(frozen=True)
class RepoLink:
    """A line of the repo list."""

    repo_id: str
    private: bool
    last_modified: str


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


def _safe_url(url: str) -> str | None:
    """The URL (already escaped) if its scheme is harmless, else None."""
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):", url)
    if scheme and scheme.group(1).lower() not in ("http", "https", "mailto"):
        return None
    return url


def _inline(text: str, resolve: str) -> str:
    """Escape `text`, then apply the inline Markdown marks."""
    spans: list[str] = []

    def keep(html: str) -> str:
        spans.append(html)
        return f"\0{len(spans) - 1}\0"

    out = _CODE_SPAN.sub(
        lambda m: keep(f"<code>{m.group(1)}</code>"), escape(text.replace("\0", ""))
    )

    def image(m: re.Match[str]) -> str:
        src = _safe_url(m.group(2))
        if src is None:
            return m.group(1)
        if "://" not in src and not src.startswith("/") and resolve:
            src = f"{resolve}/{src.removeprefix('./')}"
        return keep(f'<img alt="{m.group(1)}" src="{src}">')

    def link(m: re.Match[str]) -> str:
        href = _safe_url(m.group(2))
        return m.group(1) if href is None else keep(f'<a href="{href}">{m.group(1)}</a>')

    out = _IMAGE.sub(image, out)
    out = _LINK.sub(link, out)
    out = _BOLD.sub(r"<strong>\1</strong>", out)
    out = _ITALIC.sub(r"<em>\1</em>", out)
    return re.sub(r"\0(\d+)\0", lambda m: spans[int(m.group(1))], out)


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def render_markdown(text: str, resolve: str = "") -> str:
    """HTML for a Markdown text; relative image paths are joined to `resolve`."""
    lines = text.splitlines()
    blocks: list[str] = []
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            blocks.append(f"<p>{_inline(' '.join(paragraph), resolve)}</p>")
            paragraph.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        if _FENCE.match(line):
            flush()
            fence = _FENCE.match(line).group(1)  # type: ignore[union-attr]
            end = next(
                (j for j in range(i + 1, len(lines)) if lines[j].strip() == fence), len(lines)
            )
            blocks.append(f"<pre><code>{escape(chr(10).join(lines[i + 1 : end]))}</code></pre>")
            i = end + 1
            continue
        if not line.strip():
            flush()
        elif heading := _HEADING.match(line):
            flush()
            level = len(heading.group(1))
            blocks.append(f"<h{level}>{_inline(heading.group(2), resolve)}</h{level}>")
        elif _RULE.match(line):
            flush()
            blocks.append("<hr>")
        elif "|" in line and i + 1 < len(lines) and _TABLE_SEPARATOR.match(lines[i + 1]):
            flush()
            head = "".join(f"<th>{_inline(c, resolve)}</th>" for c in _cells(line))
            rows, i = [], i + 2
            while i < len(lines) and "|" in lines[i] and lines[i].strip():
                rows.append("".join(f"<td>{_inline(c, resolve)}</td>" for c in _cells(lines[i])))
                i += 1
            body = "".join(f"<tr>{row}</tr>" for row in rows)
            blocks.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            continue
        elif _BULLET.match(line) or _NUMBERED.match(line):
            flush()
            pattern, tag = (_BULLET, "ul") if _BULLET.match(line) else (_NUMBERED, "ol")
            items = []
            while i < len(lines) and (item := pattern.match(lines[i])):
                items.append(f"<li>{_inline(item.group(1), resolve)}</li>")
                i += 1
            blocks.append(f"<{tag}>{''.join(items)}</{tag}>")
            continue
        elif line.lstrip().startswith(">"):
            flush()
            quoted = []
            while i < len(lines) and lines[i].lstrip().startswith(">"):
                quoted.append(lines[i].lstrip()[1:].removeprefix(" "))
                i += 1
            blocks.append(
                f"<blockquote>{render_markdown(chr(10).join(quoted), resolve)}</blockquote>"
            )
            continue
        else:
            paragraph.append(line.strip())
        i += 1
    flush()
    return "\n".join(blocks)


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )


def index_page(repos: list[RepoLink]) -> str:
    """The list of repos, newest change first."""
    rows = "".join(
        f'<li><a href="/{escape(r.repo_id)}">{escape(r.repo_id)}</a>'
        f"{' <span class=private>private</span>' if r.private else ''}"
        f" <small>{escape(r.last_modified)}</small></li>"
        for r in sorted(repos, key=lambda r: r.last_modified, reverse=True)
    )
    body = f"<h1>Local Hub</h1>\n<p>{len(repos)} model repos</p>\n<ul>{rows}</ul>"
    return _page("Local Hub", body)


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
