"""Every metrics input form reaches the emulator intact; every bad input is rejected before sending."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_neptune.operators import NeptuneCreateRunOperator, NeptuneLogMetricsOperator
from tests.helpers.run_metrics_support import context, read_only_run, series_points, use_emulator

pytestmark = pytest.mark.integration

LOSS = [0.9, 0.7, 0.55, 0.5]
ACC = [0.2, 0.6]


def _new_run() -> str:
    return NeptuneCreateRunOperator(task_id="create_run").execute(context())


def _log(run_id: str, **kwargs: Any) -> dict[str, Any]:
    return NeptuneLogMetricsOperator(task_id="log", run_id=run_id, **kwargs).execute(context())


def _write_inputs(tmp_path: Path) -> dict[str, Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = {"json": tmp_path / "m.json", "csv": tmp_path / "m.csv", "parquet": tmp_path / "m.parquet"}
    files["json"].write_text(
        json.dumps(
            {
                "train/loss": {"values": LOSS, "steps": [0, 1, 2, 3]},
                "val/acc": {"values": ACC, "steps": [1, 3]},
            }
        )
    )
    rows = ["step,train/loss,val/acc", "0,0.9,", "1,0.7,0.2", "2,0.55,", "3,0.5,0.6"]
    files["csv"].write_text("\n".join(rows) + "\n")
    pq.write_table(
        pa.table(
            {
                "path": ["train/loss"] * 4 + ["val/acc"] * 2,
                "step": [0, 1, 2, 3, 1, 3],
                "value": [*LOSS, *ACC],
            }
        ),
        files["parquet"],
    )
    return files


EXPECTED = {
    "train/loss": [(0.0, 0.9), (1.0, 0.7), (2.0, 0.55), (3.0, 0.5)],
    "val/acc": [(1.0, 0.2), (3.0, 0.6)],
}


# Parsing does not depend on the client mode: every form in sync, and one in async as well.
@pytest.mark.parametrize(
    ("form", "mode"),
    [
        ("mapping", "sync"),
        ("xcom_text", "sync"),
        ("json", "sync"),
        ("csv", "sync"),
        ("parquet", "sync"),
        ("mapping", "async"),
    ],
)
def test_each_input_form_arrives(
    neptune_emulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, form: str, mode: str
) -> None:
    use_emulator(monkeypatch, neptune_emulator, mode)
    run_id = _new_run()
    mapping = {"train/loss": LOSS, "val/acc": {"values": ACC, "steps": [1, 3]}}
    if form == "mapping":
        summary = _log(run_id, metrics=mapping)
    elif form == "xcom_text":
        # What "{{ ti.xcom_pull('train') }}" renders to when render_template_as_native_obj is off.
        summary = _log(run_id, metrics=str(mapping))
    else:
        summary = _log(run_id, metrics_path=str(_write_inputs(tmp_path)[form]))
    assert summary["points_sent"] == 6
    assert summary["points_skipped"] == 0
    assert summary["last_steps"] == {"train/loss": 3.0, "val/acc": 3.0}
    for path, points in EXPECTED.items():
        assert series_points(neptune_emulator, run_id, path) == points


BAD_INPUTS = [
    (
        {"metrics": {"train/loss": [0.5, float("nan")]}},
        r"series 'train/loss' index 1: value nan is not finite",
    ),
    (
        {"metrics": {"train/loss": [0.5, float("-inf")]}},
        r"series 'train/loss' index 1: value -inf is not finite",
    ),
    ({"metrics": {"train/loss": [0.5, "high"]}}, r"series 'train/loss' index 1: value 'high' is not numeric"),
    (
        {"metrics": {"train/loss": [0.5, 0.4, 0.3]}, "steps": [0, 2, 1]},
        r"series 'train/loss' index 2: step 1 is not greater than the previous step 2 \(value 0.3\)",
    ),
    ({"metrics": "{'train/loss': [0.5, 0.4"}, r"neither JSON nor a Python literal"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD_INPUTS)
def test_bad_input_is_rejected_and_nothing_is_sent(
    neptune_emulator: Any, monkeypatch: pytest.MonkeyPatch, kwargs: dict[str, Any], message: str
) -> None:
    use_emulator(monkeypatch, neptune_emulator, "sync")
    run_id = _new_run()
    with pytest.raises(AirflowFailException, match=message):
        _log(run_id, **kwargs)
    with read_only_run(neptune_emulator, run_id) as run:
        assert not run.exists("train/loss")


def test_bad_file_cell_is_rejected(
    neptune_emulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_emulator(monkeypatch, neptune_emulator, "sync")
    run_id = _new_run()
    path = tmp_path / "bad.csv"
    path.write_text("step,train/loss\n0,0.5\n1,n/a\n")
    with pytest.raises(
        AirflowFailException, match=r"series 'train/loss' index 1: value 'n/a' is not numeric"
    ):
        _log(run_id, metrics_path=str(path))
    assert series_points(neptune_emulator, run_id, "train/loss") == []


def test_skip_invalid_sends_the_rest_and_counts(
    neptune_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_emulator(monkeypatch, neptune_emulator, "sync")
    run_id = _new_run()
    summary = _log(run_id, metrics={"m": [1.0, float("nan"), 3.0]}, skip_invalid=True)
    assert summary["points_invalid"] == 1
    assert summary["points_sent"] == 2
    assert series_points(neptune_emulator, run_id, "m") == [(0.0, 1.0), (2.0, 3.0)]


def test_relogging_the_same_input_adds_nothing(
    neptune_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_emulator(monkeypatch, neptune_emulator, "async")
    run_id = _new_run()
    _log(run_id, metrics={"m": [1.0, 2.0]})
    again = _log(run_id, metrics={"m": [1.0, 2.0, 3.0]})
    assert (again["points_sent"], again["points_skipped"]) == (1, 2)
    assert series_points(neptune_emulator, run_id, "m") == [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]
