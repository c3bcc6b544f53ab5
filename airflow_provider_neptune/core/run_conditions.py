"""Conditions on a Neptune run that sensors poke and triggers poll.

One evaluation reads the run through a hook and answers met / waiting / failed with a message; the
same code runs in a worker (poke, reschedule) and in the triggerer (deferrable), and the conditions
serialize to plain dicts so a trigger can carry them.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

# The vocabulary lives in a light module that sensors use at parse time; re-exported here.
from airflow_provider_neptune.condition_params import CONDITIONS as CONDITIONS
from airflow_provider_neptune.condition_params import FINISHED_WHEN as FINISHED_WHEN
from airflow_provider_neptune.condition_params import RUN_WAIT_FOR as RUN_WAIT_FOR
from airflow_provider_neptune.condition_params import STATE_FIELD as STATE_FIELD
from airflow_provider_neptune.condition_params import VALUE_MODES as VALUE_MODES
from airflow_provider_neptune.condition_params import as_number as _as_number
from airflow_provider_neptune.condition_params import check_metric_condition, check_run_condition

Status = Literal["met", "waiting", "failed"]


class RunReader(Protocol):
    """The read side of NeptuneHook that conditions need."""

    def fetch_series(self, run_id: str, path: str) -> list[tuple[float, float]]:
        """Return the (step, value) points of a float series (empty when missing)."""
        ...

    def fetch_field(self, run_id: str, path: str) -> Any:
        """Return a field's value, or None when the field does not exist."""
        ...


@dataclass(frozen=True)
class Outcome:
    """Result of one evaluation: status, a human-readable reason, and what was observed."""

    status: Status
    message: str
    value: Any = None
    step: float | None = None

    def to_event(self) -> dict[str, Any]:
        """Return a JSON-friendly dict, the payload of a trigger event."""
        return {"status": self.status, "message": self.message, "value": self.value, "step": self.step}


def is_run_not_found(exc: BaseException) -> bool:
    """Tell whether ``exc`` (possibly wrapped) says the run does not exist on the server."""
    from airflow_provider_neptune.exceptions import NeptuneRunNotFoundError

    not_found: tuple[type[BaseException], ...] = (NeptuneRunNotFoundError,)
    if "neptune" in sys.modules:  # the error came from the client, so it is already imported
        from neptune.exceptions import MetadataContainerNotFound

        not_found += (MetadataContainerNotFound,)
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, not_found):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def is_inactive(state: Any) -> bool:
    """Tell whether a ``sys/state`` value means the run is inactive (no client holds it open)."""
    return isinstance(state, str) and state.lower() in ("inactive", "idle")


def read_run_state(reader: RunReader, run_id: str) -> Any:
    """Return the run's ``sys/state`` (``running``/``idle`` as the API says it).

    The neptune 1.x client cannot fetch ``sys/state`` on its own (its RunState attribute has no
    ``fetch``), but fetching the ``sys`` namespace returns it among the other atoms.
    """
    system = reader.fetch_field(run_id, "sys")
    return system.get("state") if isinstance(system, dict) else None


def _finished_reason(reader: RunReader, run_id: str, finished_when: str | None) -> str | None:
    """Return why run ``run_id`` counts as finished, or None while it may still change.

    Both modes also treat ``sys/failed=True`` (the client sets it when the script crashes) as finished.
    """
    if finished_when is None:
        return None
    if finished_when == "stopped":
        state = reader.fetch_field(run_id, STATE_FIELD)
        if state is not None:
            return f"the run was stopped ({STATE_FIELD}={state!r})"
    system = reader.fetch_field(run_id, "sys")
    system = system if isinstance(system, dict) else {}
    if system.get("failed") is True:
        return "the run failed (sys/failed=True)"
    if finished_when == "inactive" and is_inactive(system.get("state")):
        return "the run is inactive (sys/state is Inactive)"
    return None


def _compare(value: Any, condition: str, threshold: Any) -> bool:
    number, limit = _as_number(value), _as_number(threshold)
    if number is not None and limit is not None:
        return not math.isnan(number) and CONDITIONS[condition](number, limit)
    if condition == "==":
        return bool(value == threshold)
    return False


@dataclass(frozen=True)
class MetricCondition:
    """A series (last value, or best of the last ``window`` points) or a field of a run vs a threshold."""

    run_id: str
    path: str
    condition: str
    threshold: Any
    value_mode: str = "last"
    window: int = 1
    finished_when: str | None = "stopped"

    def __post_init__(self) -> None:
        check_metric_condition(
            run_id=self.run_id,
            path=self.path,
            condition=self.condition,
            threshold=self.threshold,
            value_mode=self.value_mode,
            window=self.window,
            finished_when=self.finished_when,
        )

    @property
    def description(self) -> str:
        """Describe the condition in words, e.g. ``last value of val/acc >= 0.9``."""
        what = {"last": "last value", "best": f"best of the last {self.window} points", "field": "field"}
        return f"{what[self.value_mode]} of {self.path} {self.condition} {self.threshold!r}"

    def _pick(self, points: Sequence[tuple[float, float]]) -> tuple[float, float]:
        if self.value_mode == "last":
            return points[-1]
        recent = list(points[-self.window :])
        if self.condition in (">", ">="):
            return max(recent, key=lambda point: point[1])
        if self.condition in ("<", "<="):
            return min(recent, key=lambda point: point[1])
        matching = [point for point in recent if _compare(point[1], "==", self.threshold)]
        return matching[-1] if matching else recent[-1]

    def evaluate(self, reader: RunReader) -> Outcome:
        """Read the run once and say whether the condition is met, may still be met, or never will be."""
        # Read "finished" first: if the run was finished before the value was read, the value is final.
        finished = _finished_reason(reader, self.run_id, self.finished_when)
        where = f"run {self.run_id}"
        if self.value_mode == "field":
            value = reader.fetch_field(self.run_id, self.path)
            step = None
            missing = value is None
        else:
            points = reader.fetch_series(self.run_id, self.path)
            missing = not points
            step, value = self._pick(points) if points else (None, None)
        if missing:
            if finished:
                return Outcome(
                    "failed",
                    f"{where}: {finished} and {self.path} has no value, so the "
                    f"condition {self.description} can never be met",
                )
            return Outcome("waiting", f"{where}: {self.path} has no value yet")
        if self.condition != "==" and _as_number(value) is None:
            return Outcome("failed", f"{where}: {self.path} holds {value!r}, not a number", value, step)
        if _compare(value, self.condition, self.threshold):
            at = f" at step {step:g}" if step is not None else ""
            return Outcome("met", f"{where}: {self.description} met with {value!r}{at}", value, step)
        if finished:
            return Outcome(
                "failed",
                f"{where}: {finished} and {self.description} was not met (observed {value!r})",
                value,
                step,
            )
        return Outcome(
            "waiting", f"{where}: {self.description} not met yet (observed {value!r})", value, step
        )

    def to_dict(self) -> dict[str, Any]:
        """Serialize for a trigger's kwargs."""
        return {"kind": "metric", **asdict(self)}


@dataclass(frozen=True)
class RunCondition:
    """A run exists, is inactive, or has a given field."""

    run_id: str
    wait_for: str = "exists"
    field: str | None = None

    def __post_init__(self) -> None:
        check_run_condition(run_id=self.run_id, wait_for=self.wait_for, field=self.field)

    def evaluate(self, reader: RunReader) -> Outcome:
        """Read the run once and say whether it exists / is inactive / has the field yet."""
        where = f"run {self.run_id}"
        try:
            if self.wait_for == "exists":
                run_id = reader.fetch_field(self.run_id, "sys/id")
                return Outcome("met", f"{where} exists", run_id)
            if self.wait_for == "inactive":
                state = read_run_state(reader, self.run_id)
                if is_inactive(state):
                    return Outcome("met", f"{where} is inactive", state)
                return Outcome("waiting", f"{where} is still active (sys/state={state!r})", state)
            assert self.field is not None
            value = reader.fetch_field(self.run_id, self.field)
        except Exception as exc:
            if is_run_not_found(exc):
                return Outcome("waiting", f"{where} does not exist yet")
            raise
        if value is None:
            return Outcome("waiting", f"{where} has no field {self.field} yet")
        return Outcome("met", f"{where} has field {self.field}", value)

    def to_dict(self) -> dict[str, Any]:
        """Serialize for a trigger's kwargs."""
        return {"kind": "run", **asdict(self)}


def condition_from_dict(data: dict[str, Any]) -> MetricCondition | RunCondition:
    """Rebuild a condition serialized with ``to_dict`` (the inverse, used inside triggers)."""
    fields = dict(data)
    kind = fields.pop("kind", None)
    if kind == "metric":
        return MetricCondition(**fields)
    if kind == "run":
        return RunCondition(**fields)
    raise ValueError(f"unknown condition kind {kind!r}")
