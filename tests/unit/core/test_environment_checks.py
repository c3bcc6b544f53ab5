"""Each environment check passing and failing, with messages that name what is wrong."""

from __future__ import annotations

import importlib.metadata
import platform
from datetime import UTC, datetime
from pathlib import Path

import pytest

from airflow_provider_neptune.core.environment_checks import (
    CheckResult,
    check_client_conflict,
    check_clock_skew,
    check_data_directory,
    check_env,
    check_requirements,
    check_round_trip,
    check_server_client_range,
    default_requirements,
    installed_version,
    neptune_data_directory,
    normalize_requirements,
    present_env_names,
    provider_dependencies,
)


def fake_distribution(root: Path, name: str, version: str) -> Path:
    """A dist-info folder that importlib.metadata reports as an installed distribution."""
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return root


# --- requirements parsing -------------------------------------------------------------------------


def test_normalize_accepts_mapping_strings_python_and_bare_versions() -> None:
    assert normalize_requirements({"Neptune": ">=1.14,<2", "NumPy": None, "pandas": "2.2.1"}) == {
        "neptune": ">=1.14,<2",
        "numpy": "",
        "pandas": "==2.2.1",
    }
    assert normalize_requirements(["neptune>=1.14", "python>=3.11", "python_dateutil>=2"]) == {
        "neptune": ">=1.14",
        "python": ">=3.11",
        "python-dateutil": ">=2",
    }
    assert normalize_requirements("neptune==1.14.0.post2; python") == {
        "neptune": "==1.14.0.post2",
        "python": "",
    }
    assert normalize_requirements(None) == {}


@pytest.mark.parametrize(
    ("requirements", "fragment"),
    [
        ({"neptune": ">>1"}, "requirement for 'neptune': '>>1' is not a PEP 440 specifier"),
        (["neptune >= one"], "requirement 'neptune >= one' is not a PEP 508 requirement"),
    ],
)
def test_normalize_rejects_bad_requirements_naming_them(requirements: object, fragment: str) -> None:
    with pytest.raises(ValueError, match="PEP") as err:
        normalize_requirements(requirements)  # type: ignore[arg-type]
    assert fragment in str(err.value)


def test_default_requirements_come_from_the_provider_metadata() -> None:
    defaults = default_requirements()
    declared = {str(r) for r in importlib.metadata.distribution("airflow-provider-neptune").requires or []}
    assert f"neptune{defaults['neptune']}" in declared
    assert f"apache-airflow{defaults['apache-airflow']}" in declared
    assert defaults["python"] == importlib.metadata.metadata("airflow-provider-neptune")["Requires-Python"]
    assert defaults["airflow-provider-neptune"] == ""
    # Runtime dependencies only: no dev extras.
    deps = provider_dependencies()
    assert "tenacity" in deps
    assert "neptune" in deps
    assert "pytest" not in deps


# --- versions -------------------------------------------------------------------------------------


def test_installed_version_reads_metadata_and_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert installed_version("python") == platform.python_version()
    assert installed_version("surely-not-installed-dist") is None
    monkeypatch.syspath_prepend(str(fake_distribution(tmp_path, "neptune", "1.13.0")))
    assert installed_version("neptune") == "1.13.0"


def test_requirement_satisfied() -> None:
    [result] = check_requirements({"neptune": ">=1.14,<2"}, {"neptune": "1.14.0.post2"})
    assert result == CheckResult(
        "package:neptune", True, "package 'neptune' 1.14.0.post2 satisfies '>=1.14,<2'"
    )


def test_requirement_not_satisfied_names_package_specifier_and_installed_version() -> None:
    [result] = check_requirements({"neptune": ">=1.14,<2"}, {"neptune": "1.13.0"})
    assert not result.ok
    assert (
        result.message == "package 'neptune': installed version 1.13.0 does not satisfy required '>=1.14,<2'"
    )
    assert not result.retryable


def test_python_requirement_not_satisfied() -> None:
    [result] = check_requirements({"python": ">=3.99"}, {"python": "3.11.7"})
    assert result.message == "Python: installed version 3.11.7 does not satisfy required '>=3.99'"


def test_missing_package_names_the_requirement() -> None:
    [with_spec, bare] = check_requirements({"torch": ">=2", "numpy": ""}, {"torch": None, "numpy": None})
    assert with_spec.message == "package 'torch' is not installed (required: '>=2')"
    assert bare.message == "package 'numpy' is not installed (required: any version)"
    assert not with_spec.ok
    assert not bare.ok


def test_pre_release_install_is_judged_by_its_number_and_bad_versions_fail() -> None:
    [pre] = check_requirements({"apache-airflow": ">=3"}, {"apache-airflow": "3.4.0rc1"})
    assert pre.ok
    [bad] = check_requirements({"weird": ">=1"}, {"weird": "not-a-version"})
    assert not bad.ok
    assert "'weird' has version 'not-a-version', which is not PEP 440" in bad.message


def test_legacy_client_next_to_neptune_is_a_conflict() -> None:
    assert check_client_conflict({"neptune": "1.14.0"}) == []
    [conflict] = check_client_conflict({"neptune": "1.14.0", "neptune-client": "0.16.18"})
    assert not conflict.ok
    assert "'neptune' 1.14.0" in conflict.message
    assert "'neptune-client' 0.16.18" in conflict.message


# --- server's supported client versions -----------------------------------------------------------


def test_server_range_pass_and_absent() -> None:
    assert check_server_client_range("1.14.0", "1.0.0", "1.99.0").ok
    none = check_server_client_range("1.14.0", None, None, None)
    assert none.ok
    assert none.message == "server reports no supported client versions"


def test_server_range_too_old_and_too_new() -> None:
    old = check_server_client_range("1.13.0", "1.14.0", None)
    assert not old.ok
    assert (
        old.message
        == "package 'neptune': installed version 1.13.0 is older than the server's min compatible 1.14.0"
    )
    new = check_server_client_range("1.15.0", None, "1.14.0")
    assert not new.ok
    assert "installed version 1.15.0 is newer than the server's max compatible 1.14.0" in new.message


def test_server_max_is_compared_with_patch_zero_like_the_client() -> None:
    assert check_server_client_range("1.14.3", None, "1.14.0").ok


def test_server_min_recommended_warns_but_passes() -> None:
    result = check_server_client_range("1.10.0", "1.0.0", None, "1.12.0")
    assert result.ok
    assert "deprecated" in result.message
    assert not check_server_client_range(None, "1.0.0", None).ok


# --- environment variables ------------------------------------------------------------------------


def test_env_set_missing_empty_and_from_connection() -> None:
    environ = {"NEPTUNE_PROJECT": "ws/secret-project-value", "EMPTY": ""}
    results = check_env(
        ["NEPTUNE_PROJECT", "NEPTUNE_API_TOKEN", "MISSING_VAR", "EMPTY"], environ, ["NEPTUNE_API_TOKEN"]
    )
    assert [r.ok for r in results] == [True, True, False, False]
    assert results[1].message == "environment variable NEPTUNE_API_TOKEN is provided by the connection"
    assert results[2].message == "required environment variable MISSING_VAR is not set"
    assert results[3].message == "environment variable EMPTY is set but empty"
    assert all("secret-project-value" not in r.message for r in results)
    assert present_env_names(["NEPTUNE_PROJECT", "EMPTY", "X"], environ) == ["NEPTUNE_PROJECT"]


# --- data directory -------------------------------------------------------------------------------


def test_data_directory_resolution(tmp_path: Path) -> None:
    assert neptune_data_directory({}, cwd=tmp_path) == tmp_path / ".neptune"
    assert neptune_data_directory({"NEPTUNE_DATA_DIRECTORY": "q"}, cwd=tmp_path) == tmp_path / "q"
    assert neptune_data_directory({"NEPTUNE_DATA_DIRECTORY": str(tmp_path / "abs")}) == tmp_path / "abs"


def test_data_directory_writable_not_yet_created(tmp_path: Path) -> None:
    target = tmp_path / "not" / "yet" / ".neptune"
    result, free = check_data_directory(target, min_free_mb=1)
    assert result.ok, result.message
    assert free is not None
    assert free > 1
    assert f"data directory {target} is writable" in result.message
    assert not target.exists()  # the probe does not create the client's directory
    assert list(tmp_path.iterdir()) == []  # and leaves nothing behind


def test_data_directory_not_enough_free_space(tmp_path: Path) -> None:
    result, free = check_data_directory(tmp_path, min_free_mb=1e12)
    assert not result.ok
    assert free is not None
    assert (
        f"data directory {tmp_path} has {free:.1f} MiB free, less than the required 1e+12 MiB"
        == result.message
    )


def test_data_directory_under_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result, free = check_data_directory(blocker / ".neptune")
    assert not result.ok
    assert free is None
    assert (
        result.message
        == f"data directory {blocker / '.neptune'} cannot be created: {blocker} is not a directory"
    )


def test_data_directory_not_writable() -> None:
    # /proc refuses new files even for root (permission bits would not).
    result, _ = check_data_directory(Path("/proc/neptune-data"))
    assert not result.ok
    assert result.message.startswith("data directory /proc/neptune-data is not writable (/proc:")


# --- clock and round trip -------------------------------------------------------------------------


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


def test_clock_in_sync_passes() -> None:
    now = 1_800_000_000.0
    result, offset = check_clock_skew(_at(now), now + 0.2, now + 0.4, max_skew_seconds=5)
    assert result.ok
    assert offset is not None
    assert abs(offset) < 1


def test_clock_ahead_and_behind_fail_with_direction() -> None:
    now = 1_800_000_000.0
    ahead, offset = check_clock_skew(_at(now - 120), now, now + 0.1, max_skew_seconds=30)
    assert not ahead.ok
    assert ahead.retryable
    assert offset is not None
    assert 119 < offset < 121
    assert "s ahead of the server" in ahead.message
    assert "more than the allowed 30 s" in ahead.message
    behind, _ = check_clock_skew(_at(now + 120), now, now + 0.1, max_skew_seconds=30)
    assert "s behind the server" in behind.message


def test_clock_fails_only_when_certainly_beyond_bound() -> None:
    now = 1_800_000_000.0
    # The server's Date is truncated to the second: 2.5 s apparent offset may really be 1.5 s.
    result, _ = check_clock_skew(_at(now - 2), now + 0.5, now + 0.5, max_skew_seconds=2)
    assert result.ok
    result, _ = check_clock_skew(_at(now - 4), now + 0.5, now + 0.5, max_skew_seconds=2)
    assert not result.ok


def test_clock_naive_server_time_is_utc_and_missing_time_is_not_checked() -> None:
    now = 1_800_000_000.0
    naive = _at(now).replace(tzinfo=None)
    assert check_clock_skew(naive, now, now + 0.1, 1)[0].ok
    result, offset = check_clock_skew(None, now, now, 1)
    assert result.ok
    assert offset is None
    assert "not checked" in result.message


def test_round_trip_bound() -> None:
    assert check_round_trip(0.05, None).ok
    assert check_round_trip(None, 0.01).ok
    slow = check_round_trip(0.5, 0.1)
    assert not slow.ok
    assert slow.message == "round trip to the server took 0.500 s, more than the allowed 0.1 s"
