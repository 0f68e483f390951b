"""Fixtures of the bad-input corpus: built once per session from code, checked after every use."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from autotransfer.cli import main
from tests.security.corpus import Corpus, build_corpus, snapshot


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return build_corpus(tmp_path_factory.mktemp("bad_inputs"))


@dataclass
class Outcome:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + "\n" + self.err


class Runner:
    """Runs ``autotransfer.cli.main`` in-process and checks the promises every command keeps."""

    def __init__(self, corpus: Corpus, capture: pytest.CaptureFixture[str]) -> None:
        self.corpus, self.capture = corpus, capture

    def __call__(self, *args: str, codes: tuple[int, ...] = (0, 2)) -> Outcome:
        before = snapshot(self.corpus.tree)
        self.capture.readouterr()
        code = main([str(a) for a in args])
        captured = self.capture.readouterr()
        outcome = Outcome(code, captured.out, captured.err)
        shown = f"autotransfer {' '.join(map(str, args))} -> {code}\n{outcome.text[-4000:]}"
        assert "Traceback" not in outcome.text, shown
        assert "Internal error" not in outcome.text, shown
        assert code in codes, shown
        after = snapshot(self.corpus.tree)
        changed = sorted(set(before.items()) ^ set(after.items()))
        assert before == after, f"the dataset tree changed: {changed[:10]}\n{shown}"
        assert not self.corpus.marker.exists(), f"a payload ran\n{shown}"
        return outcome


@pytest.fixture
def cli(corpus: Corpus, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> Runner:
    # capsys, not capfd: its streams encode strictly, as a terminal's do, so a command that
    # prints a file name's undecodable bytes fails here as it would for a user
    monkeypatch.setenv("COLUMNS", "1000")  # wide enough that rich never wraps a file name
    return Runner(corpus, capsys)


def unnamed(tokens: dict[str, str], *texts: str) -> list[str]:
    """The entries of ``tokens`` (token -> entry) that none of ``texts`` names."""
    joined = "\n".join(texts)
    return [entry for token, entry in tokens.items() if token not in joined]


def output_texts(folder: Path) -> list[str]:
    """The text of every JSON, Markdown, YAML and text file a command wrote under ``folder``."""
    texts = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix in (".json", ".md", ".yaml", ".txt", ".csv"):
            texts.append(path.read_text(encoding="utf-8", errors="replace"))
    return texts
