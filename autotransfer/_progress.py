"""Progress of long work on stderr, shared by the CLI and the Python API (``verbose=1``).

The work reports short texts (``"[4/6] Phase 'finetune' epoch 3/10: loss 0.41"``, ``"Trial 2:
…"``); :class:`ProgressDisplay` shows them with `rich <https://rich.readthedocs.io>`_:

* each new step (a text that is not an epoch's) is logged as a line, so a history remains;
* the live line shows the current work; where the text says how far it is (``k/n``: epochs,
  batches, backbones probed) it gets a bar, and rich's estimate of the time remaining; the probe
  has one bar from its first backbone to its last (the backbones before the one it names are
  done), not one per backbone;
* with a time budget, a second line shows the time used and left of the budget (the search's
  trials stop on it).

On a terminal (or a notebook) the lines update in place; elsewhere (a log file, a pipe) only the
logged lines are written. Nothing goes to stdout, which stays clean for ``--json``.
"""

from __future__ import annotations

import re
import time
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import (BarColumn, Progress, ProgressColumn, SpinnerColumn, Task,
                           TextColumn, TimeElapsedColumn, TimeRemainingColumn)
from rich.text import Text

#: "[i/N] " at the start of ``auto``'s texts: the step number, not a count of the work
_STEP = re.compile(r"^\[\d+/\d+\]\s*")
#: "3/10" in a text: how far the current work is
_COUNT = re.compile(r"(\d+)\s*/\s*(\d+)")
#: texts that only move the live line (one per epoch or batch), not worth a logged line
_DETAIL = re.compile(r"\bepoch \d+/\d+|\bbatch \d+/\d+", re.IGNORECASE)
#: the probe's texts (:class:`ProbingText`): one bar over all the backbones, whichever one is
#: measured and through the steps they share (decoding the images at another size)
_PROBING = re.compile(r"Probing\b[^:]*:")
_PROBING_KEY = "Probing"


class ProgressDisplay:
    """A context manager that shows ``say(text)`` / ``probing(backbone, what)`` on stderr.

    ``budget_s``: the time budget of the work (seconds from ``started``, default now), shown
    as used/left; ``None``: elapsed time only. ``backbones``: how many backbones the probe will
    measure, for a bar over them. A display opened while another is showing (``Advisor.fit``
    inside ``tune``) passes its texts to that one: one display at a time.
    """

    _active: ProgressDisplay | None = None

    def __init__(self, budget_s: float | None = None, *, started: float | None = None,
                 backbones: int | None = None, console: Any = None) -> None:
        self.budget_s = budget_s
        self.started = time.time() if started is None else started
        self.backbones = backbones
        self._console = console
        self._progress: Any = None
        self._work: Any = None
        self._budget: Any = None
        self._key: str | None = None
        self._probing = ProbingText(backbones)
        self._outer: ProgressDisplay | None = None

    def __enter__(self) -> ProgressDisplay:
        if ProgressDisplay._active is not None:
            self._outer = ProgressDisplay._active
            return self
        ProgressDisplay._active = self
        console = self._console or Console(stderr=True, log_path=False)
        self._progress = Progress(SpinnerColumn(), _Description(), BarColumn(bar_width=20),
                                  TextColumn("{task.fields[count]}"), TimeElapsedColumn(),
                                  _Remaining(), console=console, transient=True,
                                  refresh_per_second=4)
        self._progress.start()
        if self.budget_s:
            self._budget = self._progress.add_task("Budget", total=self.budget_s, count="",
                                                   budget_s=self.budget_s, started=self.started)
            self._tick()
        self._work = self._progress.add_task("Starting", total=None, count="")
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._outer is not None:
            self._outer = None
            return
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        ProgressDisplay._active = None

    # ---------------------------------------------------------------- callbacks
    def say(self, text: str) -> None:
        """A step's text: logged when it starts something new; the live line follows it."""
        if self._outer is not None:
            self._outer.say(text)
            return
        if self._progress is None:
            return
        detail = _DETAIL.search(text) is not None
        if not detail:
            self._progress.console.log(text, highlight=False, markup=False)
        body = _STEP.sub("", text)
        count = _COUNT.search(body)
        probing = _PROBING.match(body) is not None
        if count is not None and int(count.group(2)) > 0:
            done, total = int(count.group(1)), int(count.group(2))
            key = _PROBING_KEY if probing else body[:count.start()]
            if key != self._key:  # another piece of work: a fresh bar and estimate
                self._restart(total)
                self._key = key
            # the probe names the backbone it starts: those before it are the ones measured
            self._progress.update(self._work, description=self._short(text), total=total,
                                  completed=done - 1 if probing else done,
                                  count=f"{done}/{total}")
        elif probing and self._key == _PROBING_KEY:  # a shared step of the probe: the bar stays
            self._progress.update(self._work, description=self._short(text))
        elif not detail:
            self._key = None
            self._restart(None)
            self._progress.update(self._work, description=self._short(text))
        self._tick()

    def _restart(self, total: int | None) -> None:
        self._progress.remove_task(self._work)
        self._work = self._progress.add_task("", total=total, count="")

    def _short(self, text: str) -> str:
        """``text`` cut to what leaves the bar, counts and times room on the line."""
        from rich.markup import escape  # the step numbers "[4/6]" are text, not markup

        width = max(24, min(72, self._progress.console.width - 48))
        return escape(text if len(text) <= width else text[:width - 1] + "…")

    def probing(self, backbone: str, what: str) -> None:
        """The probe's callback: ``backbone`` (``""`` for the shared steps) and what it does."""
        self.say(self._probing(backbone, what))

    def _tick(self) -> None:
        if self._budget is None or self._progress is None:
            return
        used = time.time() - self.started
        self._progress.update(self._budget, completed=min(used, self.budget_s or 0.0))


class ProbingText:
    """The probe's ``(backbone, what)`` as one text that counts the backbones measured so far
    (``"Probing a (1/3 backbones): extracting features"``): the words of ``advise``'s display,
    which ``auto`` prefixes with its step. ``backbones``: how many will be probed (``None``: no
    count); a backbone measured again later (AdaBN, the target's gap) is not counted twice."""

    def __init__(self, backbones: int | None) -> None:
        self.backbones = backbones
        self._seen: list[str] = []

    def __call__(self, backbone: str, what: str) -> str:
        if backbone and backbone not in self._seen:
            self._seen.append(backbone)
        if backbone and self.backbones:
            n = max(self.backbones, len(self._seen))
            return f"Probing {backbone} ({len(self._seen)}/{n} backbones): {what}"
        return f"Probing{' ' + backbone if backbone else ''}: {what}"


class _Remaining(TimeRemainingColumn):
    """rich's estimate of the time remaining, labelled, for work that says how far it is."""

    def render(self, task: Task) -> Text:
        if task.total is None or not task.fields.get("count"):
            return Text("")
        return Text.assemble("ETA ", super().render(task))


class _Description(ProgressColumn):
    """The work's text; on the budget line, the time left (or over), computed at each refresh."""

    def render(self, task: Task) -> Text:
        budget = task.fields.get("budget_s")
        if not budget:
            return Text.from_markup(task.description)
        return _BudgetLeft().render(task)


class _BudgetLeft(ProgressColumn):
    """The budget line's words: time left, or over."""

    def render(self, task: Task) -> Text:
        from autotransfer.durations import format_duration

        budget = task.fields.get("budget_s")
        if not budget:
            return Text("")
        left = budget - (time.time() - task.fields["started"])
        if left >= 0:
            return Text(f"{format_duration(left)} left of {format_duration(budget)}")
        return Text(f"{format_duration(-left)} over the budget of {format_duration(budget)}",
                    style="red")
