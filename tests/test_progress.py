"""The progress display of the CLI and of the Python API (verbose=1)."""

from __future__ import annotations

import io
import time

from rich.console import Console

from autotransfer._progress import ProgressDisplay


def _console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=False, width=160, log_path=False), buffer


def test_steps_are_logged_and_counts_become_bars():
    console, buffer = _console()
    with ProgressDisplay(console=console) as display:
        display.say("[1/6] Profiling data")
        display.say("[4/6] Phase 'head' epoch 1/4: loss 0.9")
        task = display._progress.tasks[-1]
        assert (task.completed, task.total, task.fields["count"]) == (1, 4, "1/4")
        display.say("[4/6] Phase 'head' epoch 3/4: loss 0.5")
        same = display._progress.tasks[-1]
        assert same.id == task.id and same.completed == 3  # the same bar moves on
        display.say("[4/6] Phase 'finetune' epoch 1/9: loss 0.4")
        fresh = display._progress.tasks[-1]
        assert fresh.id != task.id and fresh.total == 9  # another phase: a fresh estimate
        display.say("[6/6] Writing the report")
        assert display._progress.tasks[-1].total is None  # no count: a spinner, no bar
    logged = buffer.getvalue()
    assert "[1/6] Profiling data" in logged and "[6/6] Writing the report" in logged
    assert "epoch 1/4" not in logged  # epochs move the live line only


def test_the_budget_line_counts_down_and_says_when_it_is_over():
    console, _ = _console()
    with ProgressDisplay(100.0, started=time.time() - 30, console=console) as display:
        budget = display._progress.tasks[0]
        assert budget.total == 100.0 and 29 <= budget.completed <= 40
        from autotransfer._progress import _BudgetLeft

        assert "left of 1m40s" in _BudgetLeft().render(budget).plain
    with ProgressDisplay(10.0, started=time.time() - 30, console=console) as display:
        text = _BudgetLeft().render(display._progress.tasks[0])
        assert "over the budget of 10s" in text.plain and text.style == "red"


def test_probing_counts_the_backbones():
    console, buffer = _console()
    with ProgressDisplay(backbones=2, console=console) as display:
        display.probing("", "decoding 10 images at 96px")
        display.probing("a", "extracting features")
        display.probing("a", "measuring")
        display.probing("b", "extracting features")
        assert display._progress.tasks[-1].completed == 1  # a is measured, b is under way
    logged = buffer.getvalue()
    assert "Probing a (1/2 backbones): extracting features" in logged
    assert "Probing b (2/2 backbones)" in logged and "Probing: decoding 10 images" in logged


def test_autos_probing_line_counts_the_backbones_under_its_step():
    """auto prefixes the same words with its step: the count still makes a bar."""
    from autotransfer._progress import ProbingText

    text = ProbingText(2)
    assert text("", "decoding") == "Probing: decoding"
    assert text("a", "extracting features") == "Probing a (1/2 backbones): extracting features"
    text("b", "measuring")
    assert text("a", "AdaBN") == "Probing a (2/2 backbones): AdaBN"  # not counted twice
    assert ProbingText(None)("a", "measuring") == "Probing a: measuring"
    console, _ = _console()
    with ProgressDisplay(console=console) as display:
        display.say("[1/6] " + ProbingText(3)("a", "extracting features"))
        task = display._progress.tasks[-1]
        assert (task.completed, task.total, task.fields["count"]) == (0, 3, "1/3")


def _rendered(display: ProgressDisplay) -> list[str]:
    """The live lines as a terminal shows them now."""
    snap = Console(record=True, file=io.StringIO(), width=140, color_system=None)
    snap.print(display._progress.get_renderable())
    return [line for line in snap.export_text().splitlines() if line.strip()]


def test_the_probe_is_one_bar_from_its_first_backbone_to_its_last():
    """Neither a new backbone nor a step the backbones share (decoding at another size) starts
    a fresh bar: one bar, one elapsed time and one estimate for the whole probe, in advise's
    words and under auto's step alike."""
    from autotransfer._progress import ProbingText

    console, _ = _console()
    with ProgressDisplay(backbones=3, console=console) as display:
        display.probing("", "decoding 10 images at 96px")
        display.probing("a", "extracting features")
        bar = display._progress.tasks[-1]
        display.probing("a", "measuring")
        display.probing("", "decoding 10 images at 128px")
        display.probing("b", "extracting features")
        display.probing("c", "measuring")
        tasks = display._progress.tasks
        assert [t.id for t in tasks] == [bar.id]  # the same bar all along
        assert tasks[0].start_time == bar.start_time
        assert (tasks[0].completed, tasks[0].total, tasks[0].fields["count"]) == (2, 3, "3/3")
        [line] = _rendered(display)
        assert "Probing c (3/3 backbones): measuring" in line and "3/3" in line
        display.say("Advising")  # the probe is over: no bar
        assert display._progress.tasks[-1].total is None
    probing = ProbingText(2)
    with ProgressDisplay(console=console) as display:
        display.say("[1/6] " + probing("a", "extracting features"))
        bar = display._progress.tasks[-1]
        display.say("[1/6] " + probing("", "decoding 10 images at 128px"))
        display.say("[1/6] " + probing("b", "extracting features"))
        assert [t.id for t in display._progress.tasks] == [bar.id]
        assert display._progress.tasks[-1].completed == 1


def test_markup_in_a_text_is_shown_as_text():
    console, buffer = _console()
    with ProgressDisplay(console=console) as display:
        display.say("[3/6] Trial 1: class '[red]' and [/] brackets")
    assert "[red]" in buffer.getvalue() and "[/]" in buffer.getvalue()


def test_a_display_opened_inside_another_passes_its_texts_on():
    console, buffer = _console()
    with ProgressDisplay(console=console) as outer:
        with ProgressDisplay(backbones=1) as inner:  # Advisor.fit inside tune
            assert inner._progress is None  # no second live display
            inner.probing("a", "measuring")
        outer.say("after")
    assert "Probing a (1/1 backbones): measuring" in buffer.getvalue()
    with ProgressDisplay(console=console) as again:  # the first one is closed: a fresh one
        assert again._progress is not None


def _recorded(monkeypatch) -> list[str]:
    """Every text a ProgressDisplay is told, from now on (the display still shows it)."""
    texts: list[str] = []
    original = ProgressDisplay.say

    def say(self: ProgressDisplay, text: str) -> None:
        texts.append(text)
        original(self, text)

    monkeypatch.setattr(ProgressDisplay, "say", say)
    return texts


def test_train_in_python_shows_its_phases_and_epochs(tmp_path, monkeypatch, capsys):
    """``autotransfer.train(...)``: progress=True (the default) is the CLI's display on stderr;
    progress=False is silent; a callable hears the same texts."""
    import autotransfer
    import autotransfer.train.export  # noqa: F401 - autotransfer.train now names the package
    from tests.train.helpers import make_colour_dataset, tiny_recipe

    texts = _recorded(monkeypatch)
    data = make_colour_dataset(tmp_path / "ds", {"red": 6, "green": 6})
    autotransfer.train(data, tiny_recipe(), tmp_path / "run")  # still the function's call
    assert "Phase 'head' epoch 1/2" in "\n".join(texts)
    assert any(t.startswith("Phase 'fine_tune' epoch 2/2") for t in texts)
    err = capsys.readouterr().err
    assert "Writing the model, metrics, plots and report" in err  # a step: logged on stderr
    assert "epoch 1/2" not in err  # epochs move the live line only
    texts.clear()
    heard: list[str] = []
    autotransfer.train(data, tiny_recipe(), tmp_path / "quiet", progress=False)
    autotransfer.train(data, tiny_recipe(), tmp_path / "heard", progress=heard.append)
    assert texts == [] and "Writing the model" not in capsys.readouterr().err
    assert any(t.startswith("Phase 'head' epoch 2/2") for t in heard)


def test_tune_in_python_shows_its_trials_and_the_budget(tmp_path, monkeypatch, capsys):
    import autotransfer
    from tests.train.helpers import make_colour_dataset, tiny_recipe

    texts = _recorded(monkeypatch)
    budgets: list[float | None] = []
    opened = ProgressDisplay.__init__

    def init(self: ProgressDisplay, budget_s: float | None = None, **kwargs: object) -> None:
        budgets.append(budget_s)
        opened(self, budget_s, **kwargs)

    monkeypatch.setattr(ProgressDisplay, "__init__", init)
    data = make_colour_dataset(tmp_path / "ds", {"red": 6, "green": 6})
    recipe = tiny_recipe(phases=[{"name": "head", "epochs": 2, "trainable_from": 5,
                                  "learning_rate": 0.05, "schedule": "constant"}])
    autotransfer.tune(data, recipe, tmp_path / "t", trials=2, time_budget="10m")
    assert budgets == [600.0]
    said = "\n".join(texts)
    assert "Searching:" in said and "Trial" in said and "Best trial" in said
    assert "Best trial" in capsys.readouterr().err
    texts.clear()
    autotransfer.tune(data, recipe, tmp_path / "t2", trials=1, verbose=0)
    assert texts == []
