"""Loading and validating metric inputs: every form, every kind of bad point."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_neptune.core.metric_inputs import (
    MetricInputError,
    PointValidator,
    RawSeries,
    collect_series,
    load_metrics,
    parse_structured,
    validate_series,
)


def test_mapping_of_lists_gets_index_steps() -> None:
    batch = load_metrics({"train/loss": [0.9, 0.7, 0.5], "val/acc": [0.1]})
    assert batch.series["train/loss"].values == [0.9, 0.7, 0.5]
    assert batch.series["train/loss"].steps == [0.0, 1.0, 2.0]
    assert batch.series["val/acc"].steps == [0.0]
    assert batch.points == 4
    assert batch.invalid == 0


def test_shared_and_per_series_steps_and_timestamps() -> None:
    batch = load_metrics(
        {"a": [1, 2], "b": {"values": [3, 4], "steps": [10, 20], "timestamps": [1.0, 2.0]}},
        steps=[5, 6],
        timestamps={"a": ["2024-01-01T00:00:00+00:00", 1704067201]},
    )
    assert batch.series["a"].steps == [5.0, 6.0]
    assert batch.series["b"].steps == [10.0, 20.0]
    assert batch.series["a"].timestamps == [1704067200.0, 1704067201.0]
    assert batch.series["b"].timestamps == [1.0, 2.0]


def test_json_text_and_python_literal_text_parse_back() -> None:
    as_json = load_metrics(json.dumps({"m": [1.5, 2.5]}))
    as_literal = load_metrics(str({"m": [1.5, 2.5]}))  # a template rendered without native objects
    assert as_json.series["m"].values == as_literal.series["m"].values == [1.5, 2.5]


@pytest.mark.parametrize("text", ["not json at all {", "None", "[1, 2]", "   "])
def test_garbage_rendering_is_a_clear_error(text: str) -> None:
    with pytest.raises(MetricInputError, match="metrics"):
        load_metrics(text)


def test_parse_structured_names_the_input_and_shows_the_text() -> None:
    with pytest.raises(MetricInputError, match=r"steps rendered to text .*'\{\{ oops'"):
        parse_structured("{{ oops", "steps")


@pytest.mark.parametrize(
    ("values", "index", "shown", "reason"),
    [
        ([1.0, float("nan"), 2.0], 1, "nan", "not finite"),
        ([1.0, 2.0, float("inf")], 2, "inf", "not finite"),
        ([1.0, "abc", 2.0], 1, "'abc'", "not numeric"),
        ([None, 1.0], 0, "None", "not numeric"),
        ([True, 1.0], 0, "True", "not numeric"),
        ([1.0, [2.0]], 1, r"\[2.0\]", "not numeric"),
        ([1.0, 10**400], 1, r"10{56}\.\.\.", "too large for a float"),  # float() of it overflows
    ],
)
def test_bad_values_name_series_index_and_value(
    values: list[object], index: int, shown: str, reason: str
) -> None:
    with pytest.raises(
        MetricInputError, match=rf"series 'train/loss' index {index}: value {shown} is {reason}"
    ):
        load_metrics({"train/loss": values})


def test_steps_going_backwards_or_repeating_are_rejected() -> None:
    with pytest.raises(MetricInputError) as info:
        load_metrics({"m": [1, 2, 3, 4]}, steps=[0, 5, 5, 3])
    message = str(info.value)
    assert "series 'm' index 2: step 5 is not greater than the previous step 5 (value 3)" in message
    assert "series 'm' index 3: step 3 is not greater than the previous step 5 (value 4)" in message
    assert message.startswith("2 invalid metric point(s); nothing was sent")


def test_non_numeric_step_and_bad_timestamp_are_rejected() -> None:
    with pytest.raises(MetricInputError, match=r"series 'm' index 1: step 'x' is not a finite number"):
        load_metrics({"m": [1, 2]}, steps=[0, "x"])
    with pytest.raises(MetricInputError, match=r"series 'm' index 0: timestamp 'yesterday' is not valid"):
        load_metrics({"m": [1]}, timestamps=["yesterday"])


def test_skip_invalid_drops_and_counts_without_shifting_steps() -> None:
    batch = load_metrics({"m": [1.0, float("nan"), 3.0, "x", 5.0]}, skip_invalid=True)
    assert batch.series["m"].values == [1.0, 3.0, 5.0]
    assert batch.series["m"].steps == [0.0, 2.0, 4.0]
    assert batch.invalid == 2
    assert len(batch.problems) == 2


def test_skip_invalid_drops_backward_steps() -> None:
    batch = load_metrics({"m": [1, 2, 3, 4]}, steps=[1, 3, 2, 4], skip_invalid=True)
    assert batch.series["m"].steps == [1.0, 3.0, 4.0]
    assert batch.series["m"].values == [1.0, 2.0, 4.0]
    assert batch.invalid == 1


def test_long_error_lists_are_truncated_with_a_total() -> None:
    with pytest.raises(MetricInputError) as info:
        load_metrics({"m": [math.nan] * 30})
    assert str(info.value).startswith("30 invalid metric point(s)")
    assert "... and 10 more" in str(info.value)


@pytest.mark.parametrize(
    ("metrics", "kwargs", "match"),
    [
        ({}, {}, "empty"),
        ({"": [1]}, {}, "non-empty string"),
        ({"/abs": [1]}, {}, "non-empty string"),
        ({"m": 5}, {}, "must be a list"),
        ({"m": [1, 2]}, {"steps": [1]}, "2 values but 1 steps"),
        ({"m": {"steps": [1]}}, {}, "needs 'values'"),
        ({"a": [1], "b": [2]}, {"timestamps": {"a": [1.0]}}, r"not for \['b'\]"),
    ],
)
def test_structural_errors(metrics: object, kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(MetricInputError, match=match):
        load_metrics(metrics, **kwargs)  # type: ignore[arg-type]


def test_exactly_one_source() -> None:
    with pytest.raises(MetricInputError, match="exactly one"):
        load_metrics()
    with pytest.raises(MetricInputError, match="exactly one"):
        load_metrics({"m": [1]}, "file.json")


def test_json_file(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"train/loss": {"values": [3, 2], "steps": [7, 8]}}))
    batch = load_metrics(metrics_path=path)
    assert batch.series["train/loss"].steps == [7.0, 8.0]


def test_wide_csv_with_gaps(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("step,train/loss,val/acc\n0,0.9,\n1,0.7,0.5\n2,0.5,\n3,0.4,0.8\n")
    batch = load_metrics(metrics_path=str(path))
    assert batch.series["train/loss"].values == [0.9, 0.7, 0.5, 0.4]
    assert batch.series["val/acc"].steps == [1.0, 3.0]
    assert batch.series["val/acc"].values == [0.5, 0.8]


def test_long_csv_with_bad_cell_names_series_index_value(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("path,step,value\na,0,1\nb,0,2\na,1,oops\n")
    with pytest.raises(MetricInputError, match=r"series 'a' index 1: value 'oops' is not numeric"):
        load_metrics(metrics_path=path)


def test_parquet_long_and_wide(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    wide = tmp_path / "wide.parquet"
    pq.write_table(pa.table({"step": [0, 1, 2], "loss": [0.9, None, 0.5]}), wide)
    batch = load_metrics(metrics_path=wide)
    assert batch.series["loss"].steps == [0.0, 2.0]
    long = tmp_path / "long.parquet"
    pq.write_table(pa.table({"path": ["x", "x"], "step": [1, 2], "value": [1.0, float("nan")]}), long)
    with pytest.raises(MetricInputError, match=r"series 'x' index 1: value nan is not finite"):
        load_metrics(metrics_path=long)


def test_unknown_or_missing_file(tmp_path: Path) -> None:
    other = tmp_path / "m.txt"
    other.write_text("x")
    with pytest.raises(MetricInputError, match="unknown metrics file type"):
        load_metrics(metrics_path=other)
    with pytest.raises(MetricInputError, match=r"absent\.csv: no such file"):
        load_metrics(metrics_path=tmp_path / "absent.csv")
    broken = tmp_path / "b.json"
    broken.write_text("{nope")
    with pytest.raises(MetricInputError, match="not valid JSON"):
        load_metrics(metrics_path=broken)


def test_validate_series_keeps_order_of_series() -> None:
    batch = validate_series(collect_series({"z": [1], "a": [2]}))
    assert list(batch.series) == ["z", "a"]


def test_numpy_arrays_and_tuples_are_accepted() -> None:
    import numpy as np

    batch = load_metrics({"a": np.array([1.0, 2.0]), "b": (3, 4)}, steps=np.array([5, 6]))
    assert batch.series["a"].values == [1.0, 2.0]
    assert batch.series["b"].steps == [5.0, 6.0]


class _NotAList(list):  # type: ignore[type-arg]
    """A list subclass: validate_series then checks it point by point, as before the whole-list pass."""


_ODD_ITEMS: list[object] = [math.nan, math.inf, -math.inf, True, "2.5", None, 10**400, 1e308]


def _random_series(rng: random.Random) -> RawSeries:
    n = rng.randint(0, 40)
    values: list[object] = [rng.choice([rng.uniform(-1e3, 1e3), rng.randint(-5, 5)]) for _ in range(n)]
    steps: list[object] | None = None
    if rng.random() < 0.7:
        steps = [float(i) * 1.5 for i in range(n)] if rng.random() < 0.5 else list(range(n))
    for _ in range(rng.choice([0, 0, 1, 2])):  # a few series carry odd items, duplicate or backward steps
        target = values if steps is None or rng.random() < 0.5 else steps
        if target:
            target[rng.randrange(len(target))] = rng.choice([*_ODD_ITEMS, 0.0, 3])
    return RawSeries(values, steps)


@pytest.mark.parametrize("seed", range(60))
@pytest.mark.parametrize("skip_invalid", [False, True])
def test_the_whole_list_check_gives_what_the_point_by_point_check_gives(
    seed: int, skip_invalid: bool
) -> None:
    rng = random.Random(seed)
    series = {f"s{i}": _random_series(rng) for i in range(4)}
    slow = {
        path: RawSeries(_NotAList(raw.values), _NotAList(raw.steps) if raw.steps is not None else None)
        for path, raw in series.items()
    }
    outcomes = []
    for given in (series, slow):
        try:
            batch = validate_series(given, skip_invalid=skip_invalid)
        except MetricInputError as exc:
            outcomes.append(("error", str(exc)))
        else:
            got = {p: (s.values, s.steps, s.timestamps) for p, s in batch.series.items()}
            outcomes.append(("batch", (got, batch.invalid, batch.problems)))
            for s in batch.series.values():
                assert all(type(v) is float for v in [*s.values, *s.steps])
    assert outcomes[0] == outcomes[1]


def test_plain_numbers_in_increasing_steps_skip_the_point_by_point_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checked: list[str] = []
    original = PointValidator.check

    def counting(self: PointValidator, path: str, *args: Any, **kwargs: Any) -> Any:
        checked.append(path)
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(PointValidator, "check", counting)
    batch = validate_series(
        {
            "plain": RawSeries([0.5, 2, -1e300], [1, 2.5, 7]),
            "indexed": RawSeries([1.0, 2.0]),
            "repeated step": RawSeries([1.0, 2.0], [3.0, 3.0]),
        },
        skip_invalid=True,
    )
    assert checked == ["repeated step", "repeated step"]
    assert batch.series["plain"].values == [0.5, 2.0, -1e300]
    assert batch.series["plain"].steps == [1.0, 2.5, 7.0]
    assert batch.series["indexed"].steps == [0.0, 1.0]
    assert batch.series["repeated step"].values == [1.0]
    assert batch.invalid == 1
