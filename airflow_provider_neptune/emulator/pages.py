"""The emulator's web pages: runs table per project, run pages with charts, compare view, downloads.

The provider's Airflow extra link (`run.get_url()`) lands on the run page. Pages are read-only (GET
and HEAD only) and escape every user value: run names, tags and field paths are user input. The only
script is the emulator's own static/web.js; nothing is fetched from the network.
"""

from __future__ import annotations

from html import escape
from importlib import resources
from pathlib import PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, quote, urlencode

from starlette.responses import FileResponse, HTMLResponse, Response

from airflow_provider_neptune.emulator.clock import iso_ms
from airflow_provider_neptune.emulator.errors import NQLSyntaxError, PageError
from airflow_provider_neptune.emulator.storage import Attr, ProjectRow, RunRow
from airflow_provider_neptune.emulator.web import charts, queries

if TYPE_CHECKING:
    from airflow_provider_neptune.emulator.api import NeptuneApi

STATIC_PREFIX = "/_web/static/"
DOWNLOAD_PREFIX = "/_web/download/"
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
# Defence in depth behind the escaping: only the emulator's own script, styles and requests.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
}
LIVE_POLL_MS = 2000
MAX_COMPARE_RUNS = len(charts.PALETTE)


def _e(value: object) -> str:
    """Escape any value for HTML text and quoted attributes."""
    return escape(str(value), quote=True)


def _doc(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_e(title)}</title><link rel='icon' href='data:,'>"
        f"<link rel='stylesheet' href='{STATIC_PREFIX}web.css'>"
        f"<script src='{STATIC_PREFIX}web.js' defer></script></head><body>{body}</body></html>"
    )
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def _run_href(project: ProjectRow, run: RunRow) -> str:
    kind = "m" if run.type != "run" else "e"
    return f"/{quote(project.workspace)}/{quote(project.name)}/{kind}/{quote(run.short_id)}"


def _project_href(project: ProjectRow, **params: str) -> str:
    base = f"/{quote(project.workspace)}/{quote(project.name)}"
    clean = {k: v for k, v in params.items() if v}
    return f"{base}?{urlencode(clean)}" if clean else base


def cell(attr: Attr | None) -> str:
    """A field's value as escaped table-cell HTML."""
    if attr is None:
        return ""
    v = attr.value
    if attr.type == "stringSet":
        return "".join(f"<span class='tag'>{_e(t)}</span>" for t in v.get("v", []))
    if attr.type == "experimentState":
        state = str(v.get("v"))
        return f"<span class='state-{_e(state)}'>{_e(state)}</span>"
    if attr.type == "datetime":
        return _e(iso_ms(int(v.get("v", 0))))
    if attr.type == "floatSeries":
        last = v.get("last")
        return _e(charts.fmt(float(last))) if isinstance(last, int | float) else ""
    if attr.type == "stringSeries":
        return _e(v.get("last", ""))
    if attr.type == "float":
        value = v.get("v")
        return _e(charts.fmt(float(value))) if isinstance(value, int | float) else _e(value)
    if attr.type == "file":
        return _e(f"{v.get('name')}.{v.get('ext')} ({v.get('size')} bytes)")
    if attr.type in ("fileSet", "imageSeries"):
        return _e(attr.type)
    return _e(v.get("v"))


def _numeric(attr: Attr | None) -> bool:
    return attr is not None and attr.type in ("float", "int", "floatSeries")


class WebView:
    """Routes page requests to their renderers; `respond` answers None for paths it does not serve."""

    def __init__(self, api: NeptuneApi) -> None:
        self.api = api
        self.storage = api.storage
        queries.install_tombstones(self.storage)

    @property
    def state_timeout(self) -> float:
        """Seconds without a ping after which a run reads as idle (the API's setting)."""
        return float(self.api.settings.state_timeout)

    def respond(self, path: str, query_string: str) -> Response | None:
        """The response for a GET of `path?query_string`, or None when no page lives there."""
        params = parse_qs(query_string, keep_blank_values=True)
        try:
            return self._route(path, params)
        except PageError as exc:
            return _doc("Bad request", f"<h1>Bad request</h1><p class='error'>{_e(exc)}</p>", status=400)

    def _route(self, path: str, params: dict[str, list[str]]) -> Response | None:
        if path in ("/", ""):
            return self.index()
        if path.startswith(STATIC_PREFIX):
            return self.static(path[len(STATIC_PREFIX) :])
        if path.startswith(DOWNLOAD_PREFIX):
            return self.download(path[len(DOWNLOAD_PREFIX) :], params)
        parts = [p for p in path.split("/") if p]
        if len(parts) < 2:
            return None
        project = self.storage.find_project(f"{parts[0]}/{parts[1]}")
        if project is None:
            return None
        if len(parts) == 2:
            return self.runs_table(project, params)
        if len(parts) == 3 and parts[2] == "compare":
            return self.compare(project, params)
        if len(parts) >= 4 and parts[2] in ("e", "m"):
            # /ws/proj/e/SAN-1[/metadata...], /ws/proj/m/SAN-MOD, /ws/proj/m/SAN-MOD/v/SAN-MOD-1
            short_id = parts[5] if parts[2] == "m" and len(parts) >= 6 and parts[4] == "v" else parts[3]
            run = self.storage.find_run(f"{project.qualified_name}/{short_id}")
            if run is None:
                return None
            if _one(params, "fragment") == "charts":
                return HTMLResponse(self.live_section(run), headers=SECURITY_HEADERS)
            return self.run_page(project, run)
        return None

    # ----- static files and downloads -----------------------------------------------------------
    def static(self, name: str) -> Response | None:
        """The page script and style sheet, shipped inside the package."""
        suffix = PurePosixPath(name).suffix
        if "/" in name or suffix not in STATIC_TYPES:
            return None
        resource = resources.files("airflow_provider_neptune.emulator.web").joinpath("static", name)
        if not resource.is_file():
            return None
        return Response(
            resource.read_bytes(), media_type=STATIC_TYPES[suffix], headers={"Cache-Control": "no-cache"}
        )

    def download(self, run_id: str, params: dict[str, list[str]]) -> Response | None:
        """A File field's content, or one file of a FileSet field (`entry`), as an attachment."""
        run = self.storage.find_run(run_id)
        path = _one(params, "field")
        if run is None or not path:
            return None
        attr = self.storage.attribute(run.id, path)
        if attr is None:
            return None
        if attr.type == "file":
            name = str(attr.value.get("name") or "file")
            if attr.value.get("ext"):
                name = f"{name}.{attr.value['ext']}"
            blob = self.storage.blob_path(str(attr.value.get("blob")))
        elif attr.type == "fileSet":
            entry = _one(params, "entry")
            found = [e for e in self.storage.fileset_entries(run.id, path) if e["sub_path"] == entry]
            if not found:
                return None
            name = PurePosixPath(str(entry)).name
            blob = self.storage.blob_path(found[0]["blob"])
        else:
            raise PageError(f"field {path!r} is a {attr.type}, not a file: nothing to download")
        if not blob.exists():
            return None
        disposition = f"attachment; filename*=UTF-8''{quote(name, safe='')}"
        headers = {"Content-Disposition": disposition}
        return FileResponse(blob, media_type="application/octet-stream", headers=headers)

    # ----- index --------------------------------------------------------------------------------
    def index(self) -> HTMLResponse:
        """Every project with its number of runs."""
        rows = []
        for project in self.storage.list_projects():
            count = len(self.storage.runs_of(project.id, ["run"]))
            rows.append(
                f"<tr><td><a href='{_e(_project_href(project))}'>{_e(project.qualified_name)}</a></td>"
                f"<td class='num'>{count}</td></tr>"
            )
        body = (
            "<h1>Neptune emulator</h1><table class='projects'><tr><th>project</th><th>runs</th></tr>"
            + "".join(rows)
            + "</table>"
        )
        return _doc("Neptune emulator", body)

    # ----- runs table ---------------------------------------------------------------------------
    def table_query(self, params: dict[str, list[str]]) -> queries.TableQuery:
        """Read the runs table's parameters, refusing bad ones with a message naming them."""
        direction = _one(params, "dir") or "desc"
        if direction not in ("asc", "desc"):
            raise PageError(f"dir must be 'asc' or 'desc', got {direction!r}")
        page = _int(params, "page", 1, 1, 10**9)
        size = _int(params, "size", 50, 1, queries.MAX_PAGE_SIZE)
        state = _one(params, "state")
        if state not in ("", "running", "idle"):
            raise PageError(f"state must be 'running' or 'idle', got {state!r}")
        columns = tuple(c.strip() for c in ",".join(params.get("cols", [])).split(",") if c.strip())
        return queries.TableQuery(
            nql_text=_one(params, "q"),
            tag=_one(params, "tag"),
            state=state,
            sort=_one(params, "sort") or "sys/creation_time",
            descending=direction == "desc",
            page=page,
            size=size,
            columns=columns,
        )

    def runs_table(self, project: ProjectRow, params: dict[str, list[str]]) -> HTMLResponse:
        """The project's runs: base and chosen columns, sorting, NQL/tag/state filters, paging."""
        request = self.table_query(params)
        error = ""
        try:
            page = queries.table_page(self.storage, project, request, self.state_timeout)
        except NQLSyntaxError as exc:
            error = f"The filter is not valid NQL ({exc}); showing no runs."
            page = queries.TablePage(
                rows=[],
                matching=0,
                total=queries.run_count(self.storage, project),
                pages=1,
                field_paths=queries.field_paths(self.storage, project),
            )
        keep = {
            "q": request.nql_text,
            "tag": request.tag,
            "state": request.state,
            "cols": ",".join(request.columns),
            "size": str(request.size) if request.size != 50 else "",
        }
        sort_params = {**keep, "sort": request.sort, "dir": "desc" if request.descending else "asc"}
        columns = list(queries.BASE_COLUMNS) + [(c, c) for c in request.columns]
        header = ["<th><span title='select runs to compare'>compare</span></th>"]
        for path, label in columns:
            active = path == request.sort
            next_dir = "asc" if active and request.descending else "desc"
            arrow = (" ▼" if request.descending else " ▲") if active else ""
            href = _project_href(project, **keep, sort=path, dir=next_dir)
            header.append(
                f"<th data-path='{_e(path)}'><a href='{_e(href)}' title='sort by {_e(path)}'>"
                f"{_e(label)}{arrow}</a></th>"
            )
        body_rows = []
        for run, fields in page.rows:
            cells = [
                f"<td><input type='checkbox' name='run' value='{_e(run.short_id)}' form='compare-form' "
                f"aria-label='compare {_e(run.short_id)}'></td>"
            ]
            for path, _ in columns:
                if path == "sys/id":
                    cells.append(f"<td><a href='{_e(_run_href(project, run))}'>{_e(run.short_id)}</a></td>")
                    continue
                attr = fields.get(path)
                cls = " class='num'" if _numeric(attr) else ""
                cells.append(f"<td{cls} data-path='{_e(path)}'>{cell(attr)}</td>")
            body_rows.append(f"<tr class='run' data-run='{_e(run.short_id)}'>{''.join(cells)}</tr>")
        datalist = "".join(f"<option value='{_e(p)}'>" for p in page.field_paths)
        state_options = "".join(
            f"<option value='{v}'{' selected' if request.state == v else ''}>{v or 'any'}</option>"
            for v in ("", "running", "idle")
        )
        filters = (
            f"<form class='filters' method='get' action='{_e(_project_href(project))}'>"
            f"<label>NQL filter<input name='q' value='{_e(request.nql_text)}' "
            "placeholder='(val/accuracy:floatSeries > 0.9) AND (sys/name:string MATCHES \"^lr\")'></label>"
            f"<label>tag<input name='tag' value='{_e(request.tag)}'></label>"
            f"<label>state<select name='state'>{state_options}</select></label>"
            f"<label>extra columns (comma-separated field paths)<input name='cols' list='field-paths' "
            f"value='{_e(','.join(request.columns))}'></label>"
            f"<datalist id='field-paths'>{datalist}</datalist>"
            f"<input type='hidden' name='sort' value='{_e(request.sort)}'>"
            f"<input type='hidden' name='dir' value='{'desc' if request.descending else 'asc'}'>"
            "<button type='submit'>apply</button></form>"
        )
        pager = self._pager(project, sort_params, request.page, page.pages, page.matching, page.total)
        compare_form = (
            f"<form id='compare-form' method='get' action='{_e(_project_href(project))}/compare'>"
            "<button type='submit'>compare selected runs</button></form>"
        )
        body = (
            f"<nav class='crumbs'><a href='/'>projects</a> / {_e(project.qualified_name)}</nav>"
            f"<h1>Runs of {_e(project.qualified_name)}</h1>{filters}"
            + (f"<p class='error'>{_e(error)}</p>" if error else "")
            + pager
            + compare_form
            + f"<table class='runs'><thead><tr>{''.join(header)}</tr></thead>"
            f"<tbody>{''.join(body_rows)}</tbody></table>" + pager
        )
        return _doc(f"Runs of {project.qualified_name}", body, status=400 if error else 200)

    @staticmethod
    def _pager(
        project: ProjectRow, params: dict[str, str], page: int, pages: int, matching: int, total: int
    ) -> str:
        first = min((page - 1) * int(params.get("size") or 50) + 1, matching)
        last = min(page * int(params.get("size") or 50), matching)
        links = []
        if page > 1:
            prev_href = _project_href(project, **params, page=str(page - 1))
            links.append(f"<a rel='prev' href='{_e(prev_href)}'>prev</a>")
        if page < pages:
            next_href = _project_href(project, **params, page=str(page + 1))
            links.append(f"<a rel='next' href='{_e(next_href)}'>next</a>")
        return (
            f"<div class='pager'><span class='count'>runs {first} to {last} of {matching} matching "
            f"({total} in project)</span><span class='page'>page {page} of {pages}</span>"
            + "".join(links)
            + "</div>"
        )

    # ----- run page -----------------------------------------------------------------------------
    def run_page(self, project: ProjectRow, run: RunRow) -> HTMLResponse:
        """Charts of every float series, fields, checkpoints and files of one run."""
        fields = self.api.fields_of(run)
        name = str(fields["sys/name"].value.get("v", "")) if "sys/name" in fields else ""
        summary = [
            ("id", _e(run.short_id)),
            ("name", _e(name)),
            ("state", cell(fields.get("sys/state"))),
            ("tags", cell(fields.get("sys/tags"))),
            ("owner", _e(run.owner)),
            ("created", _e(iso_ms(run.created_ms))),
            ("DAG", cell(fields.get("airflow/dag_id"))),
            ("DAG run", cell(fields.get("airflow/dag_run_id"))),
        ]
        summary_html = (
            "<table class='summary'>"
            + "".join(
                f"<tr><th>{k}</th><td class='summary-{k.replace(' ', '-')}'>{v}</td></tr>" for k, v in summary
            )
            + "</table>"
        )
        body = (
            f"<nav class='crumbs'><a href='/'>projects</a> / "
            f"<a href='{_e(_project_href(project))}'>{_e(project.qualified_name)}</a> / "
            f"{_e(run.short_id)}</nav><h1><span class='run-id'>{_e(run.short_id)}</span> "
            f"<span class='run-name'>{_e(name)}</span></h1>"
            + summary_html
            + self.live_section(run, fields)
            + self._fields_table(run, fields)
            + self._checkpoints_table(run, fields)
            + self._files_table(run, fields)
        )
        return _doc(f"{project.qualified_name} / {run.short_id} {name}", body)

    def live_section(self, run: RunRow, fields: dict[str, Attr] | None = None) -> str:
        """The charts (refreshed by the page's script while the run is running)."""
        if fields is None:
            fields = self.api.fields_of(run)
        state = str(fields["sys/state"].value.get("v"))
        figures = []
        for path in sorted(p for p, a in fields.items() if a.type == "floatSeries"):
            attr = fields[path]
            series = queries.float_series(self.storage, run.id, path)
            unit = (attr.value.get("config") or {}).get("unit") or "value"
            last, last_step = attr.value.get("last"), attr.value.get("lastStep")
            drawn = (
                f"{len(series.steps)} drawn: min and max of each of {series.total} points' buckets"
                if series.downsampled
                else "all drawn"
            )
            last_text = charts.fmt(float(last)) if isinstance(last, int | float) else "-"
            step_text = charts.fmt(float(last_step)) if isinstance(last_step, int | float) else "-"
            figures.append(
                f"<div class='series-chart' data-path='{_e(path)}'>"
                f"<div class='caption'><code class='path'>{_e(path)}</code> "
                f"<span class='meta'>last <b class='last'>{_e(last_text)}</b> at step "
                f"<span class='last-step'>{_e(step_text)}</span> · <span class='points'>{series.total}</span>"
                f" points ({_e(drawn)})</span></div>"
                + charts.chart([charts.Line(path, series.steps, series.values)], key=path, y_label=str(unit))
                + "</div>"
            )
        return (
            f"<section id='live' data-state='{_e(state)}' data-poll='{LIVE_POLL_MS}'>"
            f"<h2>Charts <small class='state-{_e(state)}'>({_e(state)}"
            f"{', refreshing every 2 s' if state == 'running' else ''})</small></h2>"
            f"<div class='charts'>{''.join(figures) or '<p>No float series.</p>'}</div></section>"
        )

    def _fields_table(self, run: RunRow, fields: dict[str, Attr]) -> str:
        rows = []
        for path in sorted(fields):
            attr = fields[path]
            if attr.type in ("floatSeries", "file", "fileSet"):
                continue
            shown = cell(attr)
            if attr.type == "stringSeries":
                tail = queries.string_tail(self.storage, run.id, path)
                shown = (
                    f"<details><summary>{cell(attr)}</summary><table>"
                    + "".join(
                        f"<tr><td class='num'>{charts.fmt(s)}</td><td>{_e(t)}</td></tr>" for s, t in tail
                    )
                    + "</table></details>"
                )
            rows.append(
                f"<tr data-path='{_e(path)}'><td><code>{_e(path)}</code></td><td>{_e(attr.type)}</td>"
                f"<td>{shown}</td></tr>"
            )
        return (
            "<h2>Fields</h2><table class='fields'><tr><th>field</th><th>type</th><th>value</th></tr>"
            + "".join(rows)
            + "</table>"
        )

    def _download_href(self, run: RunRow, path: str, entry: str | None = None) -> str:
        params = {"field": path, **({"entry": entry} if entry is not None else {})}
        return f"{DOWNLOAD_PREFIX}{quote(run.id)}?{urlencode(params)}"

    def _checkpoints_table(self, run: RunRow, fields: dict[str, Attr]) -> str:
        found = queries.checkpoints(self.storage, run.id, fields)
        if not found:
            return ""
        rows = []
        for c in found:
            status = c.status + (" (marked keep)" if c.marked_keep else "")
            link = (
                f"<a href='{_e(self._download_href(run, c.file_path))}'>download</a>" if c.file_path else ""
            )
            rows.append(
                f"<tr data-entry='{_e(c.entry)}'><td><code>{_e(c.entry)}</code></td>"
                f"<td class='num'>{_e(charts.fmt(c.step)) if c.step is not None else ''}</td>"
                f"<td class='num'>{_e(charts.fmt(c.score)) if c.score is not None else ''}</td>"
                f"<td class='num'>{c.size if c.size is not None else ''}</td>"
                f"<td class='mono' title='{_e(c.sha256)}'>{_e(c.sha256[:12])}…</td>"
                f"<td>{_e(iso_ms(c.uploaded_ms)) if c.uploaded_ms is not None else ''}</td>"
                f"<td class='status status-{_e(c.status.replace(' ', '-'))}'>{_e(status)}</td>"
                f"<td>{link}</td></tr>"
            )
        return (
            "<h2>Checkpoints</h2><table class='checkpoints'><tr><th>entry</th><th>step</th><th>score</th>"
            "<th>size (bytes)</th><th>sha256</th><th>uploaded</th><th>retention</th><th>file</th></tr>"
            + "".join(rows)
            + "</table>"
        )

    def _files_table(self, run: RunRow, fields: dict[str, Attr]) -> str:
        rows = []
        for path in sorted(fields):
            attr = fields[path]
            if attr.type == "file":
                v = attr.value
                name = f"{v.get('name')}.{v.get('ext')}" if v.get("ext") else str(v.get("name"))
                rows.append(
                    f"<tr><td><code>{_e(path)}</code></td><td>{_e(name)}</td>"
                    f"<td class='num'>{_e(v.get('size'))}</td>"
                    f"<td><a href='{_e(self._download_href(run, path))}'>download</a></td></tr>"
                )
            elif attr.type == "fileSet":
                for entry in self.storage.fileset_entries(run.id, path):
                    sub = str(entry["sub_path"])
                    rows.append(
                        f"<tr><td><code>{_e(path)}</code></td><td>{_e(sub)}</td>"
                        f"<td class='num'>{int(entry['size'])}</td>"
                        f"<td><a href='{_e(self._download_href(run, path, sub))}'>download</a></td></tr>"
                    )
        if not rows:
            return ""
        return (
            "<h2>Files</h2><table class='files'><tr><th>field</th><th>file</th><th>size (bytes)</th>"
            "<th></th></tr>" + "".join(rows) + "</table>"
        )

    # ----- compare ------------------------------------------------------------------------------
    def compare(self, project: ProjectRow, params: dict[str, list[str]]) -> HTMLResponse:
        """One float series of several runs overlaid in one chart, with a legend."""
        short_ids = list(dict.fromkeys(s for s in params.get("run", []) if s))
        if not short_ids:
            raise PageError("select at least one run to compare (parameter 'run')")
        if len(short_ids) > MAX_COMPARE_RUNS:
            raise PageError(f"compare at most {MAX_COMPARE_RUNS} runs at once, got {len(short_ids)}")
        runs: list[tuple[RunRow, dict[str, Attr]]] = []
        for short_id in short_ids:
            run = self.storage.find_run(f"{project.qualified_name}/{short_id}")
            if run is None:
                raise PageError(f"run {short_id!r} is not in project {project.qualified_name}")
            runs.append((run, self.api.fields_of(run)))
        metrics = sorted({p for _, f in runs for p, a in f.items() if a.type == "floatSeries"})
        common = [m for m in metrics if all(m in f for _, f in runs)]
        metric = _one(params, "metric") or (common[0] if common else (metrics[0] if metrics else ""))
        if metric and metric not in metrics:
            raise PageError(f"metric {metric!r} is not a float series of the selected runs")
        lines = []
        rows = []
        for run, fields in runs:
            name = str(fields["sys/name"].value.get("v", "")) if "sys/name" in fields else ""
            label = f"{run.short_id} {name}".strip()
            attr = fields.get(metric)
            if attr is not None and attr.type == "floatSeries":
                series = queries.float_series(self.storage, run.id, metric)
                lines.append(charts.Line(label, series.steps, series.values))
                last = attr.value.get("last")
                last_text = charts.fmt(float(last)) if isinstance(last, int | float) else ""
                points = str(series.total)
            else:
                last_text, points = "", "no such series"
            rows.append(
                f"<tr data-run='{_e(run.short_id)}'><td><a href='{_e(_run_href(project, run))}'>"
                f"{_e(run.short_id)}</a></td><td>{_e(name)}</td><td class='num last'>{_e(last_text)}</td>"
                f"<td class='num'>{_e(points)}</td></tr>"
            )
        hidden = "".join(f"<input type='hidden' name='run' value='{_e(s)}'>" for s in short_ids)
        options = "".join(
            f"<option value='{_e(m)}'{' selected' if m == metric else ''}>{_e(m)}</option>" for m in metrics
        )
        picker = (
            f"<form class='filters' method='get'>{hidden}<label>metric"
            f"<select name='metric'>{options}</select>"
            "</label><button type='submit'>show</button></form>"
        )
        figure = "<p>No float series.</p>"
        if lines:
            figure = charts.chart(lines, key=metric, y_label=metric, legend=True)
        body = (
            f"<nav class='crumbs'><a href='/'>projects</a> / "
            f"<a href='{_e(_project_href(project))}'>{_e(project.qualified_name)}</a> / compare</nav>"
            f"<h1>Compare <code class='metric'>{_e(metric)}</code></h1>{picker}"
            f"<div class='compare-chart'>{figure}</div>"
            "<table class='compared'><tr><th>run</th><th>name</th><th>last value</th><th>points</th></tr>"
            + "".join(rows)
            + "</table>"
        )
        return _doc(f"Compare {metric}", body)


def _one(params: dict[str, list[str]], name: str) -> str:
    values = params.get(name) or [""]
    return values[-1].strip()


def _int(params: dict[str, list[str]], name: str, default: int, low: int, high: int) -> int:
    text = _one(params, name)
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise PageError(f"{name} must be a whole number, got {text!r}") from None
    if not low <= value <= high:
        raise PageError(f"{name} must be between {low} and {high}, got {value}")
    return value
