"""``report.html``: a run's ``report.md`` as one self-contained page a person opens.

The Markdown is converted by markdown-it-py (CommonMark plus tables; raw HTML in the text is
escaped, never passed through) and placed in a Jinja2 page template shipped with the package
(``templates/report.html.j2``, autoescaping on). Every picture the report references inside its
run folder is embedded as a ``data:`` URI, so the page can be mailed, archived or opened on a phone
and still show its plots; tables scroll sideways on a narrow screen. Nothing in the page loads
anything from the network: its Content-Security-Policy allows only inline styles and ``data:``
images.

A picture that is missing, lies outside the run folder or is not a PNG/JPEG/GIF/WebP file is not
embedded: the page says so in its place (nothing is read from elsewhere).
"""

from __future__ import annotations

import base64
import html
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from autotransfer._io import atomic_write_text

#: the template of the page, in autotransfer/report/templates/
TEMPLATE = "report.html.j2"
#: the HTML page written beside ``report.md``
HTML_NAME = "report.html"
#: a table cell with more characters than this is a sentence: it gets a readable width
LONG_CELL = 24
#: a picture larger than this is not embedded (the page names it instead)
MAX_PICTURE_BYTES = 32 * 1024 * 1024

_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


@dataclass
class Pictures:
    """What happened to the pictures of one page: embedded, or left out with why."""

    folder: Path
    embedded: list[str] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)

    def data_uri(self, src: str) -> str | None:
        """``src`` (relative to :attr:`folder`) as a ``data:`` URI, or ``None`` (with why)."""
        path, reason = self._locate(src)
        if path is None:
            self.left_out[src] = reason
            return None
        data = path.read_bytes()
        mime = picture_type(data)
        if mime is None:
            self.left_out[src] = "not a PNG, JPEG, GIF or WebP picture"
            return None
        self.embedded.append(src)
        return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"

    def _locate(self, src: str) -> tuple[Path | None, str]:
        """The file ``src`` names inside :attr:`folder` (links followed), or why there is none."""
        parts = urlsplit(src)
        if parts.scheme or parts.netloc or src.startswith("/"):
            return None, "not a file of the run folder"
        root = self.folder.resolve()
        path = (self.folder / unquote(parts.path)).resolve()
        if root not in path.parents:
            return None, "outside the run folder"
        if not path.is_file():
            return None, "missing"
        if path.stat().st_size > MAX_PICTURE_BYTES:
            return None, f"larger than {MAX_PICTURE_BYTES // 2**20} MiB"
        return path, ""


def picture_type(data: bytes) -> str | None:
    """The MIME type of a PNG, JPEG, GIF or WebP picture from its first bytes; else ``None``."""
    for signature, mime in _SIGNATURES:
        if data.startswith(signature):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _slug(text: str, seen: dict[str, int]) -> str:
    base = re.sub(r"[^\w]+", "-", text.lower(), flags=re.UNICODE).strip("-") or "section"
    n = seen.get(base, 0)
    seen[base] = n + 1
    return base if n == 0 else f"{base}-{n}"


def _markdown(pictures: Pictures) -> Any:
    """A markdown-it-py parser whose tables scroll and whose pictures are embedded."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False, "typographer": False}).enable("table")

    def image(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
        token = tokens[idx]
        src = str(token.attrGet("src") or "")
        uri = pictures.data_uri(src)
        if uri is None:
            alt = self.renderInlineAsText(token.children or [], options, env)
            return (f'<span class="missing">[picture not shown: {html.escape(alt)} '
                    f'({html.escape(unquote(src))}: {html.escape(pictures.left_out[src])})]</span>')
        token.attrSet("src", uri)
        return self.image(tokens, idx, options, env)

    def table_open(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
        return '<div class="table-wrap">\n' + self.renderToken(tokens, idx, options, env)

    def table_close(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
        return self.renderToken(tokens, idx, options, env) + "</div>\n"

    def td_open(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
        if len(tokens[idx + 1].content) > LONG_CELL:  # a sentence: wide enough to read
            tokens[idx].attrJoin("class", "long")
        return self.renderToken(tokens, idx, options, env)

    md.add_render_rule("image", image)
    md.add_render_rule("td_open", td_open)
    md.add_render_rule("table_open", table_open)
    md.add_render_rule("table_close", table_close)
    return md


@dataclass(frozen=True)
class Heading:
    """A section of the page, for its table of contents."""

    level: int
    text: str
    anchor: str


def _body(markdown_text: str, pictures: Pictures) -> tuple[str, str | None, list[Heading]]:
    """The page body (HTML), its title (the first level-1 heading) and its sections."""
    md = _markdown(pictures)
    tokens = md.parse(markdown_text)
    title, sections, seen, dropped = None, [], {}, set()
    for i, token in enumerate(tokens):
        if token.type != "heading_open":
            continue
        text = md.renderer.renderInlineAsText(tokens[i + 1].children or [], md.options, {})
        level = int(token.tag[1])
        if level == 1 and title is None:  # the page's own heading shows it
            title, dropped = text, {i, i + 1, i + 2}
            continue
        anchor = _slug(text, seen)
        token.attrSet("id", anchor)
        if level == 2:
            sections.append(Heading(level, text, anchor))
    shown = [t for i, t in enumerate(tokens) if i not in dropped]
    return md.renderer.render(shown, md.options, {}), title, sections


def _environment() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("autotransfer.report", "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
        lstrip_blocks=True)


def render_html(markdown_text: str, folder: str | os.PathLike[str], *,
                title: str | None = None) -> tuple[str, Pictures]:
    """``markdown_text`` (a report of the run folder ``folder``) as one self-contained page.

    Pictures are resolved against ``folder``; returns the page and what became of the pictures.
    """
    from markupsafe import Markup

    pictures = Pictures(Path(folder))
    body, heading, sections = _body(markdown_text, pictures)
    page = _environment().get_template(TEMPLATE).render(
        title=title or heading or "autotransfer report", body=Markup(body), sections=sections)
    return page, pictures


def write_html_report(markdown_path: str | os.PathLike[str],
                      html_path: str | os.PathLike[str] | None = None) -> Path:
    """Write ``report.html`` beside ``markdown_path`` (or to ``html_path``), atomically."""
    source = Path(markdown_path)
    target = Path(html_path) if html_path is not None else source.with_name(HTML_NAME)
    page, _ = render_html(source.read_text(encoding="utf-8"), source.parent)
    return atomic_write_text(target, page)
