"""A data directory written by the emulator before schema versions (commit 48b3bd0) opens and reads back.

tests/fixtures/emulator_v1 was written by that commit's Storage (tests/helpers/emulator_v1_data.py).
The emulator migrates it on open; the unmodified neptune client then finds its runs by custom id and by
tag (searches that now read the migrated indexes), and reads fields, series, files and file sets.
"""

from __future__ import annotations

import shutil
import sqlite3
import zipfile
from collections.abc import Callable
from pathlib import Path

import neptune
import pytest

from airflow_provider_neptune.emulator import NeptuneEmulator
from airflow_provider_neptune.emulator.storage import SCHEMA_VERSION
from airflow_provider_neptune.hooks.neptune import RUN_DEFAULTS as QUIET
from tests.helpers.emulator_v1_data import PROJECT, V1_CONTENT

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "emulator_v1"


def _version(data_dir: Path) -> str | None:
    with sqlite3.connect(data_dir / "emulator.sqlite3") as db:
        row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    return row[0] if row else None


def test_v1_data_directory_opens_and_reads_back_through_the_client(
    neptune_emulator_factory: Callable[..., NeptuneEmulator], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(FIXTURE, data_dir)
    assert _version(data_dir) is None  # the fixture really is the unversioned layout
    emulator = neptune_emulator_factory(data_dir=data_dir, projects=[PROJECT])
    for key, value in emulator.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    assert _version(data_dir) == str(SCHEMA_VERSION)

    with neptune.init_project(project=PROJECT, mode="read-only") as project:
        tagged = project.fetch_runs_table(
            tag=["old"], columns=["sys/custom_run_id", "sys/name"], progress_bar=False
        ).to_pandas()
        kept = project.fetch_runs_table(
            tag=["kept"], columns=["sys/custom_run_id"], progress_bar=False
        ).to_pandas()
        by_custom = {
            custom_id: project.fetch_runs_table(
                query=f'(`sys/custom_run_id`:string = "{custom_id}")', columns=["sys/id"], progress_bar=False
            ).to_pandas()
            for custom_id in V1_CONTENT
        }
    assert sorted(tagged["sys/custom_run_id"]) == sorted(V1_CONTENT)
    assert dict(zip(tagged["sys/custom_run_id"], tagged["sys/name"], strict=True)) == {
        custom_id: content["name"] for custom_id, content in V1_CONTENT.items()
    }
    assert kept["sys/custom_run_id"].tolist() == ["legacy-1"]

    for custom_id, content in V1_CONTENT.items():
        assert len(by_custom[custom_id]) == 1
        run_id = str(by_custom[custom_id]["sys/id"].iloc[0])
        with neptune.init_run(project=PROJECT, with_id=run_id, mode="read-only", **QUIET) as run:
            assert run["sys/custom_run_id"].fetch() == custom_id
            assert run["sys/tags"].fetch() == set(content["tags"])
            assert run["note"].fetch() == content["note"]
            values = run["train/loss"].fetch_values(include_timestamp=False)
            assert values["value"].tolist() == content["loss"]
            assert values["step"].tolist() == [float(i) for i in range(len(content["loss"]))]
            target = tmp_path / f"{custom_id}.bin"
            run["model/weights"].download(str(target))
            assert target.read_bytes() == content["file"]
            run["data/files"].download(str(tmp_path / f"{custom_id}-files.zip"))
        with zipfile.ZipFile(tmp_path / f"{custom_id}-files.zip") as archive:
            found = {n: archive.read(n) for n in archive.namelist() if not n.endswith("/")}
        assert found == content["files"]
