"""How stored fields and server-owned sys/* fields look on the wire (attribute DTOs, table cells)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from airflow_provider_neptune.emulator.clock import iso_ms
from airflow_provider_neptune.emulator.storage import Attr, RunRow

PROPERTY_KEY = {
    "float": "floatProperties",
    "int": "intProperties",
    "bool": "boolProperties",
    "string": "stringProperties",
    "datetime": "datetimeProperties",
    "file": "fileProperties",
    "fileSet": "fileSetProperties",
    "floatSeries": "floatSeriesProperties",
    "stringSeries": "stringSeriesProperties",
    "imageSeries": "imageSeriesProperties",
    "stringSet": "stringSetProperties",
    "experimentState": "experimentStateProperties",
    "artifact": "artifactProperties",
    "gitRef": "gitRefProperties",
}


def sys_fields(run: RunRow, state: str, size: int) -> list[Attr]:
    """The sys/* fields the server maintains itself, computed when read."""
    fields = [
        Attr("sys/id", "string", {"v": run.short_id}),
        Attr("sys/owner", "string", {"v": run.owner}),
        Attr("sys/creation_time", "datetime", {"v": run.created_ms}),
        Attr("sys/modification_time", "datetime", {"v": run.modified_ms}),
        Attr("sys/ping_time", "datetime", {"v": run.ping_ms}),
        Attr("sys/running_time", "float", {"v": max(run.ping_ms - run.created_ms, 0) / 1000.0}),
        Attr("sys/monitoring_time", "int", {"v": 0}),
        Attr("sys/state", "experimentState", {"v": state}),
        Attr("sys/trashed", "bool", {"v": run.trashed}),
        Attr("sys/size", "float", {"v": float(size)}),
    ]
    if run.custom_id:
        fields.append(Attr("sys/custom_run_id", "string", {"v": run.custom_id}))
    if run.type == "modelVersion" and run.parent_id:
        fields.append(Attr("sys/model_id", "string", {"v": run.short_id.rsplit("-", 1)[0]}))
    return fields


# Defaults a real server shows for every run even before the client writes them.
DEFAULT_FIELDS = (
    Attr("sys/name", "string", {"v": "Untitled"}),
    Attr("sys/description", "string", {"v": ""}),
    Attr("sys/tags", "stringSet", {"v": []}),
    Attr("sys/group_tags", "stringSet", {"v": []}),
    Attr("sys/failed", "bool", {"v": False}),
)
# What a project (as a metadata container) has under sys/ besides what the server computes.
PROJECT_DEFAULT_VISIBILITY = "priv"


def project_fields(project: RunRow, name: str, stored: list[Attr], size: int) -> dict[str, Attr]:
    """A project's fields: its own, plus the sys/ fields a project has (no run-only ones like sys/state)."""
    out = {a.path: a for a in stored}
    out.setdefault("sys/visibility", Attr("sys/visibility", "string", {"v": PROJECT_DEFAULT_VISIBILITY}))
    for attr in (
        Attr("sys/id", "string", {"v": project.short_id}),
        Attr("sys/name", "string", {"v": name}),
        Attr("sys/owner", "string", {"v": project.owner}),
        Attr("sys/creation_time", "datetime", {"v": project.created_ms}),
        Attr("sys/modification_time", "datetime", {"v": project.modified_ms}),
        Attr("sys/ping_time", "datetime", {"v": project.ping_ms}),
        Attr("sys/size", "float", {"v": float(size)}),
    ):
        out[attr.path] = attr
    return out


def merged_fields(run: RunRow, stored: list[Attr], state: str, size: int) -> dict[str, Attr]:
    """Stored fields plus defaults plus server-owned sys fields, by path."""
    out = {a.path: a for a in DEFAULT_FIELDS}
    if run.type == "modelVersion":
        out["sys/stage"] = Attr("sys/stage", "string", {"v": "none"})
    out.update({a.path: a for a in stored})
    out.update({a.path: a for a in sys_fields(run, state, size)})
    return out


def shown_fields(kind: str, has_custom: bool, has_parent: bool) -> list[Attr]:
    """The fields besides stored ones that a run of `kind` shows (with a custom id / parent when asked).

    What lists columns (searchLeaderboardAttributes, the web view's column picker) needs from every
    run of a kind without building each run's fields.
    """
    sample = RunRow(
        id="",
        project_id="",
        seq=0,
        short_id="",
        type=kind,
        custom_id="x" if has_custom else None,
        model_key=None,
        parent_id="x" if has_parent else None,
        owner="",
        created_ms=0,
        modified_ms=0,
        ping_ms=0,
        trashed=False,
    )
    if kind == "project":
        fields = project_fields(sample, "", [], 0)
        fields["sys/visibility"] = Attr("sys/visibility", "string", {"v": ""})
        return list(fields.values())
    return list(merged_fields(sample, [], "idle", 0).values())


def properties(attr: Attr, fileset_size: Callable[[str], int] | None = None) -> dict[str, Any]:
    """The `<type>Properties` object of a field."""
    base: dict[str, Any] = {"attributeName": attr.path, "attributeType": attr.type}
    v = attr.value
    if attr.type in ("float", "int", "bool", "string"):
        base["value"] = v.get("v")
    elif attr.type == "datetime":
        base["value"] = iso_ms(int(v.get("v", 0)))
    elif attr.type == "experimentState":
        base["value"] = v.get("v")
    elif attr.type == "stringSet":
        base["values"] = list(v.get("v", []))
    elif attr.type == "file":
        base.update(name=v.get("name"), ext=v.get("ext"), size=v.get("size"))
    elif attr.type == "artifact":
        base["hash"] = v.get("v")
    elif attr.type == "fileSet":
        base["size"] = fileset_size(attr.path) if fileset_size else 0
    elif attr.type == "floatSeries":
        count = int(v.get("count", 0))
        base.update(
            last=v.get("last"),
            lastStep=v.get("lastStep"),
            min=v.get("min"),
            max=v.get("max"),
            average=_average(v.get("sum"), count),
        )
    elif attr.type == "stringSeries":
        base.update(last=v.get("last"), lastStep=v.get("lastStep"))
    elif attr.type == "imageSeries":
        base["lastStep"] = v.get("lastStep")
    elif attr.type == "gitRef":
        base.update({k: v.get(k) for k in ("commit", "repositoryDirty", "currentBranch", "remotes")})
    return base


def _average(total: Any, count: int) -> float | None:
    """sum / count, or None when there is none or it is not finite (data stored by older versions)."""
    if not count or not isinstance(total, int | float):
        return None
    average = float(total) / count
    return average if math.isfinite(average) else None


def attribute_dto(attr: Attr, fileset_size: Callable[[str], int] | None = None) -> dict[str, Any]:
    """An entry of getExperimentAttributes / a leaderboard entry: name, type and its properties."""
    return {"name": attr.path, "type": attr.type, PROPERTY_KEY[attr.type]: properties(attr, fileset_size)}


def plain_value(attr: Attr) -> Any:
    """The value NQL filters and sorting compare (series: last value; datetime: ms)."""
    if attr.type in ("floatSeries", "stringSeries"):
        return attr.value.get("last")
    if attr.type in ("file", "fileSet", "imageSeries"):
        return None
    if attr.type == "gitRef":
        return (attr.value.get("commit") or {}).get("commitId")
    return attr.value.get("v")
