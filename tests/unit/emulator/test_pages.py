"""The emulator's web pages in-process: escaping, table sorting/filtering/paging, downsampling,
checkpoints (kept and deleted by retention), downloads, bad parameters and read-only routes."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from airflow_provider_neptune.emulator.app import EmulatorApp, EmulatorConfig
from airflow_provider_neptune.emulator.storage import RunRow
from airflow_provider_neptune.emulator.web import charts, queries

MARKUP_NAME = "<script>alert('name')</script>"
MARKUP_TAG = "<img src=x onerror=alert(1)>"
MARKUP_PATH = "metrics/<b>acc</b>"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[EmulatorApp]:
    # state_timeout 0: a run reads as running only while a client holds its websocket.
    emulator = EmulatorApp(EmulatorConfig(data_dir=tmp_path, projects=["ws/proj"], state_timeout=0.0))
    yield emulator
    emulator.storage.close()


@pytest.fixture
def client(app: EmulatorApp) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://127.0.0.1:5050", raise_server_exceptions=True) as test_client:
        yield test_client


def make_run(
    app: EmulatorApp, name: str, tags: Sequence[str] = (), ops: Sequence[dict[str, Any]] = ()
) -> RunRow:
    """A run of ws/proj with a name, tags and the given operations applied."""
    project = app.storage.find_project("ws/proj")
    assert project is not None
    run, _ = app.storage.create_run(project)
    all_ops = [
        {"path": "sys/name", "assignString": {"value": name}},
        {"path": "sys/tags", "insertStrings": {"values": list(tags)}},
        *ops,
    ]
    errors, _, _ = app.storage.execute_operations(run, all_ops)
    assert errors == []
    return run


def floats(path: str, values: list[float], first_step: int = 0) -> dict[str, Any]:
    entries = [{"value": v, "step": first_step + i, "timestampMilliseconds": 1} for i, v in enumerate(values)]
    return {"path": path, "logFloats": {"entries": entries}}


def row_ids(html: str) -> list[str]:
    return re.findall(r"<tr class='run' data-run='([^']+)'>", html)


def test_user_markup_is_shown_as_text_on_every_page(app: EmulatorApp, client: TestClient) -> None:
    run = make_run(
        app,
        MARKUP_NAME,
        [MARKUP_TAG],
        [floats(MARKUP_PATH, [0.1, 0.2]), {"path": "notes/x", "assignString": {"value": "<i>note</i>"}}],
    )
    pages = [
        client.get("/ws/proj", params={"cols": MARKUP_PATH}).text,
        client.get(f"/ws/proj/e/{run.short_id}").text,
        client.get("/ws/proj/compare", params={"run": run.short_id}).text,
    ]
    for html in pages:
        for raw in (MARKUP_NAME, MARKUP_TAG, MARKUP_PATH, "<i>note</i>"):
            assert raw not in html
    table, run_page, compare = pages
    assert "&lt;script&gt;alert(&#x27;name&#x27;)&lt;/script&gt;" in table
    assert "&lt;img src=x onerror=alert(1)&gt;" in table
    assert "metrics/&lt;b&gt;acc&lt;/b&gt;" in run_page
    assert "&lt;i&gt;note&lt;/i&gt;" in run_page
    assert "metrics/&lt;b&gt;acc&lt;/b&gt;" in compare
    # The only scripts are the emulator's own file, served by itself.
    for html in pages:
        assert re.findall(r"<script[^>]*>", html) == ["<script src='/_web/static/web.js' defer>"]
        assert "http://" not in html.replace("http://127.0.0.1:5050", "")
        assert "https://" not in html


def test_runs_table_columns_sorting_and_filters(app: EmulatorApp, client: TestClient) -> None:
    accuracies = [0.5, 0.9, 0.7, 0.6]
    runs = []
    for i, acc in enumerate(accuracies):
        ops = [
            floats("val/accuracy", [acc / 2, acc]),
            {"path": "airflow/dag_id", "assignString": {"value": "train"}},
            {"path": "airflow/dag_run_id", "assignString": {"value": f"manual__{i}"}},
        ]
        runs.append(make_run(app, f"run{i}", ["even" if i % 2 == 0 else "odd"], ops))
    ids = [r.short_id for r in runs]

    page = client.get("/ws/proj", params={"cols": "val/accuracy", "sort": "val/accuracy", "dir": "desc"})
    assert page.status_code == 200
    assert row_ids(page.text) == [ids[1], ids[2], ids[3], ids[0]]
    cells = re.findall(r"<td class='num' data-path='val/accuracy'>([^<]*)</td>", page.text)
    assert cells == ["0.9", "0.7", "0.6", "0.5"]
    assert re.findall(r"<td data-path='airflow/dag_run_id'>([^<]*)<", page.text) == [
        "manual__1", "manual__2", "manual__3", "manual__0",
    ]  # fmt: skip
    ascending = client.get("/ws/proj", params={"sort": "sys/name", "dir": "asc"})
    assert row_ids(ascending.text) == ids
    newest_first = client.get("/ws/proj")
    assert row_ids(newest_first.text) == ids[::-1]

    nql = client.get("/ws/proj", params={"q": "(val/accuracy:floatSeries >= 0.65)", "sort": "sys/name"})
    assert sorted(row_ids(nql.text)) == sorted([ids[1], ids[2]])
    assert client.get("/ws/proj", params={"tag": "odd"}).text.count("<tr class='run'") == 2
    both = client.get("/ws/proj", params={"tag": "even", "q": 'sys/name:string = "run2"'})
    assert row_ids(both.text) == [ids[2]]
    assert row_ids(client.get("/ws/proj", params={"state": "running"}).text) == []
    assert len(row_ids(client.get("/ws/proj", params={"state": "idle"}).text)) == 4


def test_paging_through_ten_thousand_runs(app: EmulatorApp, client: TestClient) -> None:
    project = app.storage.find_project("ws/proj")
    assert project is not None
    total = 10_000
    for _ in range(total):
        app.storage.create_run(project)
    size = 500
    pages = total // size
    for number in (1, 11, pages):
        page = client.get("/ws/proj", params={"size": str(size), "page": str(number), "dir": "asc"})
        assert page.status_code == 200
        first = (number - 1) * size + 1
        assert row_ids(page.text) == [f"{project.key}-{n}" for n in range(first, first + size)]
        assert f"page {number} of {pages}" in page.text
    last = client.get("/ws/proj", params={"size": str(size), "page": str(pages)}).text
    assert "rel='next'" not in last
    assert f"of {total} matching ({total} in project)" in unescape(last)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"page": "two"}, "page must be a whole number, got 'two'"),
        ({"size": "100000"}, "size must be between 1 and 500, got 100000"),
        ({"dir": "up"}, "dir must be 'asc' or 'desc', got 'up'"),
        ({"state": "done"}, "state must be 'running' or 'idle', got 'done'"),
    ],
)
def test_bad_table_parameters_are_named(client: TestClient, params: dict[str, str], message: str) -> None:
    response = client.get("/ws/proj", params=params)
    assert response.status_code == 400
    assert message in unescape(response.text)


def test_invalid_nql_is_reported_not_crashed(app: EmulatorApp, client: TestClient) -> None:
    make_run(app, "a")
    response = client.get("/ws/proj", params={"q": "(sys/name:string = "})
    assert response.status_code == 400
    assert "The filter is not valid NQL" in response.text
    assert row_ids(response.text) == []
    assert "value='(sys/name:string ='" in response.text  # the box keeps what was typed


def test_compare_parameters(app: EmulatorApp, client: TestClient) -> None:
    run = make_run(app, "a", ops=[floats("loss", [1.0, 0.5])])
    assert "select at least one run" in client.get("/ws/proj/compare").text
    missing = client.get("/ws/proj/compare", params={"run": "NOPE-1"})
    assert missing.status_code == 400
    assert "run 'NOPE-1' is not in project ws/proj" in unescape(missing.text)
    bad_metric = client.get("/ws/proj/compare", params={"run": run.short_id, "metric": "acc"})
    assert "metric 'acc' is not a float series of the selected runs" in unescape(bad_metric.text)


def test_long_series_are_downsampled_keeping_extremes(app: EmulatorApp, client: TestClient) -> None:
    total = 100_000
    values = [((i * 7919) % 1000) / 1000 for i in range(total)]
    values[54_321] = 25.0  # a single spike must survive downsampling
    values[77_777] = -3.0
    run = make_run(app, "long", ops=[floats("loss", values)])
    series = queries.float_series(app.storage, run.id, "loss", buckets=600)
    assert series.total == total
    assert series.downsampled
    assert len(series.steps) <= 2 * 600 + 2
    assert max(series.values) == 25.0
    assert min(series.values) == -3.0
    assert series.steps[0] == 0
    assert series.steps[-1] == total - 1
    assert series.values[-1] == values[-1]
    assert series.steps == sorted(series.steps)
    assert dict(zip(series.steps, series.values, strict=True))[54_321] == 25.0
    html = client.get(f"/ws/proj/e/{run.short_id}").text
    assert f"<span class='points'>{total}</span> points" in html
    assert f"{len(series.steps)} drawn: min and max of each of {total} points&#x27; buckets" in html
    polyline = re.search(r"<svg class='lin'.*?<polyline class='series'[^>]* points='([^']*)'", html)
    assert polyline is not None
    assert len(polyline.group(1).split()) == len(series.steps)


def test_short_series_are_drawn_whole() -> None:
    steps = [0.0, 1.0, 2.0]
    html = charts.chart([charts.Line("a", steps, [3.0, 1.0, 2.0])], key="a", y_label="loss")
    assert re.findall(r"class='xlabel'[^>]*>([^<]*)<", html) == ["step", "step"]
    assert re.findall(r"class='ylabel'[^>]*>([^<]*)<", html) == ["loss", "loss (log)"]
    only_negative = charts.chart([charts.Line("a", steps, [-1.0, 0.0, 1.0])], key="a")
    assert "class='log'" not in only_negative.replace("class='log off'", "")
    assert "log scale n/a" in only_negative


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (0.0, 1.0, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]),
        (0.2003, 0.3467, [0.225, 0.25, 0.275, 0.3, 0.325]),
        (1.0, 20.0, [5.0, 10.0, 15.0, 20.0]),
        (-7.0, 7.0, [-5.0, -2.5, 0.0, 2.5, 5.0]),
        (3.0, 3.0, [3.0]),
    ],
)
def test_nice_ticks(low: float, high: float, expected: list[float]) -> None:
    assert charts.nice_ticks(low, high) == pytest.approx(expected)


def checkpoint_ops(key: str, step: float, score: float, sha: str) -> list[dict[str, Any]]:
    base = f"checkpoints/{key}"
    return [
        {"path": f"{base}/step", "assignFloat": {"value": step}},
        {"path": f"{base}/score", "assignFloat": {"value": score}},
        {"path": f"{base}/size", "assignFloat": {"value": 3.0}},
        {"path": f"{base}/uploaded_at", "assignDatetime": {"valueMilliseconds": 1_700_000_000_000}},
        {"path": f"{base}/sha256", "assignString": {"value": sha}},
    ]


def checkpoint_rows(html: str) -> dict[str, str]:
    rows = re.findall(r"<tr data-entry='([^']+)'>.*?<td class='status[^']*'>([^<]*)</td>", html)
    return dict(rows)


def test_checkpoints_kept_and_deleted_by_retention(app: EmulatorApp, client: TestClient) -> None:
    run = make_run(
        app,
        "ckpt",
        ops=[
            *checkpoint_ops("step_1", 1, 0.5, "a" * 64),
            *checkpoint_ops("step_2", 2, 0.9, "b" * 64),
            {"path": "checkpoints/step_2/keep", "assignBool": {"value": True}},
            *checkpoint_ops("step_3", 3, 0.7, "c" * 64),
        ],
    )
    app.storage.set_file(run, "checkpoints/step_1/file", "pt", b"one")
    app.storage.set_file(run, "checkpoints/step_2/file", "pt", b"two")
    app.storage.set_file(run, "checkpoints/step_3/file", "pt", b"three")
    # Retention deletes step_1 the way the operator does: the file first, sha256 last.
    fields = ("file", "score", "step", "size", "uploaded_at", "sha256")
    errors, _, _ = app.storage.execute_operations(
        run, [{"path": f"checkpoints/step_1/{name}", "deleteAttribute": {}} for name in fields]
    )
    assert errors == []
    # An interrupted deletion of step_3: its file is gone, its sha256 still there.
    app.storage.execute_operations(run, [{"path": "checkpoints/step_3/file", "deleteAttribute": {}}])
    html = client.get(f"/ws/proj/e/{run.short_id}").text
    assert checkpoint_rows(html) == {
        "checkpoints/step_1": "deleted",
        "checkpoints/step_2": "kept (marked keep)",
        "checkpoints/step_3": "file missing",
    }
    deleted_row = re.search(r"<tr data-entry='checkpoints/step_1'>(.*?)</tr>", html)
    assert deleted_row is not None
    assert re.findall(r"<td class='num'>([^<]*)</td>", deleted_row.group(1)) == ["1", "0.5", "3"]
    assert "2023-11-14T22:13:20.000Z" in deleted_row.group(1)
    assert "download" not in deleted_row.group(1)
    # Uploaded again at the same key: kept again, the tombstone no longer shows.
    app.storage.execute_operations(run, checkpoint_ops("step_1", 1, 0.6, "d" * 64))
    app.storage.set_file(run, "checkpoints/step_1/file", "pt", b"again")
    assert checkpoint_rows(client.get(f"/ws/proj/e/{run.short_id}").text)["checkpoints/step_1"] == "kept"


def test_files_are_downloadable(app: EmulatorApp, client: TestClient) -> None:
    run = make_run(app, "files")
    app.storage.set_file(run, "model/weights", "bin", b"\x00\x01weights")
    app.storage.add_fileset_files(run, "data/set", {"a/b.txt": b"bee", "c.csv": b"1,2"}, reset=False)
    html = client.get(f"/ws/proj/e/{run.short_id}").text
    links = [unescape(h) for h in re.findall(r"<a href='(/_web/download/[^']+)'>download</a>", html)]
    assert len(links) == 3
    contents = {}
    for link in links:
        response = client.get(link)
        assert response.status_code == 200
        assert response.headers["content-disposition"].startswith("attachment; filename*=UTF-8''")
        contents[response.headers["content-disposition"].rsplit("''", 1)[1]] = response.content
    assert contents == {"weights.bin": b"\x00\x01weights", "b.txt": b"bee", "c.csv": b"1,2"}
    assert client.get(f"/_web/download/{run.id}", params={"field": "model/nothing"}).status_code == 404
    wrong = client.get(f"/_web/download/{run.id}", params={"field": "sys/name"})
    assert wrong.status_code == 400
    assert "field 'sys/name' is a string, not a file: nothing to download" in unescape(wrong.text)


def test_pages_are_read_only_and_static_files_are_served(app: EmulatorApp, client: TestClient) -> None:
    run = make_run(app, "r")
    for path in ("/", "/ws/proj", f"/ws/proj/e/{run.short_id}", "/ws/proj/compare"):
        assert client.post(path).status_code == 405
    script = client.get("/_web/static/web.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert "innerHTML" not in script.text  # user values reach the page only through textContent
    assert client.get("/_web/static/web.css").headers["content-type"].startswith("text/css")
    assert client.get("/_web/static/../app.py").status_code == 404
    assert client.get("/_web/static/nothing.js").status_code == 404
    index = client.get("/")
    assert "<a href='/ws/proj'>ws/proj</a>" in index.text
    policy = index.headers["content-security-policy"]
    assert "script-src 'self';" in policy
    assert "connect-src 'self';" in policy


def test_live_fragment_reports_state_and_new_points(app: EmulatorApp, client: TestClient) -> None:
    run = make_run(app, "live", ops=[floats("loss", [3.0, 2.0])])
    app.storage.socket_opened(run.id)  # a client holds the run open
    fragment = client.get(f"/ws/proj/e/{run.short_id}", params={"fragment": "charts"}).text
    assert fragment.startswith("<section id='live' data-state='running'")
    assert "<span class='points'>2</span>" in fragment
    app.storage.execute_operations(run, [floats("loss", [1.0], first_step=2)])
    app.storage.socket_closed(run.id)
    fragment = client.get(f"/ws/proj/e/{run.short_id}", params={"fragment": "charts"}).text
    assert fragment.startswith("<section id='live' data-state='idle'")
    assert "<span class='points'>3</span>" in fragment
    assert "last <b class='last'>1</b> at step <span class='last-step'>2</span>" in fragment
