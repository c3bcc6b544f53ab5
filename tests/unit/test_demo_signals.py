"""`make demo --keep-running` stops its processes on SIGTERM and on SIGINT, even as a background job."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.e2e.stack import REPO

PROBE = """
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)  # what a shell does to a background job
from tests.e2e.demo import stop_on_signals
stop_on_signals()
try:
    os.kill(os.getpid(), getattr(signal, sys.argv[1]))
    time.sleep(30)
except KeyboardInterrupt:
    print("clean-up runs")
"""


@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_keep_running_turns_signals_into_a_clean_stop(name: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, name], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "clean-up runs"
