"""User-supplied text (file names, class names, paths) placed in rich markup, shown as it is.

Rich reads ``[...]`` in a printed string as a style tag: a class folder named ``[bold]fish``
would be shown as a bold ``fish``, and a file ``q[/]z.png`` (folder ``q[``, file ``]z.png``)
would stop the command with a markup error. Every name that comes from the user's data goes
through :func:`shown` before it is printed with markup.
"""

from __future__ import annotations

from rich.markup import escape

from autotransfer.data.models import printable


def shown(text: object) -> str:
    """``text`` as rich markup that prints it literally (undecodable bytes as ``\\xNN``)."""
    return escape(printable(str(text)))
