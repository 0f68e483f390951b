"""Wall-clock budgets: ``"30m"``, ``"1h30m"``, ``"90s"`` -> seconds (pure)."""

from __future__ import annotations

import re

from autotransfer.errors import InvalidParameterError

_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(h|m|s)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(value: str | float | int | None, name: str = "time_budget") -> float | None:
    """Seconds of a duration such as ``"30m"``, ``"1h30m"``, ``"45s"`` or a number of seconds.

    ``None`` (and ``"none"``) mean no limit. An empty or blank string is an error, not "no
    limit": it is what an unset shell variable gives (``--time-budget "$BUDGET"``).
    """
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value <= 0:
            raise InvalidParameterError(f"The '{name}' parameter must be positive. Got {value!r} "
                                        "instead.")
        return float(value)
    text = str(value).strip().lower().replace(" ", "")
    if text == "":
        raise InvalidParameterError(
            f"The '{name}' parameter is empty. Give a duration with units, such as 30m, 1h30m or "
            "90s, or 'none' for no limit.")
    if text == "none":
        return None
    if _PART.sub("", text) == "" and _PART.search(text):
        seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))
        if seconds > 0:
            return seconds
    raise InvalidParameterError(
        f"The '{name}' parameter must be a duration with units, such as 30m, 1h30m or 90s. "
        f"Got {value!r} instead.")


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "no limit"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return (f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s")
