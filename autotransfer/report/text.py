"""User-supplied text (file names, class names, paths) placed in rich markup or in Markdown,
shown as it is.

Rich reads ``[...]`` in a printed string as a style tag: a class folder named ``[bold]fish``
would be shown as a bold ``fish``, and a file ``q[/]z.png`` (folder ``q[``, file ``]z.png``)
would stop the command with a markup error. Every name that comes from the user's data goes
through :func:`shown` before it is printed with markup.

Markdown reads ``*x*`` as italics, ``[a](b)`` as a link and ``|`` as the end of a table cell: every
name written into a report (``report.md``, ``tuning.md`` and the HTML pages made from them) goes
through :func:`markdown_literal`, or :func:`markdown_code` for a file path shown as code. This
module imports nothing above :mod:`autotransfer.data`, so that every report writer (train,
tuning, oneshot) can use it.
"""

from __future__ import annotations

import re

from rich.markup import escape

from autotransfer.data.models import printable

#: characters that start Markdown markup inside a line (emphasis, code, links, autolinks, entities,
#: strikethrough, table cells); a backslash makes each one literal (CommonMark's escapes)
_MARKUP = re.compile(r"([\\`*_\[\]<>&~|])")


def shown(text: object) -> str:
    """``text`` as rich markup that prints it literally (undecodable bytes as ``\\xNN``)."""
    return escape(printable(str(text)))


def _one_line(text: object) -> str:
    return " ".join(printable(str(text)).splitlines())


def markdown_literal(text: object) -> str:
    """``text`` on one line with every Markdown markup character backslash-escaped, so that it
    shows as written in a report's prose or table cell (a ``|`` stays inside its cell), in the
    Markdown and in the HTML page made from it; undecodable bytes as ``\\xNN``."""
    return _MARKUP.sub(r"\\\1", _one_line(text))


def markdown_code(text: object) -> str:
    """``text`` as a one-line code span for a table cell: shown literally, whatever it holds
    (a fence longer than any run of backticks in it; ``|`` escaped, as tables need even there)."""
    text = _one_line(text)
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    if text[:1] in "` " or text[-1:] in "` ":  # CommonMark strips one space each side
        text = f" {text} "
    return fence + text.replace("|", "\\|") + fence
