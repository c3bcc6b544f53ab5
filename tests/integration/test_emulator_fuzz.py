"""Seeded fuzzing of the emulator over HTTP: random and malformed input on every route of its table.

A dedicated emulator gets a fixed, reproducible sequence (random.Random(SEED)) of requests on every
route in swagger.ROUTES plus the control endpoints, pages and unknown paths: random JSON of every
type, valid operations carrying extreme values, malformed and non-finite JSON, deep nesting, random
query values and headers. No answer may be a 5xx except a fault the test injected itself; afterwards
every run must stay readable through the API and through the real neptune client.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import neptune
import pytest
import requests

from airflow_provider_neptune.emulator import NeptuneEmulator
from airflow_provider_neptune.emulator.swagger import ROUTES, RouteSpec
from airflow_provider_neptune.hooks.neptune import RUN_DEFAULTS as QUIET

pytestmark = pytest.mark.integration

SEED = 20261201
REQUESTS_PER_ROUTE = 8
FAULT_PHASE_REQUESTS = 60
LB = "/api/leaderboard/v1"
MAX = 1.7976931348623157e308
EXTREME_NUMBERS: list[Any] = [
    0,
    -1,
    1.5,
    MAX,
    -MAX,
    1.7e308,
    1e308,
    5e-324,
    2**63,
    2**63 - 1,
    -(2**63),
    2**80,
    1e20,
    -1e20,
    253402300800000,
    True,
    None,
]
OPERATION_NAMES = [
    "assignFloat",
    "assignInt",
    "assignBool",
    "assignString",
    "assignDatetime",
    "logFloats",
    "logStrings",
    "logImages",
    "clearFloatSeries",
    "configFloatSeries",
    "addStrings",
    "removeStrings",
    "deleteAttribute",
    "deleteFiles",
    "assignArtifact",
    "nonsense",
]
# deleteProject would empty the project whose runs the test reads back afterwards.
FUZZED_ROUTES = [r for r in ROUTES if r.operation_id != "deleteProject"]
CONTROL_ROUTES = [
    ("GET", "/_emulator/stats"),
    ("GET", "/_emulator/faults"),
    ("POST", "/_emulator/faults"),
    ("POST", "/_emulator/projects"),
    ("GET", "/_emulator/projects"),
    ("POST", "/_emulator/reset_stats"),
]


class Fuzzer:
    """Builds random requests from one seeded generator and sends them to one emulator."""

    def __init__(self, emulator: NeptuneEmulator, seed: int) -> None:
        self.emu = emulator
        self.rng = random.Random(seed)
        self.session = requests.Session()
        exchange = self.session.get(
            f"{emulator.url}/api/backend/v1/authorization/oauth-token",
            headers={"X-Neptune-Api-Token": emulator.api_token},
            timeout=10,
        )
        exchange.raise_for_status()
        self.auth = {"Authorization": f"Bearer {exchange.json()['accessToken']}"}
        busy = ("executeOperations", "searchLeaderboardEntries", "createExperiment")
        self.busy_routes = [r for r in ROUTES if r.operation_id in busy] * 8
        self.run_ids: list[str] = []
        self.short_ids: list[str] = []

    # ----- random values ------------------------------------------------------------------------
    def scalar(self) -> Any:
        choice = self.rng.random()
        if choice < 0.4:
            return self.rng.choice(EXTREME_NUMBERS)
        if choice < 0.7:
            return self.rng.choice(
                ["", "abc", "x" * 300, "ünï¢ødé", "a/b/c", "../..", "sys/id", "SAN-1", "\ud800", "😀"]
            )
        return self.rng.uniform(-1e6, 1e6)

    def json_value(self, depth: int = 0) -> Any:
        kind = self.rng.random()
        if depth > 3 or kind < 0.5:
            return self.scalar()
        if kind < 0.75:
            return [self.json_value(depth + 1) for _ in range(self.rng.randint(0, 4))]
        keys = ["path", "value", "step", "query", "entries", "pagination", "offset", "limit", "sorting", "x"]
        return {self.rng.choice(keys): self.json_value(depth + 1) for _ in range(self.rng.randint(0, 4))}

    def identifier(self, name: str = "experimentId") -> str:
        """Mostly a real run (or project) so requests get past the lookups; sometimes junk."""
        if self.rng.random() < 0.8:
            if name == "projectIdentifier":
                return self.emu.project
            return str(self.rng.choice([*self.run_ids, *self.short_ids]))
        return str(self.rng.choice(["airflow/missing", "x", "", "ws/p/SAN-999", "ünï/ß", "a" * 500]))

    def entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"value": self.rng.choice([*EXTREME_NUMBERS, "s", {"data": "aGk="}])}
        if self.rng.random() < 0.8:
            entry["step"] = self.rng.choice([*EXTREME_NUMBERS, self.rng.uniform(0, 100)])
        if self.rng.random() < 0.5:
            entry["timestampMilliseconds"] = self.rng.choice(EXTREME_NUMBERS)
        return entry

    def operation(self) -> Any:
        if self.rng.random() < 0.1:
            return self.json_value()
        name = self.rng.choice(OPERATION_NAMES)
        paths = ["m", "m", "m/x", "s", "f", "d", "i", "sys/name", "sys/state", "", "a//b", "tags"]
        path = self.rng.choice(paths)
        body: Any
        if name.startswith("log"):
            body = {"entries": [self.entry() for _ in range(self.rng.randint(0, 5))]}
        elif name == "assignDatetime":
            body = {"valueMilliseconds": self.scalar()}
        elif name in ("addStrings", "removeStrings"):
            body = {"values": self.rng.choice([["a", "b"], "abc", [1], None])}
        else:
            body = {"value": self.scalar()} if self.rng.random() < 0.8 else self.json_value()
        return {"path": path, name: body}

    def malformed(self) -> bytes:
        return self.rng.choice(
            [
                b"",
                b"{",
                b'{"a": ',
                b"[1, 2,",
                b"NaN",
                b'[{"path": "m", "assignFloat": {"value": Infinity}}]',
                b'[{"path": "m", "logFloats": {"entries": [{"value": 1, "step": 1e999}]}}]',
                b"\xff\xfe\x00garbage",
                b"[" * 20000 + b"]" * 20000,
                b'{"query": ' * 5000 + b"1" + b"}" * 5000,
                json.dumps({"query": {"query": "(" * 3000 + "sys/id = 'x'" + ")" * 3000}}).encode(),
                json.dumps({"query": {"query": "sys/id = = ''"}}).encode(),
            ]
        )

    def body(self, route: RouteSpec) -> bytes:
        roll = self.rng.random()
        if roll < 0.2:
            return self.malformed()
        if route.operation_id == "executeOperations" and roll < 0.85:
            return json.dumps([self.operation() for _ in range(self.rng.randint(1, 6))]).encode()
        if route.operation_id == "createExperiment" and roll < 0.7:
            params = {"projectIdentifier": self.rng.choice([self.emu.project, ["x"], 5, None]), "type": "run"}
            params.update({self.rng.choice(["customId", "key", "parentId", "type"]): self.scalar()})
            return json.dumps(params).encode()
        if route.operation_id == "searchLeaderboardEntries" and roll < 0.7:
            params = {
                "query": self.rng.choice(
                    [{"query": self.scalar()}, "sys/id = 'x'", None, {"query": "m > 0"}]
                ),
                "sorting": {
                    "sortBy": {"name": self.rng.choice(["m", "sys/id", 5, None])},
                    "dir": self.scalar(),
                },
                "pagination": {"offset": self.scalar(), "limit": self.scalar()},
                "attributeFilters": self.rng.choice([[{"path": "m"}], "m", None, [5]]),
            }
            return json.dumps(params).encode()
        if route.operation_id.endswith(("Upload", "UploadPart", "AttributeTar")):
            return self.rng.randbytes(self.rng.randint(0, 3000))
        return json.dumps(self.json_value()).encode()

    def query(self, route: RouteSpec) -> str:
        parts: list[str] = []
        for param in route.params:
            if param.get("in") != "query" or self.rng.random() < 0.05:
                continue
            name = param["name"]
            if name in ("experimentId", "experimentIdentifier", "projectIdentifier", "id"):
                value = self.identifier(name)
            elif name == "attribute":
                value = self.rng.choice(["m", "m", "s", "s", "sys/id", "sys/state", "tags", "f", "nope", ""])
            else:
                value = str(self.scalar())
            parts.append(f"{quote(name)}={quote(value, errors='surrogatepass')}")
        return "&".join(parts)

    def headers(self) -> dict[str, str]:
        roll = self.rng.random()
        headers: dict[str, str] = {"Content-Type": "application/json"}
        if self.rng.random() < 0.5:
            headers["X-Neptune-Api-Token"] = self.emu.api_token  # what getClientConfig and the exchange need
        if roll < 0.93:
            headers.update(self.auth)
        elif roll < 0.97:
            headers["Authorization"] = self.rng.choice(["Bearer x.y.z", "Bearer ", "Basic abc", "Bearer ü"])
        if self.rng.random() < 0.3:
            start = self.rng.randint(0, 5000)
            headers["X-Range"] = self.rng.choice([f"bytes={start}-{start + 10}/99", "bytes=0-0/1", "junk"])
        return headers

    # ----- sending ------------------------------------------------------------------------------
    def send(
        self, method: str, path: str, *, body: bytes | None, headers: dict[str, str]
    ) -> requests.Response:
        safe = {k: v.encode("utf-8").decode("latin-1") for k, v in headers.items()}
        return self.session.request(method, f"{self.emu.url}{path}", data=body, headers=safe, timeout=30)

    def one_request(self) -> tuple[str, requests.Response]:
        """One random request on a random route (API route table, control, pages or unknown)."""
        roll = self.rng.random()
        if roll < 0.85:
            # Every route, with the ones that store or query data drawn more often.
            route = self.rng.choice([*FUZZED_ROUTES, *self.busy_routes])
            query = self.query(route)
            body = self.body(route) if route.method == "POST" else None
            label = f"{route.method} {route.path} ({route.operation_id})"
            return label, self.send(route.method, f"{route.path}?{query}", body=body, headers=self.headers())
        if roll < 0.93:
            method, path = self.rng.choice(CONTROL_ROUTES)
            body = json.dumps(self.json_value()).encode() if method == "POST" else None
            if method == "POST" and path.endswith("faults"):
                # Never let the fuzzer itself inject faults: the assertions below rely on there being none.
                body = json.dumps({"rate_limit": self.scalar(), "latency_ms": -1}).encode()
            headers = {"X-Neptune-Api-Token": self.emu.api_token} if self.rng.random() < 0.7 else {}
            return f"{method} {path}", self.send(method, path, body=body, headers=headers)
        method = self.rng.choice(["GET", "POST", "PUT", "DELETE"])
        path = self.rng.choice(
            ["/", f"/{self.emu.project}", f"/{self.emu.project}/e/{self.identifier()}", "/zz/%ff"]
        )
        return f"{method} {path} (page)", self.send(method, path, body=self.malformed(), headers={})


def _seed_runs(fuzzer: Fuzzer, count: int) -> None:
    for i in range(count):
        created = fuzzer.send(
            "POST",
            f"{LB}/experiments",
            body=json.dumps({"projectIdentifier": fuzzer.emu.project, "type": "run"}).encode(),
            headers={"Content-Type": "application/json", **fuzzer.auth},
        )
        created.raise_for_status()
        run = created.json()
        fuzzer.run_ids.append(run["id"])
        fuzzer.short_ids.append(f"{fuzzer.emu.project}/{run['shortId']}")
        ops = [
            {"path": "m", "logFloats": {"entries": [{"value": float(i), "step": 0}]}},
            {"path": "s", "logStrings": {"entries": [{"value": "hi", "step": 0}]}},
            {"path": "sys/tags", "addStrings": {"values": ["t"]}},
        ]
        answer = fuzzer.send(
            "POST",
            f"{LB}/attributes/operations?experimentId={run['id']}",
            body=json.dumps(ops).encode(),
            headers={"Content-Type": "application/json", **fuzzer.auth},
        )
        assert answer.json() == []


SERIES_ROUTES = {"floatSeries": "float", "stringSeries": "string", "imageSeries": "image"}
ATOM_ROUTES = {
    "float",
    "int",
    "bool",
    "string",
    "datetime",
    "file",
    "stringSet",
    "floatSeries",
    "stringSeries",
}


def _assert_everything_readable(fuzzer: Fuzzer) -> int:
    """Read the runs table, every run's fields, every field's value and every series; return run count."""

    def get(path: str) -> requests.Response:
        answer = fuzzer.send("GET", path, body=None, headers=fuzzer.auth)
        assert answer.status_code == 200, f"GET {path} -> {answer.status_code}: {answer.text[:300]}"
        return answer

    projects = fuzzer.send(
        "GET", "/_emulator/projects", body=None, headers={"X-Neptune-Api-Token": fuzzer.emu.api_token}
    )
    runs = 0
    for project in projects.json():
        table = fuzzer.send(
            "POST",
            f"{LB}/leaderboard/entries/search?projectIdentifier={quote(project)}",
            body=b"{}",
            headers={"Content-Type": "application/json", **fuzzer.auth},
        )
        assert table.status_code == 200, table.text[:300]
        for entry in table.json()["entries"]:
            runs += 1
            run_id = entry["experimentId"]
            fields = get(f"{LB}/attributes?experimentId={run_id}").json()["attributes"]
            for field in fields:
                kind, name = field["type"], quote(field["name"])
                if kind in ATOM_ROUTES:
                    get(f"{LB}/attributes/{kind}?experimentId={run_id}&attribute={name}")
                if kind in SERIES_ROUTES:
                    get(
                        f"{LB}/attributes/series/{SERIES_ROUTES[kind]}?experimentId={run_id}&attribute={name}"
                    )
            sys_id = next(
                a["stringProperties"]["value"] for a in entry["attributes"] if a["name"] == "sys/id"
            )
            page = fuzzer.send("GET", f"/{project}/e/{sys_id}", body=None, headers={})
            assert page.status_code == 200, f"page of {sys_id}: {page.status_code}"
    return runs


def _fuzz(
    fuzzer: Fuzzer, count: int, allowed_5xx: Callable[[requests.Response | None], bool]
) -> tuple[list[str], int]:
    """Send `count` random requests: (every 5xx or dropped connection not allowed, allowed ones seen)."""
    problems: list[str] = []
    allowed = 0
    for _ in range(count):
        try:
            label, answer = fuzzer.one_request()
        except requests.ConnectionError as exc:
            if allowed_5xx(None):
                allowed += 1
            else:
                problems.append(f"connection error: {exc}")
            continue
        if answer.status_code >= 500:
            if allowed_5xx(answer):
                allowed += 1
            else:
                problems.append(f"{label} -> {answer.status_code}: {answer.text[:200]}")
    return problems, allowed


def _injected(answer: requests.Response | None) -> bool:
    """A dropped connection, or a 5xx whose body says the test injected it."""
    if answer is None:
        return True
    try:
        return str(answer.json().get("title", "")).startswith("Injected fault")
    except ValueError:
        return False


def test_random_and_malformed_requests_never_break_the_emulator(
    neptune_emulator_factory: Callable[..., NeptuneEmulator],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
) -> None:
    emulator = neptune_emulator_factory(projects=["fuzz/alpha"])
    for key, value in emulator.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    fuzzer = Fuzzer(emulator, SEED)
    _seed_runs(fuzzer, 4)
    problems, _ = _fuzz(fuzzer, REQUESTS_PER_ROUTE * len(ROUTES), lambda answer: False)
    assert problems == [], "\n".join(problems)
    assert emulator.stats()["fault_rate"] == 0.0, "the fuzzer never turns faults on itself"

    # Injected faults are the only 5xx allowed: their bodies say so (a dropped connection has none).
    emulator.set_faults(fault_rate=0.2, seed=SEED)
    problems, injected = _fuzz(fuzzer, FAULT_PHASE_REQUESTS, _injected)
    emulator.clear_faults()
    assert problems == [], "\n".join(problems)
    assert injected > 0, "the fault phase saw no injected fault"

    assert _assert_everything_readable(fuzzer) >= 4
    # The real client reads the runs table and every run's fields and series.
    with neptune.init_project(
        project=emulator.project, api_token=emulator.api_token, mode="read-only"
    ) as project:
        table = project.fetch_runs_table().to_pandas()
    assert len(table) >= 1
    for short_id in table["sys/id"]:
        with neptune.init_run(
            with_id=short_id,
            project=emulator.project,
            api_token=emulator.api_token,
            mode="read-only",
            **QUIET,
        ) as run:
            structure = run.get_structure()
            assert "sys" in structure
            for name, field in structure.items():
                if name != "sys" and hasattr(field, "fetch_values"):
                    field.fetch_values()
