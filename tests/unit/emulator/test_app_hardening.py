"""The emulator as a hardened server: unsafe values, wrong types, bad tokens, big bodies, control auth.

Every request goes through the ASGI app over HTTP (Starlette's TestClient); nothing is mocked.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from airflow_provider_neptune.emulator.app import EmulatorApp, EmulatorConfig
from airflow_provider_neptune.emulator.auth import make_api_token

LB = "/api/leaderboard/v1"
BASE = "http://127.0.0.1:5050"
OPS = f"{LB}/attributes/operations"
TABLE = f"{LB}/leaderboard/entries/search?projectIdentifier=ws/proj"
MAX = 1.7976931348623157e308


def _app(tmp_path: Path, **config: Any) -> EmulatorApp:
    return EmulatorApp(EmulatorConfig(data_dir=tmp_path, projects=["ws/proj"], **config))


@pytest.fixture
def app(tmp_path: Path) -> Iterator[EmulatorApp]:
    emulator = _app(tmp_path)
    yield emulator
    emulator.storage.close()


@pytest.fixture
def client(app: EmulatorApp) -> Iterator[TestClient]:
    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as test_client:
        yield test_client


def _bearer(app: EmulatorApp, client: TestClient) -> dict[str, str]:
    token = app.api_token(BASE)
    response = client.get("/api/backend/v1/authorization/oauth-token", headers={"X-Neptune-Api-Token": token})
    assert response.status_code == 200
    return {"Authorization": f"Bearer {response.json()['accessToken']}"}


def _new_run(client: TestClient, headers: dict[str, str]) -> str:
    created = client.post(f"{LB}/experiments", json={"projectIdentifier": "ws/proj"}, headers=headers)
    assert created.status_code == 200
    return str(created.json()["id"])


def _assert_neptune_error(response: Any, status: int, *fragments: str) -> None:
    """A Neptune-shaped JSON error with this status whose message names what was wrong."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == status
    assert body["title"] == body["message"]
    for fragment in fragments:
        assert fragment in body["message"], body["message"]


def _assert_readable(client: TestClient, headers: dict[str, str], run_id: str) -> dict[str, Any]:
    """The run's fields, the project's runs table and every series of the run answer 200."""
    attributes = client.get(f"{LB}/attributes?experimentId={run_id}", headers=headers)
    assert attributes.status_code == 200, attributes.text
    table = client.post(TABLE, json={}, headers=headers)
    assert table.status_code == 200, table.text
    fields = {a["name"]: a for a in attributes.json()["attributes"]}
    for name, field in fields.items():
        if field["type"] == "floatSeries":
            values = client.get(
                f"{LB}/attributes/series/float?experimentId={run_id}&attribute={name}", headers=headers
            )
            assert values.status_code == 200, values.text
    return fields


# Finite values a client can send that overflow what the emulator stores or renders.
UNSAFE_OPERATIONS = {
    "sum of two 1.7e308 points": (
        [
            {
                "path": "m",
                "logFloats": {"entries": [{"value": 1.7e308, "step": 1}, {"value": 1.7e308, "step": 2}]},
            }
        ],
        "m: the sum of the series' values would overflow a double",
    ),
    "sum of -max and -max": (
        [{"path": "m", "logFloats": {"entries": [{"value": -MAX, "step": 1}, {"value": -MAX, "step": 2}]}}],
        "would overflow a double",
    ),
    "timestamp 1e20 ms": (
        [{"path": "m", "logFloats": {"entries": [{"value": 1.0, "step": 1, "timestampMilliseconds": 1e20}]}}],
        "m: timestampMilliseconds 1e+20 is out of range",
    ),
    "datetime field 1e20 ms": (
        [{"path": "d", "assignDatetime": {"valueMilliseconds": 1e20}}],
        "d: valueMilliseconds 1e+20 is out of range",
    ),
    "int field beyond 64 bits": (
        [{"path": "i", "assignInt": {"value": 2**70}}],
        "does not fit a 64-bit integer",
    ),
}


@pytest.mark.parametrize("case", sorted(UNSAFE_OPERATIONS))
def test_unsafe_values_are_refused_per_operation_and_the_run_stays_readable(
    app: EmulatorApp, client: TestClient, case: str
) -> None:
    headers = _bearer(app, client)
    run_id = _new_run(client, headers)
    operations, reason = UNSAFE_OPERATIONS[case]
    # A valid operation after the refused one is still applied (per-operation errors, like the
    # server's "steps must be strictly increasing"), so the client logs the error and goes on.
    good = {"path": "ok", "assignFloat": {"value": 1.0}}
    answer = client.post(f"{OPS}?experimentId={run_id}", json=[*operations, good], headers=headers)
    assert answer.status_code == 200, answer.text
    errors = [e["errorDescription"] for e in answer.json()]
    assert len(errors) == 1
    assert reason in errors[0]
    fields = _assert_readable(client, headers, run_id)
    assert fields["ok"]["floatProperties"]["value"] == 1.0
    refused_path = operations[0]["path"]
    assert refused_path not in fields, "nothing of a refused operation is stored"


def test_a_series_at_the_edge_of_the_double_range_keeps_finite_statistics(
    app: EmulatorApp, client: TestClient
) -> None:
    headers = _bearer(app, client)
    run_id = _new_run(client, headers)
    entries = [{"value": MAX, "step": 1e308}, {"value": -MAX, "step": MAX}]
    answer = client.post(
        f"{OPS}?experimentId={run_id}",
        json=[{"path": "edge", "logFloats": {"entries": entries}}],
        headers=headers,
    )
    assert answer.json() == []
    stats = _assert_readable(client, headers, run_id)["edge"]["floatSeriesProperties"]
    assert (stats["min"], stats["max"], stats["average"], stats["lastStep"]) == (-MAX, MAX, 0.0, MAX)
    # The next point without a step would be MAX + 1 == MAX: refused as not increasing, run still fine.
    follow = [{"path": "edge", "logFloats": {"entries": [{"value": 1.0}]}}]
    answer = client.post(f"{OPS}?experimentId={run_id}", json=follow, headers=headers)
    assert "strictly increasing" in answer.json()[0]["errorDescription"]
    _assert_readable(client, headers, run_id)


@pytest.mark.parametrize(
    "body",
    [
        b'[{"path": "m", "logFloats": {"entries": [{"value": 1.0, "step": 1e400}]}}]',
        b'[{"path": "m", "logFloats": {"entries": [{"value": NaN, "step": 1}]}}]',
        b'[{"path": "m", "assignFloat": {"value": -Infinity}}]',
        b'[{"path": "m", "assignString": {"value": "\\ud800"}}]',
        b'[{"path": "m", "logStrings": {"entries": [{"value": "\xed\xa0\x80", "step": 1}]}}]',
    ],
    ids=["step 1e400", "NaN literal", "-Infinity literal", "escaped lone surrogate", "raw lone surrogate"],
)
def test_non_finite_json_numbers_and_invalid_unicode_are_refused_as_a_whole(
    app: EmulatorApp, client: TestClient, body: bytes
) -> None:
    headers = _bearer(app, client)
    run_id = _new_run(client, headers)
    answer = client.post(f"{OPS}?experimentId={run_id}", content=body, headers=headers)
    _assert_neptune_error(answer, 400, "Malformed JSON body")
    assert "m" not in _assert_readable(client, headers, run_id)


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_wrong_types_answer_400_in_neptunes_error_shape(app: EmulatorApp, client: TestClient) -> None:
    headers = _bearer(app, client)
    run_id = _new_run(client, headers)
    step_abc = [{"path": "m", "logFloats": {"entries": [{"value": 1.0, "step": "abc"}]}}]
    _assert_neptune_error(
        client.post(f"{OPS}?experimentId={run_id}", json=step_abc, headers=headers),
        400,
        "operations[0] ('m').logFloats.entries[0].step must be a number, got 'abc'",
    )
    ts_bool = [{"path": "m", "logFloats": {"entries": [{"value": 1.0, "timestampMilliseconds": True}]}}]
    _assert_neptune_error(
        client.post(f"{OPS}?experimentId={run_id}", json=ts_bool, headers=headers),
        400,
        "timestampMilliseconds must be a number",
    )
    _assert_neptune_error(
        client.post(TABLE, json={"query": "sys/id = 'x'"}, headers=headers),
        400,
        "params.query must be an object",
    )
    _assert_neptune_error(
        client.post(TABLE, json={"query": {"query": 5}}, headers=headers),
        400,
        "params.query.query must be a string",
    )
    _assert_neptune_error(
        client.post(TABLE, json={"pagination": {"offset": "x"}}, headers=headers),
        400,
        "params.pagination.offset must be an integer, got 'x'",
    )
    _assert_neptune_error(
        client.post(TABLE, json={"pagination": {"limit": 2**64}}, headers=headers),
        400,
        "params.pagination.limit must be between 0",
    )
    _assert_neptune_error(
        client.post(TABLE, json={"sorting": {"sortBy": {"name": ["a"]}}}, headers=headers),
        400,
        "params.sorting.sortBy.name must be a string",
    )
    point = [{"path": "s", "logFloats": {"entries": [{"value": 1.0, "step": 0}]}}]
    assert client.post(f"{OPS}?experimentId={run_id}", json=point, headers=headers).json() == []
    series = f"{LB}/attributes/series/float?experimentId={run_id}&attribute=s"
    _assert_neptune_error(
        client.get(f"{series}&offset=x", headers=headers), 400, "'offset' must be an integer"
    )
    _assert_neptune_error(
        client.get(f"{series}&offset={2**70}", headers=headers), 400, "'offset' is out of range"
    )
    _assert_neptune_error(
        client.post(f"{LB}/experiments", json={"projectIdentifier": ["ws/proj"]}, headers=headers),
        400,
        "experimentCreationParams.projectIdentifier must be a string, got list",
    )
    _assert_neptune_error(
        client.post(f"{LB}/experiments", json={"projectIdentifier": "ws/proj", "key": 5}, headers=headers),
        400,
        "experimentCreationParams.key must be a string",
    )
    for url in (f"{OPS}?experimentId={run_id}", TABLE, f"{LB}/experiments"):
        _assert_neptune_error(
            client.post(url, content=_nested(100_000), headers=headers), 400, "nested too deeply"
        )
    control = {"X-Neptune-Api-Token": app.api_token(BASE)}
    _assert_neptune_error(
        client.post("/_emulator/faults", content=_nested(100_000), headers=control), 400, "nested too deeply"
    )
    _assert_neptune_error(
        client.post("/_emulator/faults", json={"latency_ms": "inf"}, headers=control),
        400,
        "latency_ms must be finite",
    )
    _assert_neptune_error(
        client.post("/_emulator/faults", json={"fail_next": {"status": 500}}, headers=control),
        400,
        "with a route",
    )
    _assert_readable(client, headers, run_id)


def test_bad_tokens_answer_401(app: EmulatorApp, client: TestClient) -> None:
    config = "/api/backend/v1/clients/config"
    foreign = make_api_token(BASE, "kéy-with-non-ascii-ß")
    assert client.get(config, headers={"X-Neptune-Api-Token": foreign}).status_code == 401
    assert client.get("/_emulator/stats", headers={"X-Neptune-Api-Token": foreign}).status_code == 401
    nested = base64.b64encode(_nested(50_000)).decode()
    assert client.get(config, headers={"X-Neptune-Api-Token": nested}).status_code == 401
    headers = _bearer(app, client)
    run_id = _new_run(client, headers)
    attributes = f"{LB}/attributes?experimentId={run_id}"
    assert client.get(attributes, headers=headers).status_code == 200
    now = int(time.time())
    expired = app.issuer._sign(
        {
            "iss": f"{BASE}/auth/realms/neptune",
            "sub": "emulator",
            "typ": "Bearer",
            "iat": now - 7200,
            "exp": now - 1,
        }
    )
    _assert_neptune_error(
        client.get(attributes, headers={"Authorization": f"Bearer {expired}"}), 401, "access token"
    )
    odd_expiry = app.issuer._sign({"typ": "Bearer", "exp": "never"})
    assert client.get(attributes, headers={"Authorization": f"Bearer {odd_expiry}"}).status_code == 401


def test_json_bodies_over_the_limit_answer_413_and_uploads_stream_past_it(tmp_path: Path) -> None:
    limit = 64 * 1024
    app = _app(tmp_path, max_body_bytes=limit)
    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as client:
        headers = _bearer(app, client)
        run_id = _new_run(client, headers)
        entries = [{"value": 0.5, "step": i} for i in range(3000)]
        big = json.dumps([{"path": "m", "logFloats": {"entries": entries}}]).encode()
        assert len(big) > limit
        _assert_neptune_error(
            client.post(f"{OPS}?experimentId={run_id}", content=big, headers=headers),
            413,
            f"limit of {limit} bytes (--max-body-bytes)",
        )

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while reading
            for start in range(0, len(big), 8192):
                yield big[start : start + 8192]

        _assert_neptune_error(
            client.post(f"{OPS}?experimentId={run_id}", content=chunks(), headers=headers),
            413,
            "--max-body-bytes",
        )
        control = {"X-Neptune-Api-Token": app.api_token(BASE)}
        _assert_neptune_error(
            client.post("/_emulator/faults", content=big, headers=control), 413, "--max-body-bytes"
        )
        assert "m" not in _assert_readable(client, headers, run_id)
        # A body just under the limit is served.
        small = json.dumps([{"path": "m", "logFloats": {"entries": entries[:100]}}]).encode()
        assert client.post(f"{OPS}?experimentId={run_id}", content=small, headers=headers).json() == []
        # Uploads are file content, streamed to disk: the JSON limit does not apply to them.
        content = bytes(range(256)) * 1024 * 2  # 512 KiB
        upload = f"{LB}/attributes/storage/file/upload?experimentIdentifier={run_id}&attribute=model&ext=bin"
        stored = client.post(upload, content=content, headers=headers)
        assert stored.json() == {"errors": []}
        download = client.get(
            f"{LB}/attributes/download?experimentId={run_id}&attribute=model", headers=headers
        )
        assert download.content == content
        assert not any(app.storage.incoming_dir.iterdir()), "no streamed body is left behind"
    app.storage.close()


def test_multipart_and_tar_uploads_are_joined_on_disk(app: EmulatorApp, client: TestClient) -> None:
    import io
    import tarfile

    headers = _bearer(app, client)
    run_id = _new_run(client, headers)
    content = b"0123456789" * 1000
    base = f"{LB}/attributes/storage/file/upload"
    query = f"experimentIdentifier={run_id}&attribute=ckpt&ext=pt"
    start = client.post(f"{base}/start?{query}&totalLength={len(content)}", headers=headers).json()
    upload_id = start["uploadId"]
    for first in range(0, len(content), 4000):
        part = content[first : first + 4000]
        rng = {"X-Range": f"bytes={first}-{first + len(part) - 1}/{len(content)}", **headers}
        assert client.post(f"{base}/part?{query}&uploadId={upload_id}", content=part, headers=rng).json() == {
            "errors": []
        }
    assert client.post(f"{base}/finish?{query}&uploadId={upload_id}", headers=headers).json() == {
        "errors": []
    }
    download = client.get(f"{LB}/attributes/download?experimentId={run_id}&attribute=ckpt", headers=headers)
    assert download.content == content
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in (("a.txt", b"alpha"), ("dir/b.txt", b"beta" * 5000)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    tar = client.post(
        f"{LB}/attributes/uploadFileSetTar?experimentId={run_id}&attribute=files&reset=true",
        content=buffer.getvalue(),
        headers=headers,
    )
    assert tar.json() == {"errors": []}
    listing = client.get(
        f"{LB}/attributes/storage/fileset/list?experimentId={run_id}&attribute=files", headers=headers
    ).json()
    assert {(e["name"], e["size"]) for e in listing} == {("a.txt", 5), ("dir", 20000)}
    broken = client.post(
        f"{LB}/attributes/uploadFileSetTar?experimentId={run_id}&attribute=files2",
        content=b"not a tar",
        headers=headers,
    )
    _assert_neptune_error(broken, 400, "Invalid tar.gz upload")
    assert not any(app.storage.incoming_dir.iterdir())


CONTROL = [
    ("GET", "/_emulator/stats"),
    ("GET", "/_emulator/health"),
    ("GET", "/_emulator/faults"),
    ("POST", "/_emulator/faults"),
    ("POST", "/_emulator/reset_stats"),
    ("GET", "/_emulator/projects"),
    ("POST", "/_emulator/projects"),
]


def test_control_endpoints_need_the_api_token_and_pages_stay_read_only(
    app: EmulatorApp, client: TestClient
) -> None:
    body = {"project": "ws/second", "fault_rate": 1.0}
    for method, path in CONTROL:
        for headers in (
            {},
            {"X-Neptune-Api-Token": make_api_token(BASE, "wrong")},
            {"Authorization": "Bearer x.y.z"},
        ):
            answer = client.request(method, path, json=body if method == "POST" else None, headers=headers)
            _assert_neptune_error(answer, 401, "--open", "X-Neptune-Api-Token")
    assert app.guard.fault_rate == 0.0, "a refused control request changes nothing"
    assert app.storage.find_project("ws/second") is None
    token = app.api_token(BASE)
    bearer = _bearer(app, client)
    for headers in ({"X-Neptune-Api-Token": token}, {"Authorization": f"Bearer {token}"}, bearer):
        assert client.get("/_emulator/stats", headers=headers).status_code == 200
    # Pages need no token but only answer GET/HEAD.
    assert client.get("/").status_code == 200
    assert client.head("/").status_code == 200
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        _assert_neptune_error(client.request(method, "/ws/proj"), 405, f"Method not allowed: {method}")


def test_open_flag_serves_control_endpoints_without_a_token(tmp_path: Path) -> None:
    app = _app(tmp_path, open_control=True)
    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as client:
        for method, path in CONTROL:
            body = {"project": "ws/second"} if method == "POST" else None
            assert client.request(method, path, json=body).status_code == 200, path
    app.storage.close()


def test_process_helper_passes_the_new_flags_and_sends_the_token() -> None:
    from airflow_provider_neptune.emulator import NeptuneEmulator

    emulator = NeptuneEmulator(max_body_bytes=2048, open_control=True)
    command = emulator.command()
    assert command[command.index("--max-body-bytes") + 1] == "2048"
    assert "--open" in command
    assert "--open" not in NeptuneEmulator().command()
    assert emulator.control_headers() == {}, "no token before the server printed one"
    emulator.api_token = "TOKEN"
    assert emulator.control_headers() == {"X-Neptune-Api-Token": "TOKEN"}
