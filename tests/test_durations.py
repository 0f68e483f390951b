"""Budgets: durations with units, 'none', and no silent "no budget" for an empty value."""

from __future__ import annotations

import pytest

from autotransfer.durations import format_duration, parse_duration
from autotransfer.errors import InvalidParameterError


@pytest.mark.parametrize(("text", "seconds"), [("30m", 1800.0), ("1h30m", 5400.0), ("90s", 90.0),
                                               (" 2 h ", 7200.0), (45, 45.0)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", [None, "none", "NONE"])
def test_no_limit_is_said_explicitly(text):
    assert parse_duration(text) is None and format_duration(None) == "no limit"


@pytest.mark.parametrize("text", ["", "   "])
def test_an_empty_budget_is_an_error_not_no_limit(text):
    with pytest.raises(InvalidParameterError, match="is empty.*'none' for no limit"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["30", "soon", "0s", -5, "1x"])
def test_bad_durations_say_what_is_expected(text):
    with pytest.raises(InvalidParameterError):
        parse_duration(text)
