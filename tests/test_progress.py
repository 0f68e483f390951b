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
        assert display._progress.tasks[-1].completed == 2
    logged = buffer.getvalue()
    assert "Probing a (1/2 backbones): extracting features" in logged
    assert "Probing b (2/2 backbones)" in logged and "Probing: decoding 10 images" in logged


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
