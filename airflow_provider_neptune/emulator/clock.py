"""Time helpers shared by the emulator's storage and views (milliseconds since the epoch, ISO text)."""

from __future__ import annotations

import time

# The datetimes a Neptune field or series timestamp may hold: years 1 to 9999 (what ISO-8601 text and
# the client's datetime can represent). Writes outside are refused; iso_ms clamps to be safe anyway.
MIN_MS = -62135596800000  # 0001-01-01T00:00:00.000Z
MAX_MS = 253402300799999  # 9999-12-31T23:59:59.999Z


def now_ms() -> int:
    """Current wall-clock time in milliseconds."""
    return int(time.time() * 1000)


def iso_ms(ms: int) -> str:
    """Milliseconds since the epoch as the ISO-8601 UTC text Neptune uses (2024-01-02T03:04:05.678Z)."""
    secs, rest = divmod(min(max(int(ms), MIN_MS), MAX_MS), 1000)
    t = time.gmtime(secs)
    return (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
        f".{rest:03d}Z"
    )
