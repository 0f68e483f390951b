"""Names from the user's data are printed as they are, never read as rich markup: a class folder
``[bold]fish`` is not shown as a bold ``fish``, and a path holding ``[/]`` (folder ``q[``, file
``]z.png``) does not stop the command with a markup error (it was exit 70). Nor as Markdown in a
report: ``*x*`` is not italics, ``a|b`` does not split a table cell."""

from __future__ import annotations

import html
import os

import pytest
from rich.console import Console

from autotransfer.advisor.advise import decide
from autotransfer.data.profile import profile_dataset
from autotransfer.report.advice import render_advice
from autotransfer.report.profile import render_profile
from autotransfer.report.html import render_html
from autotransfer.report.text import markdown_code, markdown_literal, shown
from tests.advisor import synthetic as s
from tests.data.builders import write_image

HOSTILE_CLASS = "[bold]fish"
CLOSING = "q["  # with the file ']z.png' in it, the path reads 'q[/]z.png'


def _console() -> Console:
    return Console(record=True, width=400)


def test_shown_prints_markup_characters_literally():
    console = _console()
    for text in ("q[/]z.png", "[bold]fish", "y[red].png", "[link=file:///etc]x",
                 os.fsdecode(b"caf\xe9[/b].png")):
        console.print(f"<{shown(text)}>")
    name = "end_backslash\\"
    console.print(f"[bold]{shown(name)}[/bold]")  # its backslash does not escape the tag after it
    out = console.export_text()
    assert "<q[/]z.png>" in out and "<[bold]fish>" in out and "<y[red].png>" in out
    assert "<[link=file:///etc]x>" in out and "end_backslash\\\n" in out
    assert "<caf\\xe9[/b].png>" in out  # the undecodable byte, as \xNN


def test_a_profile_with_markup_in_names_renders_every_name(tmp_path):
    root = tmp_path / "d[" / "]ata"  # the dataset's own path reads '.../d[/]ata'
    for k, label in enumerate((HOSTILE_CLASS, CLOSING)):
        for i in range(2):
            write_image(root / label / f"img_{i}.png", seed=10 * k + i)
    (root / CLOSING / "]z.png").write_bytes(b"")  # an error row naming 'q[/]z.png'
    console = _console()
    render_profile(profile_dataset(root, workers=1), console, max_problems=None)
    out = console.export_text()
    assert "d[/]ata" in out and HOSTILE_CLASS in out and "q[/]z.png" in out


def test_advice_and_probe_reports_show_markup_in_class_names_literally():
    probe = s.probe("mobilenet_025", 0.5).model_copy(update={"forward_ms": 2.0})
    report = s.report(probe).model_copy(update={
        "root": "/data/[/]odd", "sample_per_class": {HOSTILE_CLASS: 10, "q[/]z": 10}})
    advice = decide(s.profile({HOSTILE_CLASS: 10, "q[/]z": 10}), report, time_budget=None)
    console = _console()
    render_advice(advice, console, show_probes=True)
    out = console.export_text()
    assert "/data/[/]odd" in out and f"{HOSTILE_CLASS} 10" in out and "q[/]z 10" in out


@pytest.mark.parametrize("text", ["`", "``a`", " lead", "trail ", "a\nb", "|", "x ` y"])
def test_code_span_keeps_awkward_names(text, tmp_path):
    page, _ = render_html(f"| f |\n| --- |\n| {markdown_code(text)} |\n", tmp_path)
    one_line = " ".join(text.splitlines())
    assert f"<td><code>{html.escape(one_line, quote=False)}</code></td>" in page


def test_literal_escapes_every_markup_character():
    assert markdown_literal("a*b_c[d](e)<f>&g~h|i`j\\k\nl") == (
        "a\\*b\\_c\\[d\\](e)\\<f\\>\\&g\\~h\\|i\\`j\\\\k l")
    assert markdown_literal(os.fsdecode(b"caf\xe9*.png")) == "caf\\\\xe9\\*.png"  # \xNN


@pytest.mark.parametrize("name", ["*x*", "__init__", "a|b", "[l](http://e.com)", "<b>&amp;",
                                  "~~gone~~", "`tick`", "back\\slash", "x._v2_"])
def test_a_literal_renders_as_written_in_prose_and_in_a_table_cell(name, tmp_path):
    text = markdown_literal(name)
    page, _ = render_html(f"{text}\n\n| class | n |\n| --- | --- |\n| {text} | 1 |\n", tmp_path)
    written = html.escape(name, quote=False)
    assert f"<p>{written}</p>" in page and f"<td>{written}</td>\n<td>1</td>" in page
