"""The emulator's web view in a real headless Chromium, with data logged by the unmodified neptune client.

Each test asserts what a user sees: table rows and cells, chart captions, tick and axis labels, the
hover read-out, the compare legend, live updates. Screenshots stay under the pytest temporary folder.
"""

from __future__ import annotations

import json
import math
import re
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import neptune
import pytest
from PIL import Image

from airflow_provider_neptune.emulator import NeptuneEmulator
from airflow_provider_neptune.emulator.web.browser import Chromium
from airflow_provider_neptune.hooks.neptune import RUN_DEFAULTS as QUIET

pytestmark = pytest.mark.integration

EVIL_NAME = "<img src=x onerror=\"document.title='pwned'\">run & co"
EVIL_TAG = "<b>bold</b>"
EVIL_PATH = "notes/<i>x</i>"


def accuracy(run: int, step: int) -> float:
    """The val/accuracy a test run logs at a step (different per run, all positive)."""
    return round(0.2 + 0.07 * step * (run + 1) / 10, 6)


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    with Chromium(width=1300, height=1000) as chromium:
        yield chromium


@pytest.fixture
def project(neptune_emulator_env: NeptuneEmulator) -> str:
    return neptune_emulator_env.add_project(f"web/t{uuid.uuid4().hex[:10]}")


def _log_runs(project: str, mode: str, emulator: NeptuneEmulator) -> list[str]:
    """Three stopped runs with names, tags, Airflow fields and series (the server saw them close)."""
    ids = []
    for i in range(3):
        name = EVIL_NAME if i == 0 else f"lr-{i}"
        tags = [EVIL_TAG, "web"] if i == 0 else ["web", f"group{i % 2}"]
        with neptune.init_run(project=project, mode=mode, name=name, tags=tags, **QUIET) as run:
            run["airflow/dag_id"] = "train_dag"
            run["airflow/dag_run_id"] = f"manual__{i}"
            for step in range(1, 21):
                run["val/accuracy"].append(accuracy(i, step), step=step)
            run["train/loss"].extend([math.exp(-s / 5) for s in range(40)])
            run["log/messages"].extend(["<script>window.bad=1</script>", "done"])
            run[EVIL_PATH] = "<u>value</u>"
            ids.append(run["sys/id"].fetch())
    # stop() returns once the client closed its websocket; the server notices the close a moment later.
    emulator.wait_until(lambda stats: stats["websockets_open"] == 0)
    return ids


def _texts(browser: Chromium, selector: str) -> list[str]:
    found = f"[...document.querySelectorAll({json.dumps(selector)})]"
    return list(browser.eval(f"{found}.map(e => e.textContent)"))


def _hover_middle(browser: Chromium, selector: str, across: float = 0.5) -> str:
    """Move the mouse into the plot area of a chart's SVG (`across` its width); return the read-out."""
    svg = f"document.querySelector({json.dumps(selector)})"
    box = browser.eval(
        f"(() => {{ const svg = {svg}; svg.scrollIntoView();"
        "const r = svg.querySelector('rect.plot').getBoundingClientRect();"
        f"return {{x: r.left + r.width * {across}, y: r.top + r.height / 2}}; }})()"
    )
    browser.mouse_move(box["x"], box["y"])
    return str(browser.wait_for(f"{svg}.closest('figure.chart').querySelector('.readout').textContent"))


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_runs_table_filter_run_page_and_charts(
    browser: Chromium, neptune_emulator_env: NeptuneEmulator, project: str, mode: str, tmp_path: Path
) -> None:
    ids = _log_runs(project, mode, neptune_emulator_env)
    base = neptune_emulator_env.url
    browser.goto(f"{base}/{project}?cols=val/accuracy,train/loss")

    # The table: one row per run, user values shown as text (not markup), chosen columns present.
    assert sorted(_texts(browser, "tr.run td:nth-child(2)")) == sorted(ids)
    names = _texts(browser, "tr.run td[data-path='sys/name']")
    assert EVIL_NAME in names
    assert browser.eval("document.querySelector('tr.run img') === null && document.title !== 'pwned'")
    assert EVIL_TAG in _texts(browser, "tr.run td[data-path='sys/tags'] .tag")
    assert set(_texts(browser, "tr.run td[data-path='airflow/dag_id']")) == {"train_dag"}
    assert set(_texts(browser, "tr.run td[data-path='sys/state']")) == {"idle"}
    by_run = dict(
        zip(
            _texts(browser, "tr.run td:nth-child(2)"),
            _texts(browser, "tr.run td[data-path='val/accuracy']"),
            strict=True,
        )
    )
    assert {k: float(v) for k, v in by_run.items()} == {ids[i]: accuracy(i, 20) for i in range(3)}
    headers = _texts(browser, "table.runs th")
    assert [h.rstrip(" ▲▼") for h in headers[1:]] == [
        "id", "name", "tags", "state", "owner", "created", "DAG", "DAG run", "val/accuracy", "train/loss",
    ]  # fmt: skip

    # Sort by the chosen column: click its header (descending first, then ascending).
    browser.eval("document.querySelector(\"th[data-path='val/accuracy'] a\").click()")
    browser.wait_event("Page.loadEventFired")
    assert _texts(browser, "tr.run td:nth-child(2)") == [ids[2], ids[1], ids[0]]
    browser.eval("document.querySelector(\"th[data-path='val/accuracy'] a\").click()")
    browser.wait_event("Page.loadEventFired")
    assert _texts(browser, "tr.run td:nth-child(2)") == [ids[0], ids[1], ids[2]]

    # Filter with NQL typed into the filter box, then with the tag box.
    threshold = (accuracy(0, 20) + accuracy(1, 20)) / 2
    browser.eval(
        "document.querySelector('input[name=q]').value = "
        + json.dumps(f"(val/accuracy:floatSeries > {threshold})")
        + "; document.querySelector('form.filters').requestSubmit()"
    )
    browser.wait_event("Page.loadEventFired")
    assert sorted(_texts(browser, "tr.run td:nth-child(2)")) == sorted(ids[1:])
    assert "2 matching (3 in project)" in browser.eval("document.querySelector('.pager .count').textContent")
    browser.goto(f"{base}/{project}?tag={quote(EVIL_TAG)}")
    assert _texts(browser, "tr.run td:nth-child(2)") == [ids[0]]
    browser.screenshot(tmp_path / f"runs-table-{mode}.png")

    # Open the run from the table.
    links = "[...document.querySelectorAll('tr.run a')]"
    browser.eval(f"{links}.find(a => a.textContent === '{ids[0]}').click()")
    browser.wait_event("Page.loadEventFired")
    assert browser.eval("location.pathname") == f"/{project}/e/{ids[0]}"
    assert browser.eval("document.querySelector('h1 .run-name').textContent") == EVIL_NAME
    assert browser.eval("document.querySelector('h1 img') === null && window.bad === undefined")
    assert browser.eval("document.querySelector('.summary-DAG').textContent") == "train_dag"
    assert EVIL_PATH in _texts(browser, "table.fields code")
    assert "<u>value</u>" in _texts(browser, "table.fields td")

    # The val/accuracy chart: caption, axis labels, tick labels within the data's range, 20 points.
    chart = "div.series-chart[data-path='val/accuracy']"
    assert browser.eval(f'document.querySelector("{chart} .last").textContent') == f"{accuracy(0, 20):g}"
    assert browser.eval(f'document.querySelector("{chart} .last-step").textContent') == "20"
    assert browser.eval(f'document.querySelector("{chart} .points").textContent') == "20"
    assert _texts(browser, f"{chart} svg.lin text.xlabel") == ["step"]
    assert _texts(browser, f"{chart} svg.lin text.ylabel") == ["value"]
    x_ticks = [float(t) for t in _texts(browser, f"{chart} svg.lin text.xtick")]
    y_ticks = [float(t) for t in _texts(browser, f"{chart} svg.lin text.ytick")]
    assert len(x_ticks) >= 3
    assert x_ticks == sorted(x_ticks)
    assert x_ticks[0] >= 1
    assert x_ticks[-1] <= 20
    assert len(y_ticks) >= 3
    assert min(y_ticks) >= accuracy(0, 1) - 0.01
    assert max(y_ticks) <= accuracy(0, 20) + 0.01
    assert browser.eval(f'document.querySelectorAll("{chart} svg.lin polyline.series").length') == 1

    # Hover in the middle of the plot: the read-out names the step under the mouse and its value.
    text = _hover_middle(browser, f"{chart} svg.lin")
    step = int(text.split(":")[0].removeprefix("step "))
    assert 9 <= step <= 12
    assert float(text.split(":")[1]) == pytest.approx(accuracy(0, step), rel=1e-3)

    # Log scale: the toggle swaps the axis (labelled log, ticks positive), data is unchanged.
    browser.eval(f'document.querySelector("{chart} .log-toggle").click()')
    assert browser.eval(f'getComputedStyle(document.querySelector("{chart} svg.lin")).display') == "none"
    assert browser.eval(f'getComputedStyle(document.querySelector("{chart} svg.log")).display') != "none"
    assert _texts(browser, f"{chart} svg.log text.ylabel") == ["value (log)"]
    assert all(float(t) > 0 for t in _texts(browser, f"{chart} svg.log text.ytick"))
    # Everything the pages loaded came from the emulator itself.
    assert browser.requested
    assert [u for u in browser.requested if not u.startswith(f"{base}/")] == []
    assert f"{base}/_web/static/web.js" in browser.requested
    assert browser.errors == []  # no script error, nothing blocked by the pages' security policy
    shot = browser.screenshot(tmp_path / f"run-page-{mode}.png")
    with Image.open(shot) as image:
        assert image.width >= 1000
        assert image.height >= 600


def test_compare_two_runs_overlays_the_metric_with_a_legend(
    browser: Chromium, neptune_emulator_env: NeptuneEmulator, project: str, tmp_path: Path
) -> None:
    ids = _log_runs(project, "sync", neptune_emulator_env)
    browser.goto(f"{neptune_emulator_env.url}/{project}")
    for short_id in (ids[1], ids[2]):
        browser.eval(f"document.querySelector(\"input[name=run][value='{short_id}']\").click()")
    browser.eval("document.getElementById('compare-form').requestSubmit()")
    browser.wait_event("Page.loadEventFired")
    assert browser.eval("location.pathname") == f"/{project}/compare"
    # The first series both runs have is shown; pick val/accuracy from the metric list.
    browser.eval(
        "document.querySelector('select[name=metric]').value = 'val/accuracy';"
        "document.querySelector('form.filters').requestSubmit()"
    )
    browser.wait_event("Page.loadEventFired")
    assert browser.eval("document.querySelector('h1 .metric').textContent") == "val/accuracy"
    # Runs appear in the table's order (newest first), which is the order the form submits them in.
    assert _texts(browser, "ul.legend .legend-label") == [f"{ids[2]} lr-2", f"{ids[1]} lr-1"]
    assert browser.eval("document.querySelectorAll('figure.chart svg.lin polyline.series').length") == 2
    lines = "[...document.querySelectorAll('figure.chart svg.lin polyline.series')]"
    colors = browser.eval(f"{lines}.map(p => p.getAttribute('stroke'))")
    swatches = browser.eval(
        "[...document.querySelectorAll('ul.legend .swatch')].map(s => getComputedStyle(s).backgroundColor)"
    )
    assert len(set(colors)) == 2
    assert len(set(swatches)) == 2
    assert [float(v) for v in _texts(browser, "table.compared td.last")] == [accuracy(2, 20), accuracy(1, 20)]
    text = _hover_middle(browser, "figure.chart svg.lin")
    step = int(text.split(":")[0].removeprefix("step "))
    readings = text.split(":", 1)[1].split(",")
    assert [r.strip() for r in readings] == [
        f"{ids[2]} lr-2 {accuracy(2, step):g}",
        f"{ids[1]} lr-1 {accuracy(1, step):g}",
    ]
    shot = browser.screenshot(tmp_path / "compare.png")
    assert shot.stat().st_size > 5000


def test_run_page_refreshes_its_charts_while_the_run_logs(
    browser: Chromium, neptune_emulator_env: NeptuneEmulator, project: str
) -> None:
    run: Any = neptune.init_run(project=project, mode="sync", name="live", **QUIET)
    try:
        run["val/loss"].extend([1.0, 0.9, 0.8])
        short_id = run["sys/id"].fetch()
        browser.goto(f"{neptune_emulator_env.url}/{project}/e/{short_id}")
        assert browser.eval("document.getElementById('live').dataset.state") == "running"
        chart = "div.series-chart[data-path='val/loss']"
        assert browser.eval(f'document.querySelector("{chart} .points").textContent') == "3"
        browser.eval(f'document.querySelector("{chart} .log-toggle").click()')
        run["val/loss"].extend([0.5, 0.25])
        run.sync()
        # No reload: the page's own polling brings the new points in.
        browser.wait_for(f"document.querySelector(\"{chart} .points\")?.textContent === '5'", timeout=20)
        assert browser.eval(f'document.querySelector("{chart} .last").textContent') == "0.25"
        assert browser.eval("performance.getEntriesByType('navigation').length") == 1
        assert int(browser.eval("document.body.dataset.refreshes")) >= 1
        # The refreshed chart keeps the log scale chosen before, and its hover read-out works.
        assert browser.eval(f'document.querySelector("{chart} .log-toggle").checked') is True
        assert browser.eval(f'getComputedStyle(document.querySelector("{chart} svg.log")).display') != "none"
        assert _hover_middle(browser, f"{chart} svg.log", across=0.99) == "step 4: 0.25"
    finally:
        run.stop()


def test_demo_page_urls_open_the_pages_of_its_runs(
    neptune_emulator_env: NeptuneEmulator, project: str
) -> None:
    from tests.e2e.demo import page_urls
    from tests.e2e.scenario import RunSnapshot

    ids = _log_runs(project, "sync", neptune_emulator_env)
    snapshots = [RunSnapshot(sys_id=i, name=f"n{i}", fields={}, series={}, checkpoints={}) for i in ids]
    urls = page_urls(neptune_emulator_env.url, project, snapshots)
    assert len(urls) == len(ids) + 2
    for label, url in urls.items():
        with urllib.request.urlopen(url, timeout=30) as response:
            html = response.read().decode()
        assert response.status == 200, label
        if label.startswith("Run "):
            assert f"<span class='run-id'>{label.split()[1]}</span>" in html
        elif label == "Runs table":
            assert sorted(re.findall(r"<tr class='run' data-run='([^']+)'>", html)) == sorted(ids)
            assert "data-path='val/accuracy'" in html
        else:
            assert len(re.findall(r"class='legend-label'>", html)) == len(ids)
            assert "<code class='metric'>val/accuracy</code>" in html
