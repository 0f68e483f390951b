"""report.html: one self-contained page per run, checked as text and in a real headless browser."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autotransfer.report.html import render_html, write_html_report

# ----------------------------------------------------------------------------- helpers


class _Page(HTMLParser):
    """Every tag of a page with its attributes, and the text of its headings."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.headings: list[str] = []
        self._in_heading = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_heading = tag in ("h1", "h2", "h3")
        if self._in_heading:
            self.headings.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("h1", "h2", "h3"):
            self._in_heading = False

    def handle_data(self, data: str) -> None:
        if self._in_heading:
            self.headings[-1] += data

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]


def parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    return parser


def decoded_pictures(page: _Page) -> list[Image.Image]:
    """Every <img> of ``page`` decoded from its data: URI (fails on any other source)."""
    pictures = []
    for attrs in page.all("img"):
        src = attrs["src"] or ""
        assert src.startswith("data:image/png;base64,"), f"not an embedded PNG: {src[:80]}"
        image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1], validate=True)))
        image.load()  # decodes every pixel: a truncated or corrupt PNG fails here
        assert image.format == "PNG" and min(image.size) > 0
        pictures.append(image)
    return pictures


def assert_self_contained(page: _Page) -> None:
    """Nothing in the page can load from elsewhere: no script, no stylesheet link, no frame,
    every src a data: URI, and a Content-Security-Policy that allows nothing else."""
    assert not page.all("script") and not page.all("link") and not page.all("iframe")
    for tag, attrs in page.tags:
        for name in ("src", "srcset", "poster", "data"):
            value = attrs.get(name)
            assert value is None or value.startswith("data:"), (tag, name, value[:80])
    policy = [a["content"] for a in page.all("meta")
              if (a.get("http-equiv") or "").lower() == "content-security-policy"]
    assert policy and "default-src 'none'" in policy[0] and "img-src data:" in policy[0]


def png(path: Path, colour: tuple[int, int, int] = (200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 24), colour).save(path)
    return path


# ----------------------------------------------------------------------------- the page itself


def test_pictures_are_embedded_and_tables_scroll(tmp_path):
    picture = png(tmp_path / "model" / "curves.png")
    text = ("# Run report: tiny\n\nIntro **bold**.\n\n## 1. The data\n\n| a | b |\n|---|---|\n"
            "| 1 | 2 |\n\n## 2. Pictures\n\n![the curves](model/curves.png)\n")
    page, pictures = render_html(text, tmp_path)
    parsed = parse(page)
    assert pictures.embedded == ["model/curves.png"] and not pictures.left_out
    (image,) = decoded_pictures(parsed)
    assert image.size == (40, 24) and image.getpixel((3, 3)) == (200, 30, 30)
    assert base64.b64encode(picture.read_bytes()).decode() in page  # the file, byte for byte
    assert parsed.all("img")[0]["alt"] == "the curves"
    assert '<div class="table-wrap">\n<table>' in page and "overflow-x: auto" in page
    assert "max-width: 100%" in page and 'name="viewport"' in page
    # the title once, as the page's heading; the sections in its table of contents
    assert parsed.headings == ["Run report: tiny", "1. The data", "2. Pictures"]
    assert "<title>Run report: tiny</title>" in page
    anchors = [a["href"] for a in parsed.all("a")]
    assert anchors == ["#1-the-data", "#2-pictures"]
    assert {a["id"] for a in parsed.all("h2")} == {"1-the-data", "2-pictures"}
    assert_self_contained(parsed)


def test_text_from_the_data_is_escaped_never_markup(tmp_path):
    # class names and file names come from the user's folder: they must stay text
    text = ('# <img src=x onerror=alert(1)>\n\n| class | note |\n|---|---|\n'
            '| <script>alert(1)</script> | a "quote" & <b>bold</b> |\n\n'
            '<iframe src="http://example.com"></iframe>\n\n[link](javascript:alert(1))\n')
    page, _ = render_html(text, tmp_path)
    parsed = parse(page)
    assert not parsed.all("script") and not parsed.all("iframe") and not parsed.all("b")
    assert not parsed.all("img")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<title>&lt;img src=x onerror=alert(1)&gt;</title>" in page
    assert "javascript:" not in " ".join(a.get("href") or "" for a in parsed.all("a"))
    assert_self_contained(parsed)


def test_a_picture_that_cannot_be_embedded_is_named_not_loaded(tmp_path):
    run = tmp_path / "run"
    png(tmp_path / "outside.png")
    png(run / "fine.png")
    (run / "fake.png").write_text("not a picture")
    text = ("# r\n\n![outside](../outside.png)\n\n![missing](missing.png)\n\n"
            "![fake](fake.png)\n\n![remote](http://example.com/x.png)\n\n![abs](/etc/x.png)\n\n"
            "![ok](fine.png)\n")
    page, pictures = render_html(text, run)
    assert pictures.embedded == ["fine.png"]
    assert pictures.left_out == {"../outside.png": "outside the run folder",
                                 "missing.png": "missing",
                                 "fake.png": "not a PNG, JPEG, GIF or WebP picture",
                                 "http://example.com/x.png": "not a file of the run folder",
                                 "/etc/x.png": "not a file of the run folder"}
    parsed = parse(page)
    assert len(decoded_pictures(parsed)) == 1
    assert "[picture not shown: missing (missing.png: missing)]" in page
    assert_self_contained(parsed)


def test_a_link_to_a_picture_outside_the_run_folder_is_not_followed(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    png(tmp_path / "secret.png")
    (run / "evil.png").symlink_to(tmp_path / "secret.png")
    page, pictures = render_html("![e](evil.png)\n", run)
    assert pictures.left_out == {"evil.png": "outside the run folder"} and "base64" not in page


def test_write_html_report_writes_beside_the_markdown(tmp_path):
    png(tmp_path / "p.png")
    (tmp_path / "report.md").write_text("# t\n\n![p](p.png)\n", encoding="utf-8")
    target = write_html_report(tmp_path / "report.md")
    assert target == tmp_path / "report.html"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.png", "report.html", "report.md"]
    assert len(decoded_pictures(parse(target.read_text(encoding="utf-8")))) == 1


def test_the_template_ships_with_the_package():
    from importlib.resources import files

    assert files("autotransfer.report").joinpath("templates/report.html.j2").is_file()
    import tomllib

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    config = tomllib.loads(pyproject.read_text())
    assert "templates/*.j2" in config["tool"]["setuptools"]["package-data"]["autotransfer.report"]
    deps = " ".join(config["project"]["dependencies"])
    assert "jinja2" in deps and "markdown-it-py" in deps


# ----------------------------------------------------------------------------- real runs


@pytest.fixture
def auto_run(tiny_auto_run):
    """A tiny ``auto`` run (the session's, tests/conftest.py: tests/test_auto.py reads it too);
    its final model (``model/``) is a ``train`` run with its own report."""
    return tiny_auto_run[0]


def _reports(result) -> dict[str, Path]:
    return {"auto": result.out / "report.html", "train": result.out / "model" / "report.html"}


@pytest.mark.parametrize("kind", ["auto", "train"])
def test_runs_write_a_self_contained_report_html(auto_run, kind):
    path = _reports(auto_run)[kind]
    page = parse(path.read_text(encoding="utf-8"))
    markdown = path.with_name("report.md").read_text(encoding="utf-8")
    # every picture report.md shows is embedded, and each is one of the run's PNG files
    assert markdown.count("![") == len(page.all("img")) >= 2
    assert "picture not shown" not in path.read_text(encoding="utf-8")
    pngs = {base64.b64encode(p.read_bytes()).decode() for p in path.parent.rglob("*.png")}
    assert all(a["src"].split(",", 1)[1] in pngs for a in page.all("img"))
    decoded_pictures(page)
    assert_self_contained(page)
    if kind == "auto":
        for heading in ("1. The data", "2. What was measured", "3. What was decided, and why",
                        "4. What tuning changed", "5. Final model", "6. Time"):
            assert heading in page.headings
        assert auto_run.to_dict()["report_html"] == str(path)
    else:
        assert "report.html" in json.loads((path.parent / "run.json").read_text())["files"]


def test_nothing_points_at_the_partial_folder_after_the_rename(auto_run):
    out = auto_run.out
    partial = out.with_name(out.name + ".partial")
    assert not partial.exists()
    readable = [p for p in out.rglob("*") if p.is_file()
                and p.suffix in (".json", ".md", ".html", ".yaml", ".csv", ".txt")]
    assert any(p.name == "tuning.json" for p in readable)
    for path in readable:
        assert partial.name not in path.read_text(encoding="utf-8", errors="replace"), path
    tuning = json.loads((out / "tuning" / "tuning.json").read_text())
    assert tuning["out"] == str(out / "tuning")
    assert Path(tuning["recipe"]).is_file() and Path(tuning["refined_recipe"]).is_file()
    assert auto_run.tuning.out == out / "tuning"
    summary = json.loads((out / "summary.json").read_text())
    assert Path(summary["report"]).is_file() and Path(summary["report_html"]).is_file()


# ----------------------------------------------------------------------------- the browser

_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium binary; skips (before the run is made) when none is found."""
    named = os.environ.get("AUTOTRANSFER_CHROMIUM")
    found = shutil.which(named) if named else next(
        (p for p in map(shutil.which, _BROWSERS) if p), None)
    if found is None:
        pytest.skip("needs a Chromium binary (chromium, chromium-browser or google-chrome on the "
                    "PATH, or AUTOTRANSFER_CHROMIUM): .ci/run installs Debian's 'chromium'")
    return found


def _browse(chromium: str, page: Path, profile: Path,
            *args: str) -> subprocess.CompletedProcess[str]:
    """Open ``page`` in headless Chromium; its console messages come back on stderr."""
    command = [chromium, "--headless", "--disable-gpu", "--no-sandbox",
               "--disable-dev-shm-usage", "--no-first-run", "--hide-scrollbars",
               f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
               *args, page.resolve().as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    # a page without scripts says nothing on the console unless something failed (a blocked
    # load, a broken picture, a Content-Security-Policy violation)
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, "\n".join(console)
    return done


@pytest.mark.browser
@pytest.mark.parametrize("kind", ["auto", "train"])
def test_report_html_loads_in_a_headless_browser(chromium, auto_run, kind, tmp_path):
    path = _reports(auto_run)[kind]
    dom = _browse(chromium, path, tmp_path / "profile", "--dump-dom").stdout
    page = parse(dom)  # the DOM as the browser built it
    assert page.all("main") and page.all("table") and len(page.headings) >= 3
    assert len(page.all("img")) == len(parse(path.read_text(encoding="utf-8")).all("img")) >= 2
    decoded_pictures(page)
    assert_self_contained(page)


#: a test-only probe (the shipped page has no script): after loading, the browser writes what it
#: decoded of each picture and how far the page is wider than the window into <body>'s attributes
_PROBE = """<script>window.addEventListener("load", () => {
  document.body.setAttribute("data-pictures", Array.from(document.images).map(
    i => i.complete && i.naturalWidth ? i.naturalWidth + "x" + i.naturalHeight : "broken")
    .join(" "));
  document.body.setAttribute("data-overflow",
    String(document.documentElement.scrollWidth - document.documentElement.clientWidth));
});</script>"""


@pytest.mark.browser
@pytest.mark.parametrize("size", ["390,844", "1600,1000"], ids=["phone", "wide"])
def test_every_picture_renders_and_the_page_fits_the_window(chromium, auto_run, size, tmp_path):
    for kind, path in _reports(auto_run).items():
        text = path.read_text(encoding="utf-8")
        probed = tmp_path / f"{kind}.html"
        probed.write_text(text.replace("default-src 'none';",
                                       "default-src 'none'; script-src 'unsafe-inline';", 1)
                          .replace("</body>", _PROBE + "</body>", 1), encoding="utf-8")
        dom = _browse(chromium, probed, tmp_path / f"profile-{kind}", "--dump-dom",
                      f"--window-size={size}").stdout
        body = parse(dom).all("body")[0]
        expected = [f"{w}x{h}" for w, h in (p.size for p in decoded_pictures(parse(text)))]
        assert (body["data-pictures"] or "").split() == expected and len(expected) >= 2, kind
        # wide tables scroll inside their frame: the page itself never scrolls sideways
        assert int(body["data-overflow"] or "1") <= 0, (kind, size, body["data-overflow"])


@pytest.mark.browser
@pytest.mark.parametrize("size", ["390,844", "1600,1000"], ids=["phone", "wide"])
def test_report_html_screenshots_are_not_blank(chromium, auto_run, size, tmp_path):
    for kind, path in _reports(auto_run).items():
        shot = tmp_path / f"{kind}.png"
        _browse(chromium, path, tmp_path / f"profile-{kind}", f"--screenshot={shot}",
                f"--window-size={size}")
        with Image.open(shot) as image:
            assert image.size == tuple(int(v) for v in size.split(","))
            grey = np.asarray(image.convert("L"), dtype=np.float64)
        background = np.median(grey)
        drawn = np.mean(np.abs(grey - background) > 40)  # text, tables and rules
        assert grey.std() > 10 and 0.01 < drawn < 0.6, (kind, size, grey.std(), drawn)
