"""Time helpers shared by the emulator's storage and views (milliseconds since the epoch, ISO text)."""

from __future__ import annotations

import time


def now_ms() -> int:
    """Current wall-clock time in milliseconds."""
    return int(time.time() * 1000)


def iso_ms(ms: int) -> str:
    """Milliseconds since the epoch as the ISO-8601 UTC text Neptune uses (2024-01-02T03:04:05.678Z)."""
    secs, rest = divmod(int(ms), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{rest:03d}Z"
