"""In-memory stand-ins for NeptuneHook and the task context (unit tests of run/metric operators, sensors)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any


class FakeTI:
    """Just enough of a task instance: ids and an XCom store."""

    def __init__(self, dag_id: str = "dag", run_id: str = "manual__1", map_index: int = -1) -> None:
        self.dag_id = dag_id
        self.run_id = run_id
        self.task_id = "task"
        self.map_index = map_index
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value

    def get_first_reschedule_date(self, context: Any) -> None:
        return None


def make_context(ti: FakeTI | None = None, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return a context dict with a fake TI and params."""
    return {"ti": ti or FakeTI(), "params": dict(params or {})}


class FakeRun(dict):  # type: ignore[type-arg]
    """A run handle: item assignment records fields."""


class FakeHook:
    """Records calls; runs live in ``runs`` (custom id -> sys/id), fields in ``fields`` (sys/id -> dict)."""

    def __init__(self) -> None:
        self.runs: dict[str, str] = {}
        self.fields: dict[str, dict[str, Any]] = {}
        self.series: dict[str, dict[str, list[tuple[float, float]]]] = {}
        self.calls: list[tuple[str, Any]] = []
        self.closed = 0
        self.log_metrics_result: dict[str, Any] = {
            "points_sent": 0,
            "points_skipped": 0,
            "requests": 1,
            "retries": 0,
            "throttled": 0,
            "last_steps": {},
        }

    def create_run(
        self,
        custom_run_id: str | None = None,
        name: str | None = None,
        tags: Sequence[str] = (),
        description: str | None = None,
        **_: Any,
    ) -> str:
        self.calls.append(("create_run", {"custom_run_id": custom_run_id, "name": name, "tags": list(tags)}))
        assert custom_run_id is not None
        if custom_run_id not in self.runs:
            self.runs[custom_run_id] = f"SAN-{len(self.runs) + 1}"
        sys_id = self.runs[custom_run_id]
        self.fields.setdefault(sys_id, {})["sys/name"] = name
        return sys_id

    @contextmanager
    def get_run(self, run_id: str | None = None, **_: Any) -> Iterator[FakeRun]:
        assert run_id is not None
        run = FakeRun()
        yield run
        self.fields.setdefault(run_id, {}).update(run)
        self.calls.append(("assign", (run_id, dict(run))))

    def wait_for_delivery(self, run: Any, *, timeout: float, expected_last_steps: Any = None) -> None:
        self.calls.append(("wait_for_delivery", timeout))

    def stop_run(self, run_id: str, *, timeout: float = 60.0) -> None:
        self.calls.append(("stop_run", (run_id, timeout)))

    def run_url(self, run_id: str) -> str:
        return f"http://127.0.0.1:1/airflow/sandbox/e/{run_id}"

    def log_metrics(
        self,
        run_id: str,
        metrics: Mapping[str, Sequence[float]],
        steps: Any = None,
        timestamps: Any = None,
        *,
        resume: bool = True,
        progress: Any = None,
    ) -> dict[str, Any]:
        self.calls.append(
            ("log_metrics", {"run_id": run_id, "metrics": metrics, "steps": steps, "timestamps": timestamps})
        )
        total = sum(len(values) for values in metrics.values())
        if progress is not None:
            for done in range(0, total + 1, max(1, total // 4)):
                progress(done, total)
            progress(total, total)
        return {**self.log_metrics_result, "points_sent": total}

    def fetch_series(self, run_id: str, path: str) -> list[tuple[float, float]]:
        self.calls.append(("fetch_series", (run_id, path)))
        return list(self.series.get(run_id, {}).get(path, []))

    def fetch_field(self, run_id: str, path: str) -> Any:
        self.calls.append(("fetch_field", (run_id, path)))
        return self.fields.get(run_id, {}).get(path)

    def close(self) -> None:
        self.closed += 1


def hook_with_run(points: list[tuple[float, float]] | None = None, **fields: Any) -> FakeHook:
    """A FakeHook holding run SAN-1 with series val/acc = ``points`` and the given fields (a__b = a/b)."""
    hook = FakeHook()
    if points is not None:
        hook.series["SAN-1"] = {"val/acc": points}
    run_fields = {k.replace("__", "/"): v for k, v in fields.items()}
    state = run_fields.pop("sys/state", None)
    hook.fields["SAN-1"] = {"sys/id": "SAN-1", "sys": {"id": "SAN-1", "state": state}, **run_fields}
    return hook
