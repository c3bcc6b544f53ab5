"""The run page lists checkpoints as the real retention operator leaves them: kept, and deleted."""

from __future__ import annotations

import re
import urllib.request
import uuid
from html import unescape
from typing import Any

import pytest
from test_retention import SCORES, _op

from tests.helpers.artifacts_support import close_pooled_runs, context, use_emulator  # noqa: F401 (fixture)
from tests.helpers.retention_runs import checkpoint_payload, make_runs

pytestmark = pytest.mark.integration


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return bytes(response.read())


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_run_page_shows_what_retention_kept_and_deleted(
    neptune_emulator: Any, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    use_emulator(monkeypatch, neptune_emulator, mode)
    tag = f"web-{uuid.uuid4().hex[:10]}"
    ids = make_runs(neptune_emulator, tag, SCORES, keep=["a/0"])
    summary = _op(tag, mode=mode).execute(context())
    assert summary["checkpoints_deleted"] == 3

    html = _get(neptune_emulator.run_url(ids["a"])).decode()
    rows = dict(re.findall(r"<tr data-entry='([^']+)'>(.*?)</tr>", html))
    statuses = {
        entry: re.search(r"<td class='status[^']*'>([^<]*)</td>", row).group(1)  # type: ignore[union-attr]
        for entry, row in rows.items()
        if entry.startswith("checkpoints/")
    }
    assert statuses == {
        "checkpoints/step_0": "kept (marked keep)",
        "checkpoints/step_1": "kept",
        "checkpoints/step_2": "deleted",
        "checkpoints/step_3": "kept",
        "checkpoints/step_4": "deleted",
        "checkpoints/step_5": "kept",
    }
    # A deleted entry still shows what it was: step, score and size (read from the emulator's record).
    for step in (2, 4):
        cells = re.findall(r"<td class='num'>([^<]*)</td>", rows[f"checkpoints/step_{step}"])
        assert cells == [str(step), f"{SCORES['a'][step]:g}", str(len(checkpoint_payload("a", step)))]
        assert "download" not in rows[f"checkpoints/step_{step}"]
    # A kept one downloads the bytes that were uploaded.
    link = re.search(r"<a href='([^']+)'>download</a>", rows["checkpoints/step_3"])
    assert link is not None
    assert _get(neptune_emulator.url + unescape(link.group(1))) == checkpoint_payload("a", 3)
