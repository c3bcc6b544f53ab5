"""Minimal HTML pages: the project index and one page per run (the URL `run.get_url()` returns).

The provider's Airflow extra link points at these pages when the server is the emulator.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from airflow_provider_neptune.emulator.clock import iso_ms
from airflow_provider_neptune.emulator.storage import RunRow, Storage

if TYPE_CHECKING:
    from airflow_provider_neptune.emulator.api import NeptuneApi

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse;margin:1rem 0}
td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f3f3f3} code{background:#f6f6f6;padding:0 .2rem} svg{background:#fafafa}
"""


def _doc(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def _sparkline(values: list[float], width: int = 240, height: int = 48) -> str:
    """An inline SVG polyline of a float series."""
    if len(values) < 2:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    step = width / (len(values) - 1)
    points = " ".join(
        f"{i * step:.1f},{height - (v - low) / span * (height - 4) - 2:.1f}" for i, v in enumerate(values)
    )
    return (
        f"<svg width='{width}' height='{height}' role='img' aria-label='series'>"
        f"<polyline fill='none' stroke='#2a6fdb' stroke-width='1.5' points='{points}'/></svg>"
    )


def index_page(storage: Storage, project_name: str | None = None) -> str:
    """Projects and their runs with links to run pages."""
    parts = ["<h1>Neptune emulator</h1>"]
    for project in storage.list_projects():
        if project_name and project.qualified_name != project_name:
            continue
        parts.append(
            f"<h2>{escape(project.qualified_name)}</h2><table><tr><th>id</th><th>created</th>"
            "<th>type</th><th>trashed</th></tr>"
        )
        for run in reversed(storage.runs_of(project.id)):
            kind = "m" if run.type != "run" else "e"
            link = f"/{project.workspace}/{project.name}/{kind}/{run.short_id}"
            parts.append(
                f"<tr><td><a href='{escape(link)}'>{escape(run.short_id)}</a></td>"
                f"<td>{iso_ms(run.created_ms)}</td><td>{escape(run.type)}</td><td>{run.trashed}</td></tr>"
            )
        parts.append("</table>")
    return _doc("Neptune emulator", "".join(parts))


def run_page(api: NeptuneApi, run: RunRow) -> str:
    """Every field of one run: values, series (with a sparkline), files."""
    project = api.storage.find_project(run.project_id)
    fields = api.fields_of(run)
    title = f"{project.qualified_name if project else ''} / {run.short_id}"
    rows = []
    for path in sorted(fields):
        attr = fields[path]
        v = attr.value
        if attr.type in ("floatSeries", "stringSeries"):
            total, points = api.storage.series_values(run.id, path, 0, 2000)
            shown = f"last={escape(str(v.get('last')))} at step {v.get('lastStep')} ({total} points)"
            if attr.type == "floatSeries":
                shown += "<br>" + _sparkline([float(p["value"]) for p in points])
        elif attr.type == "file":
            shown = f"file {escape(str(v.get('name')))}.{escape(str(v.get('ext')))} ({v.get('size')} bytes)"
        elif attr.type == "fileSet":
            entries = api.storage.fileset_entries(run.id, path)
            shown = "<br>".join(f"{escape(e['sub_path'])} ({e['size']} bytes)" for e in entries) or "(empty)"
        elif attr.type == "stringSet":
            shown = escape(", ".join(v.get("v", [])))
        elif attr.type == "datetime":
            shown = iso_ms(int(v.get("v", 0)))
        elif attr.type == "imageSeries":
            shown = f"{v.get('count', 0)} images"
        else:
            shown = escape(str(v.get("v")))
        rows.append(
            f"<tr><td><code>{escape(path)}</code></td><td>{escape(attr.type)}</td><td>{shown}</td></tr>"
        )
    body = (
        f"<h1>{escape(title)}</h1><p><a href='/'>all runs</a></p>"
        "<table><tr><th>field</th><th>type</th><th>value</th></tr>" + "".join(rows) + "</table>"
    )
    return _doc(title, body)
