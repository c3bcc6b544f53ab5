"""The pure helpers the end-to-end checks rest on: interval overlap, the upload-gate model, log rendering."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from tests.e2e.scenario import gate_uploads
from tests.e2e.stack import StackError, log_text, max_overlap, parse_time, wait_until

T0 = datetime(2026, 1, 1)


def _span(start: int, end: int) -> tuple[datetime, datetime]:
    return T0 + timedelta(seconds=start), T0 + timedelta(seconds=end)


def test_max_overlap_counts_intervals_open_at_once() -> None:
    assert max_overlap([]) == 0
    assert max_overlap([_span(0, 10)]) == 1
    assert max_overlap([_span(0, 10), _span(5, 15), _span(6, 7)]) == 3
    # A task starting the instant another ends did not run beside it.
    assert max_overlap([_span(0, 5), _span(5, 10), _span(10, 15)]) == 1
    assert max_overlap([_span(0, 5), _span(1, 2), _span(3, 4), _span(4, 9)]) == 2


def test_gate_model_sends_only_the_best_k_so_far_and_ties_lose() -> None:
    assert gate_uploads([0.5, 0.4, 0.6, 0.45, 0.7], top_k=2) == [True, True, True, False, True]
    assert gate_uploads([0.5, 0.5, 0.5], top_k=2) == [True, True, False]
    assert gate_uploads([0.3, 0.2, 0.1], top_k=1) == [True, False, False]


def test_log_text_renders_json_lines_and_keeps_others() -> None:
    lines = [
        json.dumps({"timestamp": "t", "level": "info", "event": "Pausing task as DEFERRED.", "logger": "x"}),
        "plain line",
        json.dumps({"level": "error", "event": "boom", "error_detail": "trace"}),
    ]
    text = log_text("\n".join(lines)).splitlines()
    assert text[0] == "info Pausing task as DEFERRED."
    assert text[1] == "plain line"
    assert text[2] == "error boom {'error_detail': 'trace'}"


def test_parse_time_reads_the_api_format() -> None:
    parsed = parse_time("2026-11-26T15:42:36.405909Z")
    assert parsed is not None
    assert parsed.utcoffset() == timedelta(0)
    assert parse_time(None) is None


def test_wait_until_returns_the_first_truthy_value_or_names_what_timed_out() -> None:
    answers = iter([None, 0, "ready"])
    assert wait_until(lambda: next(answers), timeout=5, interval=0.01, what="answers") == "ready"
    with pytest.raises(StackError, match="timed out after 0s waiting for nothing"):
        wait_until(lambda: None, timeout=0.05, interval=0.01, what="nothing")
