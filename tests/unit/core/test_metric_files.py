"""Bad metric files fail with a MetricInputError naming the file, the line (or row) and the column."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from airflow_provider_neptune.core.metric_inputs import MetricInputError, load_metrics


def _fails(path: Path, pattern: str, **kwargs: object) -> str:
    """Load `path`, expect a MetricInputError whose message starts with the path and matches."""
    with pytest.raises(MetricInputError) as info:
        load_metrics(metrics_path=path, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert str(path) in message, message
    assert re.search(pattern, message), message
    return message


def _csv(tmp_path: Path, text: str | bytes, name: str = "m.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_bytes(text.encode("utf-8"))
    return path


# ------------------------------------------------------------------ CSV


def test_duplicate_csv_header_names_both_columns(tmp_path: Path) -> None:
    path = _csv(tmp_path, "step,loss,acc,loss\n0,1,2,3\n1,4,5,6\n")
    _fails(path, r"line 1, column 4 \('loss'\): column 'loss' appears twice \(columns 2 and 4\)")


def test_duplicate_long_header(tmp_path: Path) -> None:
    path = _csv(tmp_path, "path,step,value,value\na,0,1,2\n")
    _fails(path, r"line 1, column 4 \('value'\): column 'value' appears twice")


def test_invalid_utf8_names_line_and_column(tmp_path: Path) -> None:
    path = _csv(tmp_path, b"step,loss\n0,0.5\n1,0\xff5\n")
    _fails(path, r"line 3, column 4: not valid UTF-8 \(byte 0xff\)")


def test_empty_file(tmp_path: Path) -> None:
    _fails(_csv(tmp_path, ""), r"empty CSV file \(no header row\)")


def test_header_only(tmp_path: Path) -> None:
    _fails(_csv(tmp_path, "step,loss\n"), r"has a header but no data rows")
    _fails(_csv(tmp_path, "path,step,value\r\n", "long.csv"), r"has a header but no data rows")


@pytest.mark.parametrize(
    ("rows", "line", "fields"),
    [("0,1\n1,2,3\n", 3, 3), ("0,1\n1\n", 3, 1)],
)
def test_ragged_rows(tmp_path: Path, rows: str, line: int, fields: int) -> None:
    path = _csv(tmp_path, "step,loss\n" + rows)
    _fails(path, rf"line {line}: {fields} field\(s\) but the header \(line 1\) has 2")


def test_bom_is_not_part_of_the_first_column_name(tmp_path: Path) -> None:
    path = _csv(tmp_path, "\ufeffstep,loss\r\n5,0.5\r\n6,0.4\r\n")
    batch = load_metrics(metrics_path=path)
    assert list(batch.series) == ["loss"]
    assert batch.series["loss"].steps == [5.0, 6.0]


def test_crlf_and_quoted_fields(tmp_path: Path) -> None:
    path = _csv(tmp_path, 'path,step,value\r\n"train/loss, smoothed","1","0.5"\r\n"a ""b""",2,1e-3\r\n')
    batch = load_metrics(metrics_path=path)
    assert batch.series["train/loss, smoothed"].values == [0.5]
    assert batch.series['a "b"'].steps == [2.0]
    assert batch.series['a "b"'].values == [0.001]


def test_non_numeric_step_names_the_step_cell(tmp_path: Path) -> None:
    path = _csv(tmp_path, "step,loss,acc\n0,1,2\nten,3,4\n")
    _fails(path, r"line 3, column 1 \('step'\): series 'loss' index 1: step 'ten' is not a finite number")


def test_bad_value_names_its_cell(tmp_path: Path) -> None:
    path = _csv(tmp_path, "path,step,value\na,0,1\nb,0,2\na,1,oops\n")
    _fails(path, r"line 4, column 3 \('value'\): series 'a' index 1: value 'oops' is not numeric")


def test_steps_not_increasing_in_long_csv(tmp_path: Path) -> None:
    path = _csv(tmp_path, "path,step,value\na,0,1\na,2,1\na,1,1\n")
    _fails(path, r"line 4, column 2 \('step'\): series 'a' index 2: step '1' is not greater than")


def test_blank_series_path(tmp_path: Path) -> None:
    _fails(_csv(tmp_path, "path,step,value\na,0,1\n ,1,2\n"), r"line 3, column 1 \('path'\): empty 'path'")


def test_unterminated_quote(tmp_path: Path) -> None:
    _fails(_csv(tmp_path, 'step,loss\n0,"1\n'), r"line 2.*: malformed CSV")


def test_nul_byte(tmp_path: Path) -> None:
    path = _csv(tmp_path, "step,loss\n0,1\x00\n")
    _fails(path, r"line 2, column 2 \('loss'\): series 'loss' index 0: value '1\\x00' is not numeric")


def test_blank_column_name(tmp_path: Path) -> None:
    _fails(_csv(tmp_path, "step,,loss\n0,1,2\n"), r"line 1, column 2: empty column name")


def test_no_metric_columns(tmp_path: Path) -> None:
    _fails(_csv(tmp_path, "step,timestamp\n0,1\n"), r"no metric columns")


def test_huge_integer_cell(tmp_path: Path) -> None:
    path = _csv(tmp_path, "step,loss\n0," + "9" * 400 + "\n")
    _fails(path, r"line 2, column 2 \('loss'\): series 'loss' index 0: value '9999.*\.\.\. is not finite")


# ------------------------------------------------------------------ JSON


def test_json_400_digit_integer(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text('{"train/loss": [0.5,\n  ' + "1" * 400 + "]}")
    _fails(
        path, r"line 2, column 3: series 'train/loss' index 1: value 1111.*\.\.\. is too large for a float"
    )


def test_json_bad_step_in_values_mapping(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text('{"a": {"values": [1, 2],\n "steps": [0, "x"]}}')
    _fails(path, r"line 2, column 15: series 'a' index 1: step 'x' is not a finite number")


def test_json_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_bytes(b'{"a": [1,\n 2, "\xc3\x28"]}')
    _fails(path, r"line 2, column 6: not valid UTF-8 \(byte 0xc3\)")


def test_json_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text('{"a": [1,\n 2,, 3]}')
    _fails(path, r"line 2, column 4: not valid JSON: Expecting value")


@pytest.mark.parametrize(
    ("text", "kind"), [("42", "a number"), ('"x"', "a string"), ("[1, 2]", "an array"), ("null", "null")]
)
def test_json_top_level_not_an_object(tmp_path: Path, text: str, kind: str) -> None:
    path = tmp_path / "m.json"
    path.write_text("\n  " + text)
    _fails(path, rf"line 2, column 3: the top-level JSON value is {kind}; expected an object")


def test_json_deeply_nested(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")
    _fails(path, r"line 1, column \d+: JSON nested more than \d+ levels deep")


def test_json_nested_value_is_located(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text('{"a": [1, [[2]]]}')
    _fails(path, r"line 1, column 11: series 'a' index 1: value \[\[2\]\] is not numeric")


def test_json_series_not_a_list(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text('{"a": [1],\n "b": 5}')
    _fails(path, r"line 2, column 7: series 'b' must be a list")


def test_json_duplicate_series(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text('{"a": [1],\n "a": [2]}')
    _fails(path, r"line 2, column 2: key 'a' appears twice")


def test_json_with_bom(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"a": [1, 2]}).encode())
    assert load_metrics(metrics_path=path).series["a"].values == [1.0, 2.0]


def test_json_over_the_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_neptune.core import metric_files

    monkeypatch.setattr(metric_files, "MAX_JSON_BYTES", 100)
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"a": list(range(100))}))
    _fails(path, r"\d+ bytes, more than the 100-byte limit for JSON metric files")


# ------------------------------------------------------------------ Parquet


def test_parquet_wrong_column_type(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "m.parquet"
    pq.write_table(pa.table({"step": [0, 1], "loss": [[1.0], [2.0]]}), path)
    _fails(path, r"column 'loss': has type list<.*>, which cannot hold metric values")


def test_parquet_bad_cell_names_row_and_column(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "m.parquet"
    pq.write_table(pa.table({"path": ["x", "x", "x"], "step": [1, 2, 3], "value": ["1", "2", "n/a"]}), path)
    _fails(path, r"row 3, column 'value': series 'x' index 2: value 'n/a' is not numeric")


def test_not_a_parquet_file(tmp_path: Path) -> None:
    path = tmp_path / "m.parquet"
    path.write_text("step,loss\n")
    _fails(path, r"not a readable Parquet file")


# ------------------------------------------------------------------ the path itself


def test_directory_missing_and_unreadable(tmp_path: Path) -> None:
    folder = tmp_path / "dir.csv"
    folder.mkdir()
    _fails(folder, r"is a directory, not a file")
    _fails(tmp_path / "absent.csv", r"no such file")


def test_unreadable_file_error_is_translated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unreadable file is named with the reason (open() refuses: as root, chmod cannot take read away)."""
    path = _csv(tmp_path, "step,loss\n0,1\n")
    real_open = Path.open

    def refuse(self: Path, *args: object, **kwargs: object) -> object:
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "open", refuse)
    _fails(path, r"cannot be read: .*Permission denied")
