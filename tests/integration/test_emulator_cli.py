"""The emulator as a program: --help, start-up lines, signals, persistence, and `neptune sync`."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import neptune
import pytest

from airflow_provider_neptune.emulator import NeptuneEmulator
from airflow_provider_neptune.emulator.__main__ import build_parser
from airflow_provider_neptune.emulator.auth import api_key_of
from airflow_provider_neptune.emulator.storage import SCHEMA_VERSION, Storage
from airflow_provider_neptune.hooks.neptune import RUN_DEFAULTS as QUIET

pytestmark = pytest.mark.integration

MODULE = "airflow_provider_neptune.emulator"


def test_help_documents_every_flag() -> None:
    result = subprocess.run(
        [sys.executable, "-m", MODULE, "--help"], capture_output=True, text=True, timeout=60, check=True
    )
    flags = [
        opt for action in build_parser()._actions for opt in action.option_strings if opt.startswith("--")
    ]
    expected = {"--host", "--port", "--data-dir", "--project", "--rate-limit", "--fault-rate", "--seed"}
    assert expected <= set(flags)
    for flag in flags:
        assert flag in result.stdout
    for action in build_parser()._actions:
        assert action.help, f"{action.option_strings} has no help text"


def _start(*args: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", MODULE, "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    lines: dict[str, str] = {}
    deadline = time.monotonic() + 30
    while len(lines) < 3 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        key, _, value = line.strip().partition("=")
        lines[key] = value
    return proc, lines


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_prints_its_lines_serves_and_exits_zero_on_signal(sig: signal.Signals, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    proc, lines = _start(
        "--project",
        "team/alpha",
        "--project",
        "team/beta",
        "--api-key",
        "k3y",
        "--token-file",
        str(token_file),
    )
    try:
        assert token_file.read_text().strip() == lines["NEPTUNE_API_TOKEN"]
        assert api_key_of(lines["NEPTUNE_API_TOKEN"]) == "k3y"
        assert set(lines) == {"NEPTUNE_API_TOKEN", "NEPTUNE_PROJECT", "NEPTUNE_EMULATOR_URL"}
        assert lines["NEPTUNE_PROJECT"] == "team/alpha"
        url = lines["NEPTUNE_EMULATOR_URL"]
        assert url.startswith("http://127.0.0.1:")
        token = json.loads(base64.b64decode(lines["NEPTUNE_API_TOKEN"]))
        assert token["api_address"] == url
        assert _control_status(f"{url}/_emulator/projects", {}) == 401, "control needs the token"
        for headers in (
            {"X-Neptune-Api-Token": lines["NEPTUNE_API_TOKEN"]},
            {"Authorization": f"Bearer {lines['NEPTUNE_API_TOKEN']}"},
        ):
            request = urllib.request.Request(f"{url}/_emulator/projects", headers=headers)
            with urllib.request.urlopen(request, timeout=10) as response:
                assert json.loads(response.read()) == ["team/alpha", "team/beta"]
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _control_status(url: str, headers: dict[str, str]) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_open_flag_serves_control_endpoints_without_token_and_pages_stay_read_only() -> None:
    proc, lines = _start("--open")
    try:
        url = lines["NEPTUNE_EMULATOR_URL"]
        assert _control_status(f"{url}/_emulator/stats", {}) == 200
        assert _control_status(f"{url}/", {}) == 200
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(f"{url}/", method="POST", data=b""), timeout=10)
        assert refused.value.code == 405, "pages are read-only"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_refuses_bad_arguments_and_busy_ports() -> None:
    bad_project = subprocess.run(
        [sys.executable, "-m", MODULE, "--project", "no-slash"], capture_output=True, text=True, timeout=60
    )
    assert bad_project.returncode == 2
    assert "workspace/name" in bad_project.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = subprocess.run(
            [sys.executable, "-m", MODULE, "--port", str(port)], capture_output=True, text=True, timeout=60
        )
    assert taken.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in taken.stderr


def test_refuses_a_data_directory_written_by_a_newer_emulator(tmp_path: Path) -> None:
    store = Storage(tmp_path)
    store.meta_set("schema_version", str(SCHEMA_VERSION + 1))
    store.close()
    refused = subprocess.run(
        [sys.executable, "-m", MODULE, "--port", "0", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1
    assert f"--data-dir: data directory {tmp_path} was written by a newer emulator" in refused.stderr
    assert f"schema version {SCHEMA_VERSION + 1}" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_env_fixture_points_client_and_airflow_at_the_emulator(
    neptune_emulator_env: NeptuneEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    assert os.environ["NEPTUNE_API_TOKEN"] == neptune_emulator_env.api_token
    assert os.environ["NEPTUNE_PROJECT"] == neptune_emulator_env.project
    conn = json.loads(os.environ["AIRFLOW_CONN_NEPTUNE_DEFAULT"])
    assert conn["password"] == neptune_emulator_env.api_token
    with neptune.init_run(mode="sync", **QUIET) as run:
        run["x"] = 1
        assert run.get_url().startswith(neptune_emulator_env.url)


def test_data_and_token_survive_a_restart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = tmp_path / "data"
    monkeypatch.chdir(tmp_path)
    with NeptuneEmulator(data_dir=data_dir) as first:
        for key, value in first.env().items():
            monkeypatch.setenv(key, value)
        with neptune.init_run(mode="sync", custom_run_id="persist-me", **QUIET) as run:
            run["value"] = 42
            run["series"].extend([1.0, 2.0])
            (tmp_path / "f.bin").write_bytes(b"\x00\x01payload")
            run["file"].upload(str(tmp_path / "f.bin"), wait=True)
            sys_id = run["sys/id"].fetch()
        first_key = api_key_of(first.api_token)
    assert first.running is False
    with NeptuneEmulator(data_dir=data_dir) as second:
        assert api_key_of(second.api_token) == first_key
        for key, value in second.env().items():
            monkeypatch.setenv(key, value)
        with neptune.init_run(mode="sync", custom_run_id="persist-me", **QUIET) as run:
            assert run["sys/id"].fetch() == sys_id
            assert run["value"].fetch() == 42
            assert run["series"].fetch_values()["value"].tolist() == [1.0, 2.0]
            run["file"].download(str(tmp_path / "back.bin"))
        assert (tmp_path / "back.bin").read_bytes() == b"\x00\x01payload"


def test_neptune_sync_uploads_offline_runs(
    neptune_emulator: NeptuneEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for key, value in neptune_emulator.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    project = neptune_emulator.add_project("tests/offline-sync")
    (tmp_path / "note.txt").write_text("written offline")
    tag = f"offline-{os.getpid()}"
    with neptune.init_run(project=project, mode="offline", tags=[tag], **QUIET) as run:
        run["param"] = 3
        run["loss"].extend([0.5, 0.25, 0.125])
        run["note"].upload(str(tmp_path / "note.txt"))
    cli = Path(sys.executable).with_name("neptune")
    result = subprocess.run(
        [str(cli), "sync", "--project", project], capture_output=True, text=True, timeout=120, env=os.environ
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "completed" in result.stdout
    with neptune.init_project(project=project, mode="read-only") as proj:
        rows = proj.fetch_runs_table(tag=tag).to_rows()
        assert len(rows) == 1
        sys_id = rows[0]["sys/id"].get()
        assert rows[0]["param"].get() == 3
    with neptune.init_run(project=project, with_id=sys_id, mode="read-only") as synced:
        assert synced["loss"].fetch_values()["value"].tolist() == [0.5, 0.25, 0.125]
        synced["note"].download(str(tmp_path / "note.back"))
    assert (tmp_path / "note.back").read_text() == "written offline"


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_https_with_a_self_signed_certificate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = _self_signed(tmp_path)
    monkeypatch.chdir(tmp_path)
    with NeptuneEmulator(ssl_certfile=cert, ssl_keyfile=key) as emulator:
        assert emulator.url.startswith("https://127.0.0.1:")
        env = emulator.env()
        assert env["NEPTUNE_ALLOW_SELF_SIGNED_CERTIFICATE"] == "1"
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("OAUTHLIB_INSECURE_TRANSPORT")
        with neptune.init_run(mode="sync", **QUIET) as run:
            run["secure"].extend([1.0, 2.0])
            assert run["secure"].fetch_values()["value"].tolist() == [1.0, 2.0]
        assert emulator.stats()["points_total"] == 2
