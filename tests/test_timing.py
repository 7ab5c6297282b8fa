"""`timed()`: the clock the CLI commands report."""

from __future__ import annotations

import re

from emseg.timing import timed


def test_clock_counts_from_its_start_and_prints_seconds():
    clock = timed()
    first = clock.seconds
    assert 0 <= first <= clock.seconds
    assert re.fullmatch(r"\d+\.\d s", str(clock)) and re.fullmatch(r"wrote x in \d+\.\d s", f"wrote x in {clock}")
    clock.start -= 90
    assert str(clock).startswith("90.")
