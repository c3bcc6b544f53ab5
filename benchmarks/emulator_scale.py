"""Benchmark 9: the emulator's CPU per request as the data it stores grows.

For each scale (a nearly empty store, then 100, 1,000 and 10,000 seeded runs of 20 fields and 100
float-series points each, so 1,000,000 points at 10,000 runs) it seeds a fresh data directory
in-process through Storage's own methods (create_run, execute_operations: the emulator's write path
without HTTP, since 10,000 runs over HTTP take too long), starts the emulator subprocess on it and
sends each route the provider and the neptune client use, over one keep-alive HTTP connection with
the bodies the client sends. CPU per request is the growth of the emulator process's CPU time over N requests
of one route (`process_cpu_seconds` of /_emulator/stats: every thread, nanosecond resolution, unlike
the 10 ms ticks of /proc), divided by N (median of the repetitions).

Every scale also holds one "probe" run (same 20 fields and 100 points, its own tag) that the per-run
routes read and write, so each route answers the same thing at every scale; "empty" is the probe
alone. Target (issue 15): every route within 2x of the empty store's CPU per request at 10,000 runs.

    python -m benchmarks --only emulator_scale [--quick]
"""

from __future__ import annotations

import http.client
import json
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from benchmarks import harness

NAME = "emulator_scale"
PROJECT = "bench/scale"
FIELDS = 20  # sys/name, sys/tags, 17 params, train/loss
POINTS_PER_RUN = 100
PROBE_CUSTOM_ID = "probe-run"
PROBE_TAG = "probe"
TARGET_RATIO = 2.0
# Its answer holds up to 100 runs, so it is compared with the 100-run store, not the empty one.
PAGE_ROUTE = "fetch_runs_table page (newest 100 of every run)"
LB = "/api/leaderboard/v1"

Request = tuple[str, str, bytes | None, dict[str, str]]


def _ops(index: int, tag: str) -> list[dict[str, Any]]:
    """The 20 fields of a seeded run: name, one tag, 17 float params and a 100-point loss series."""
    entries = [
        {
            "value": 1.0 / (step + 1 + index % 7),
            "step": float(step),
            "timestampMilliseconds": 1_700_000_000_000 + step,
        }
        for step in range(POINTS_PER_RUN)
    ]
    return [
        {"path": "sys/name", "assignString": {"value": f"run {index}"}},
        {"path": "sys/tags", "insertStrings": {"values": [tag]}},
        *(
            {"path": f"params/p{k:02d}", "assignFloat": {"value": float(index * k)}}
            for k in range(FIELDS - 3)
        ),
        {"path": "train/loss", "logFloats": {"entries": entries}},
    ]


def seed(data_dir: Path, runs: int) -> float:
    """Write `runs` runs plus the probe run through Storage in-process; seconds taken."""
    from airflow_provider_neptune.emulator.storage import Storage

    started = time.perf_counter()
    storage = Storage(data_dir)
    project = storage.ensure_project(PROJECT)
    for index in range(runs):
        run, _ = storage.create_run(project, custom_id=f"seed-{index}")
        errors, _, _ = storage.execute_operations(run, _ops(index, f"group-{index % 10}"))
        if errors:
            raise RuntimeError(f"seeding run {index} failed: {errors}")
    probe, _ = storage.create_run(project, custom_id=PROBE_CUSTOM_ID)
    errors, _, _ = storage.execute_operations(probe, _ops(runs, PROBE_TAG))
    if errors:
        raise RuntimeError(f"seeding the probe run failed: {errors}")
    storage.close()
    return time.perf_counter() - started


def _search_body(query: str, sort_by: str, columns: list[str], limit: int = 100) -> bytes:
    """A searchLeaderboardEntries body as neptune 1.14's fetch_runs_table sends it."""
    return json.dumps(
        {
            "query": {"query": query},
            "sorting": {
                "dir": "descending",
                "sortBy": {"name": sort_by, "type": "string", "aggregationMode": "none"},
            },
            "pagination": {"limit": limit, "offset": 0},
            "attributeFilters": [{"path": c} for c in columns],
        }
    ).encode()


def routes(probe_id: str, runs: int) -> dict[str, Callable[[int], Request]]:
    """Each measured route: request i -> (method, path, body, headers)."""
    json_headers = {"Content-Type": "application/json"}
    search_path = f"{LB}/leaderboard/entries/search?" + urlencode(
        {"projectIdentifier": PROJECT, "type": "run"}
    )

    def custom_id_search(i: int) -> Request:
        # The hook's lookup before it opens a run by custom id (hooks/neptune.py _existing_run).
        wanted = f"seed-{(i * 7919) % runs}" if runs else PROBE_CUSTOM_ID
        query = f'((`sys/custom_run_id`:string = "{wanted}") AND (`sys/trashed`:bool = false))'
        body = _search_body(query, "sys/id", ["sys/id", "sys/custom_run_id", "sys/name"])
        return "POST", search_path, body, json_headers

    def create(i: int) -> Request:
        body = {
            "projectIdentifier": PROJECT,
            "type": "run",
            "customId": f"new-{uuid.uuid4().hex}",
            "cliVersion": "1.14.0",
        }
        return "POST", f"{LB}/experiments", json.dumps(body).encode(), json_headers

    def columns(i: int) -> Request:
        # fetch_runs_table asks for the sort column's type first (sort by sys/creation_time).
        query = urlencode({"projectIdentifier": PROJECT, "type": "run", "search": "sys/creation_time"})
        return "POST", f"{LB}/leaderboard/attributes/search?{query}", b"{}", json_headers

    def tag_search(i: int) -> Request:
        query = f'((`sys/tags`:stringSet CONTAINS "{PROBE_TAG}") AND (`sys/trashed`:bool = false))'
        return (
            "POST",
            search_path,
            _search_body(query, "sys/creation_time", ["sys/id", "params/p01"]),
            json_headers,
        )

    def table_page(i: int) -> Request:
        # fetch_runs_table() of the whole project: the newest 100 runs that are not trashed.
        query = "(`sys/trashed`:bool = false)"
        return (
            "POST",
            search_path,
            _search_body(query, "sys/creation_time", ["sys/id", "params/p01"]),
            json_headers,
        )

    def attributes(i: int) -> Request:
        return "GET", f"{LB}/attributes?" + urlencode({"experimentId": probe_id}), None, {}

    def operations(i: int) -> Request:
        entries = [
            {"value": float(k), "step": float(i * 10 + k), "timestampMilliseconds": 1_700_000_000_000 + i}
            for k in range(10)
        ]
        ops = [
            {"path": "live/last", "assignFloat": {"value": float(i)}},
            {"path": "live/loss", "logFloats": {"entries": entries}},
        ]
        path = f"{LB}/attributes/operations?" + urlencode({"experimentId": probe_id})
        return "POST", path, json.dumps(ops).encode(), json_headers

    def series(i: int) -> Request:
        query = urlencode({"experimentId": probe_id, "attribute": "train/loss", "limit": 100, "offset": 0})
        return "GET", f"{LB}/attributes/series/float?{query}", None, {}

    def upload(i: int) -> Request:
        query = urlencode({"experimentIdentifier": probe_id, "attribute": f"files/f{i % 5}", "ext": "bin"})
        return (
            "POST",
            f"{LB}/attributes/storage/file/upload?{query}",
            bytes(1024),
            {"Content-Type": "application/octet-stream"},
        )

    return {
        "search by custom id (the hook's, before createExperiment)": custom_id_search,
        "createExperiment with a new custom id": create,
        "searchLeaderboardAttributes (sort column type)": columns,
        "search by tag (1 match, page of 100)": tag_search,
        PAGE_ROUTE: table_page,
        "getExperimentAttributes (20 fields)": attributes,
        "executeOperations (1 field + 10 points)": operations,
        "getFloatSeriesValues (100 points)": series,
        "fileAtomUpload (1 KiB)": upload,
    }


class Client:
    """One keep-alive HTTP connection to the emulator with the client's bearer token."""

    def __init__(self, url: str, api_token: str) -> None:
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=120)
        answer = self.call(
            "GET", "/api/backend/v1/authorization/oauth-token", None, {"X-Neptune-Api-Token": api_token}
        )
        self.auth = {"Authorization": f"Bearer {answer['accessToken']}"}
        self.control = {"X-Neptune-Api-Token": api_token}

    def cpu_seconds(self) -> float:
        """The emulator process's CPU time so far (/_emulator/stats, nanosecond resolution)."""
        stats = self.call("GET", "/_emulator/stats", None, self.control)
        return float(stats["process_cpu_seconds"])

    def call(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> Any:
        """Send one request; the decoded JSON answer, or an error naming the route and status."""
        self.conn.request(method, path, body=body, headers={**getattr(self, "auth", {}), **headers})
        response = self.conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{method} {path.split('?')[0]} answered {response.status}: {data[:300]!r}")
        return json.loads(data) if data else None


def measure(url: str, api_token: str, runs: int, n: int, reps: int) -> dict[str, float]:
    """Median CPU ms per request of each route against the running emulator."""
    client = Client(url, api_token)
    found = client.call(
        "POST",
        f"{LB}/leaderboard/entries/search?" + urlencode({"projectIdentifier": PROJECT, "type": "run"}),
        _search_body(f'(`sys/custom_run_id`:string = "{PROBE_CUSTOM_ID}")', "sys/id", ["sys/id"]),
        {"Content-Type": "application/json"},
    )
    if found["matchingItemCount"] != 1:
        raise RuntimeError(f"expected the probe run once, found {found['matchingItemCount']}")
    probe_id = found["entries"][0]["experimentId"]
    out: dict[str, float] = {}
    counter = 0
    for label, make in routes(probe_id, runs).items():
        samples = []
        for _ in range(reps):
            for _ in range(5):  # warm up: SQLite page cache, first-use imports
                client.call(*make(counter))
                counter += 1
            before = client.cpu_seconds()
            for _ in range(n):
                client.call(*make(counter))
                counter += 1
            # The second stats request's own cost is in the figure: a few microseconds per request.
            used = client.cpu_seconds() - before
            samples.append(used / n * 1000)
        out[label] = harness.median(samples)
    client.conn.close()
    return out


def run(opts: harness.Options) -> harness.Section:
    """Seed each scale, start the emulator on it, measure every route; compare with the empty store."""
    scales = opts.pick([0, 100, 300], [0, 100, 1_000, 10_000])
    n = opts.pick(50, 300)
    reps = opts.reps(2, 3)
    section = harness.Section(
        NAME,
        harness.TITLES[NAME],
        opts,
        scale=f"runs x {FIELDS} fields + {POINTS_PER_RUN} points each at "
        + ", ".join(f"{s:,}" for s in scales)
        + f" runs; {n} requests per route x {reps} repetitions; base: the empty store (the 100-run"
        " store for the page of every run)",
    )
    figures: dict[int, dict[str, float]] = {}
    seeding: list[str] = []
    for runs in scales:
        with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
            data_dir = Path(tmp) / "emulator"
            took = seed(data_dir, runs)
            seeding.append(f"{runs:,} runs: {took:.1f} s")
            print(f"   seeded {runs:,} runs in {took:.1f} s", flush=True)
            with harness.emulator(data_dir=data_dir, projects=[PROJECT]) as emu:
                figures[runs] = measure(emu.url, emu.api_token or "", runs, n, reps)
    largest = scales[-1]
    headers = [
        "Route",
        *(f"{s:,} runs" if s else "empty (probe only)" for s in scales),
        f"{largest:,} / base",
    ]
    rows = []
    for label in figures[0]:
        # A page of every run answers up to 100 runs: its base is the smallest store holding 100.
        base = next(s for s in scales if s >= 100) if label == PAGE_ROUTE else 0
        base_name = f"the {base:,}-run store" if base else "the empty store"
        ratio = harness.ratio(figures[largest][label], figures[base][label])
        rows.append([label, *(f"{figures[s][label]:.2f} ms" for s in scales), f"{ratio:.2f}x"])
        section.verdict(
            f"{label}: CPU per request at {largest:,} runs within {TARGET_RATIO:.0f}x of {base_name}",
            f"{figures[largest][label]:.2f} ms vs {figures[base][label]:.2f} ms ({ratio:.2f}x)",
            ratio <= TARGET_RATIO,
            "" if ratio <= TARGET_RATIO else "counting the matching runs (SQLite, one index entry per run)",
        )
    section.table(headers, rows, caption="Emulator CPU per request (median of the repetitions)")
    section.note(
        f"Points stored: {POINTS_PER_RUN} per run ({largest * POINTS_PER_RUN:,} at {largest:,} runs). "
        "Seeded in-process through Storage (" + "; ".join(seeding) + "). Searches run in SQLite "
        "(emulator/search.py compiles NQL to SQL over indexed columns, the string-set member table and the "
        "column catalog); only the fields a search returns are read."
    )
    return section


if __name__ == "__main__":
    harness.standalone(NAME, __doc__ or NAME, run)
