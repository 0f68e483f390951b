"""report.md's table of files left out shows file names and messages as written, in the Markdown
and in report.html: a name is data, never Markdown (no italics, links or broken table cells)."""

from __future__ import annotations

import html
import re


from autotransfer.report.html import render_html
from autotransfer.report.text import markdown_code
from autotransfer.train.report import markdown_report

NAMES = ["train/cat/*x*.png", "train/cat/[a](http://example.com).png", "train/cat/a|b.png",
         "train/cat/`tick`.png", "train/cat/__init__.png", "train/cat/<b>&amp;.png",
         "train/cat/back\\slash.png", "train/cat/~~gone~~.png"]


def _metrics(paths: list[str]) -> dict:
    problems = [{"path": p, "code": "truncated", "severity": "error",
                 "message": f"{p} is cut *short* [see](http://example.com)",
                 "hint": "Re-export it."} for p in paths]
    return {"recipe": "r", "backbone": "mobilenet_v2", "input_size": 96, "class_names": ["cat"],
            "n_train": 4, "n_val": 2, "n_test": 0, "seconds_total": 1.0,
            "device": {"strategy": "default", "gpus": 0}, "precision": "float32",
            "batch_size": 8, "left_out": problems, "phases": [],
            "val": {"accuracy": 1.0, "balanced_accuracy": 1.0, "macro_f1": 1.0,
                    "per_class": {"cat": {"precision": 1.0, "recall": 1.0, "f1": 1.0,
                                          "support": 2}}}}


def _cells(page: str) -> list[list[str]]:
    """The left-out table's rows (cell HTML) of a rendered page."""
    table = page[page.index("<th>file</th>"):]
    table = table[:table.index("</table>")]
    return [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
            for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)]


def test_left_out_names_and_messages_render_literally(tmp_path):
    text = markdown_report(_metrics(NAMES))
    for name in NAMES:
        assert f"| {markdown_code(name)} |" in text
    page, _ = render_html(text, tmp_path)
    rows = _cells(page)
    assert len(rows) == len(NAMES) and all(len(r) == 3 for r in rows)
    for name, (path, reason, hint) in zip(NAMES, rows, strict=True):
        assert path == f"<code>{html.escape(name, quote=False)}</code>"
        assert reason == html.escape(f"truncated: {name} is cut *short* [see](http://example.com)",
                                     quote=False)
        assert hint == "Re-export it."
    table = "".join("".join(row) for row in rows)
    assert "<em>" not in table and "<a " not in table and "<del>" not in table


def test_class_recipe_and_backbone_names_render_literally(tmp_path):
    """Names the user chose (class folders, the recipe, a custom backbone) are data, never
    Markdown: ``*x*`` is not italics and ``a|b`` does not split the class table's row."""
    metrics = _metrics([])
    classes = {"*x*": 1, "a|b": 1, "__init__": 1, "[l](http://e.com)": 1}
    metrics.update(recipe="my_*recipe*", backbone="net._v2_", class_names=list(classes),
                   val={**metrics["val"], "per_class": {
                       name: {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": n}
                       for name, n in classes.items()}})
    page, _ = render_html(markdown_report(metrics), tmp_path)
    assert "<h1>Run report: my_*recipe*</h1>" in page and "<strong>net._v2_</strong>" in page
    table = page[page.index("<th>class</th>"):]
    table = table[:table.index("</table>")]
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
            for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)]
    assert [r[0] for r in rows] == list(classes) and {len(r) for r in rows} == {5}
    assert "<em>" not in page and "<strong>init</strong>" not in page
    assert 'href="http://e.com"' not in page
