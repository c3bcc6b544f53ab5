"""Two real worker processes with different environments: each checks itself, the compare names both.

Worker ``gpu`` sees a fake ``neptune`` 1.13.0 distribution first on its PYTHONPATH (as a worker
image with another SDK would), worker ``default`` the real install. Both run the operator against
the emulator with the connection from ``AIRFLOW_CONN_NEPTUNE_DEFAULT`` (no NEPTUNE_API_TOKEN).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_neptune.core.environment_checks import installed_version
from airflow_provider_neptune.operators.environment import FINGERPRINT_XCOM_KEY
from airflow_provider_neptune.operators.fingerprints import NeptuneCompareEnvironmentsOperator

pytestmark = pytest.mark.integration

WORKER = """
import json, sys
from airflow_provider_neptune.operators.environment import NeptuneValidateEnvironmentOperator

class TaskInstance:
    hostname = None  # the operator falls back to this host's name
    pushed = {}
    def xcom_push(self, key, value):
        self.pushed[key] = value

queue, data_dir = sys.argv[1], sys.argv[2]
op = NeptuneValidateEnvironmentOperator(
    task_id="check_" + queue,
    queue=queue,
    requirements={"neptune": ">=1.14,<2"},
    required_env=["NEPTUNE_API_TOKEN", "NEPTUNE_PROJECT"],
    data_directory=data_dir,
    min_free_disk_mb=1,
)
ti = TaskInstance()
try:
    op.execute({"ti": ti})
    code = 0
except Exception as err:
    print(f"{type(err).__name__}: {err}", file=sys.stderr)
    code = 1
print("FINGERPRINT=" + json.dumps(ti.pushed["fingerprint"]))
sys.exit(code)
"""


def fake_neptune_shim(root: Path, version: str) -> Path:
    info = root / f"neptune-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: neptune\nVersion: {version}\n")
    return root


def start_worker(queue: str, env: dict[str, str], data_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, queue, str(data_dir)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish_worker(queue: str, proc: subprocess.Popen[str]) -> tuple[int, dict[str, Any], str]:
    try:
        stdout, stderr = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
    lines = [line for line in stdout.splitlines() if line.startswith("FINGERPRINT=")]
    assert lines, f"worker {queue} printed no fingerprint:\n{stdout}\n{stderr}"
    return proc.returncode, json.loads(lines[-1].removeprefix("FINGERPRINT=")), stdout + stderr


class XComOf:
    def __init__(self, pushed: dict[str, Any]) -> None:
        self.pushed = pushed

    def xcom_pull(self, task_ids: str, key: str) -> Any:
        assert key == FINGERPRINT_XCOM_KEY
        return self.pushed.get(task_ids)


def test_two_workers_with_different_neptune_versions(neptune_emulator: Any, tmp_path: Path) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("NEPTUNE_")}
    base.update(
        AIRFLOW_CONN_NEPTUNE_DEFAULT=neptune_emulator.airflow_conn_json(mode="sync"),
        OAUTHLIB_INSECURE_TRANSPORT="1",
    )
    good_env = dict(base, NEPTUNE_DATA_DIRECTORY=str(tmp_path / "good"))
    shim = fake_neptune_shim(tmp_path / "shim", "1.13.0")
    old_env = dict(base, PYTHONPATH=os.pathsep.join(filter(None, [str(shim), base.get("PYTHONPATH")])))

    # Both workers run at the same time, as two Celery workers would.
    workers = {"default": start_worker("default", good_env, tmp_path / "good")}
    workers["gpu"] = start_worker("gpu", old_env, tmp_path / "old")
    good_code, good, good_out = finish_worker("default", workers["default"])
    old_code, old, old_out = finish_worker("gpu", workers["gpu"])

    real = installed_version("neptune")
    assert good_code == 0, good_out
    assert good["versions"]["neptune"] == real
    assert good["failed"] == []
    assert good["env_from_connection"] == ["NEPTUNE_API_TOKEN", "NEPTUNE_PROJECT"]
    assert old_code == 1
    assert old["versions"]["neptune"] == "1.13.0"
    # The old worker fails its own check naming package, specifier and installed version.
    assert "package 'neptune': installed version 1.13.0 does not satisfy required '>=1.14,<2'" in old_out
    assert old["hostname"] == good["hostname"]  # same machine, told apart by queue

    compare = NeptuneCompareEnvironmentsOperator(
        task_id="compare", check_task_ids=["check_default", "check_gpu"]
    )
    with pytest.raises(AirflowFailException) as err:
        compare.execute({"ti": XComOf({"check_default": good, "check_gpu": old})})  # type: ignore[arg-type]
    host = good["hostname"]
    message = str(err.value)
    assert (
        f"package 'neptune' differs between workers: 1.13.0 on gpu ({host}); {real} on default ({host})"
        in message
    )
    assert f"gpu ({host}) failed its checks: package 'neptune': installed version 1.13.0" in message
    assert (
        f"environment variable NEPTUNE_DATA_DIRECTORY is set on default ({host}) but not on gpu ({host})"
        in message
    )

    token = neptune_emulator.api_token
    api_key = json.loads(base64.b64decode(token))["api_key"]
    for text in (good_out, old_out, json.dumps(good), json.dumps(old), message):
        assert token not in text
        assert api_key not in text
