"""Checkpoint operators: gated, idempotent upload and the retention clean-up.

:class:`NeptuneUploadArtifactOperator` records beside every file the fields retention needs (score,
step, size, sha256, upload time), so :class:`NeptuneArtifactRetentionOperator` decides from one paged
table scan, never downloading a file. Both reach Neptune only through :class:`NeptuneHook`.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_neptune.exceptions import NeptuneRetentionRefusedError
from airflow_provider_neptune.links import NeptuneRunLink, record_run_link
from airflow_provider_neptune.operators.base import NeptuneBaseOperator, normalize_tags

if TYPE_CHECKING:
    from pathlib import Path

    from airflow.sdk import Context

    from airflow_provider_neptune.core.checkpoint_records import Checkpoint, Direction
    from airflow_provider_neptune.core.retention_plan import RetentionPlan, RetentionPolicy
    from airflow_provider_neptune.hooks.neptune import NeptuneHook
    from airflow_provider_neptune.hooks.run_edits import RunEditor

# The checkpoint and retention helpers are imported inside the methods that run on the worker: a DAG
# file that only builds these operators does not pay for them at parse time.

log = logging.getLogger(__name__)

__all__ = [
    "NeptuneArtifactRetentionOperator",
    "NeptuneRetentionRefusedError",
    "NeptuneUploadArtifactOperator",
]

UPLOAD_MODES = ("async", "sync", "offline")

# Offline runs cannot be read back from a server; within the process that owns such a run handle the
# gate remembers what it queued (an offline run only lives in the process that created it).
_OFFLINE_LEDGER: weakref.WeakKeyDictionary[Any, dict[str, dict[str, Checkpoint]]] = (
    weakref.WeakKeyDictionary()
)


class NeptuneUploadArtifactOperator(NeptuneBaseOperator):
    """Upload a checkpoint file (or a glob of files) to a run, with the fields retention decides on.

    Each file goes to ``<namespace>/<key>/file`` and beside it ``score``, ``step``, ``size`` (bytes,
    a float: Neptune integers are 32-bit), ``sha256``, ``uploaded_at``, ``name``, optionally ``keep``,
    and last the ``record`` marker that makes it a complete record retention may act on. ``key`` is
    ``step_<step>`` for one file with a step, else the file name (see ``checkpoint_name``). A task
    retry does not send the same bytes again: an entry with the same sha256 and its file present is
    skipped. Large files go through the client's multipart upload.
    In async and offline modes the bytes are copied at once into the client's per-run upload folder
    under the Neptune data directory (the client deletes that copy after uploading, also after
    ``neptune sync``), so deleting or rewriting the file afterwards cannot lose or change the upload.
    The gate reads the run's entries when the task runs, so gated uploads running in parallel for
    one run may both pass it; the retention clean-up trims any excess.

    :param run_id: ``sys/id`` of the run (templated), e.g. ``"{{ ti.xcom_pull('create_run') }}"``.
    :param path: file path or glob (templated).
    :param namespace: where the entries go (templated), default ``checkpoints``.
    :param score: the checkpoint's score (templated); needed by ``only_if_better``.
    :param step: the training step or epoch (templated); decides the key and which one is the final.
    :param only_if_better: upload only when ``score`` is among the best ``keep_top_k`` so far in this
        run (a tie with the k-th best is not better).
    :param keep_top_k: k of the gate (templated).
    :param direction: ``max`` (higher score is better) or ``min``.
    :param keep: mark the entries so retention never deletes them.
    :param checkpoint_name: fixed key instead of the automatic one (templated).
    :param custom_run_id: open the run by custom run id instead of ``run_id`` (templated).
    :param follow_symlinks: also upload files whose real location (after following symlinks, also
        symlinked directories a ``**`` glob walks through) is outside the directory ``path`` names
        (its part before the first wildcard; the file's folder for a single file). Default False:
        such files fail the task, listing where they point. A ``..`` in ``path`` is always refused.
    :param delivery_timeout: seconds to wait for the uploads to be confirmed.
    :param neptune_conn_id: the Neptune connection.
    :param project: ``workspace/project`` overriding the connection's.
    :param mode: client mode overriding the connection's (``async``, ``sync``, ``offline``).
    :returns: (XCom) ``run_id``, ``namespace``, ``uploaded`` and ``skipped`` lists, ``bytes_uploaded``,
        ``requests`` (requests, 429s and retries spent).
    """

    template_fields: Sequence[str] = (
        "run_id",
        "custom_run_id",
        "path",
        "namespace",
        "score",
        "step",
        "keep_top_k",
        "direction",
        "checkpoint_name",
        "project",
    )
    operator_extra_links = (NeptuneRunLink(),)
    ui_color = "#c8e6f5"

    def __init__(
        self,
        *,
        run_id: str | None = None,
        path: str,
        namespace: str = "checkpoints",
        score: float | str | None = None,
        step: float | str | None = None,
        only_if_better: bool = False,
        keep_top_k: int | str | None = None,
        direction: str = "max",
        keep: bool = False,
        checkpoint_name: str | None = None,
        custom_run_id: str | None = None,
        follow_symlinks: bool = False,
        delivery_timeout: float = 600.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.run_id = run_id
        self.path = path
        self.namespace = namespace
        self.score = score
        self.step = step
        self.only_if_better = only_if_better
        self.keep_top_k = keep_top_k
        self.direction = direction
        self.keep = keep
        self.checkpoint_name = checkpoint_name
        self.custom_run_id = custom_run_id
        self.follow_symlinks = follow_symlinks
        self.delivery_timeout = delivery_timeout

    def execute(self, context: Context) -> dict[str, Any]:
        """Gate, stash and upload the files, then wait until the server confirms them."""
        from airflow_provider_neptune.core.checkpoint_files import resolve_files
        from airflow_provider_neptune.core.checkpoint_records import (
            entry_key,
            validate_direction,
            validate_namespace,
        )
        from airflow_provider_neptune.core.rendered_values import (
            as_bool,
            as_optional_float,
            as_optional_int,
            as_optional_str,
        )

        namespace = validate_namespace(str(self.namespace))
        direction = validate_direction(str(self.direction))
        score = as_optional_float("score", self.score)
        step = as_optional_float("step", self.step)
        keep_top_k = as_optional_int("keep_top_k", self.keep_top_k, minimum=1)
        only_if_better = as_bool("only_if_better", self.only_if_better)
        run_id = as_optional_str(self.run_id)
        custom_run_id = as_optional_str(self.custom_run_id)
        if only_if_better and (score is None or keep_top_k is None):
            raise ValueError("only_if_better needs both score and keep_top_k")
        files = resolve_files(
            str(self.path), follow_symlinks=as_bool("follow_symlinks", self.follow_symlinks)
        )
        if run_id is None and custom_run_id is None:
            raise ValueError("run_id or custom_run_id is required: which run do the checkpoints belong to?")
        name = as_optional_str(self.checkpoint_name)
        keys = [entry_key(str(f), step=step, single_file=len(files) == 1, name=name) for f in files]
        if len(set(keys)) != len(keys):
            raise ValueError(f"several files map to the same checkpoint key: {sorted(keys)}")

        with self.closing_hook() as hook:
            return self._upload(context, hook, namespace, direction, files, keys, score, step, keep_top_k)

    def _upload(
        self,
        context: Context,
        hook: NeptuneHook,
        namespace: str,
        direction: Direction,
        files: list[Path],
        keys: list[str],
        score: float | None,
        step: float | None,
        keep_top_k: int | None,
    ) -> dict[str, Any]:
        """Open the run, gate, skip what is already there, queue the rest and wait for delivery."""
        from airflow_provider_neptune.core.checkpoint_store import read_run_entries, upload_checkpoints
        from airflow_provider_neptune.core.rendered_values import as_bool, as_optional_str

        only_if_better = as_bool("only_if_better", self.only_if_better)
        run_id = as_optional_str(self.run_id)
        custom_run_id = as_optional_str(self.custom_run_id)
        requests_before = self.request_counters()
        mode = hook.settings.mode
        if mode not in UPLOAD_MODES:
            raise ValueError(
                f"cannot upload checkpoints in mode {mode!r}; use one of {', '.join(UPLOAD_MODES)}"
            )
        offline = mode == "offline"
        with hook.get_run(run_id=run_id, custom_run_id=custom_run_id) as run:
            if offline:
                ledger = _OFFLINE_LEDGER.setdefault(run, {}).setdefault(namespace, {})
                existing = {c.key: c for c in ledger.values()}
            else:
                ledger = None
                existing = {c.key: c for c in read_run_entries(run, namespace)}

            outcome = upload_checkpoints(
                run,
                namespace,
                list(zip(keys, files, strict=True)),
                existing,
                score=score,
                step=step,
                keep=self.keep,
                stash=mode in ("async", "offline"),
                gate=(keep_top_k, direction) if only_if_better and keep_top_k is not None else None,
                task_log=self.log,
            )
            uploaded, skipped = outcome.uploaded, outcome.skipped
            if ledger is not None:
                ledger.update({c.key: c for c in outcome.queued})
            if uploaded:
                if offline:
                    run.wait(disk_only=True)
                else:
                    hook.wait_for_delivery(run, timeout=self.delivery_timeout)
        if run_id and not offline:
            record_run_link(self, context, hook.run_url(run_id))
        total = sum(int(u["size"]) for u in uploaded)
        self.log.info(
            "%d checkpoint file(s) uploaded (%d bytes), %d skipped, in %s of run %s (mode %s)",
            len(uploaded),
            total,
            len(skipped),
            namespace,
            run_id or custom_run_id or "(new)",
            mode,
        )
        return {
            "run_id": run_id,
            "namespace": namespace,
            "uploaded": uploaded,
            "skipped": skipped,
            "bytes_uploaded": total,
            "requests": self.requests_since(requests_before),
        }


class NeptuneArtifactRetentionOperator(NeptuneBaseOperator):
    """Delete checkpoints not worth keeping, per run and project-wide, safely and idempotently.

    For every run matched by ``tags`` / ``state`` / ``query`` (and created more than
    ``older_than_days`` ago, when given), it keeps the top ``keep_top_k`` checkpoints by score, the
    final one (highest step) and any marked ``keep``, and deletes the others' record fields under
    ``namespace``. Only complete records the upload operator wrote are considered (see
    :func:`.checkpoint_records.recognise_record`); other fields, also beside a record, are never
    deleted. Optional project-wide rules: only the best ``keep_best_runs`` runs by ``run_metric`` keep
    their top-k, the rest keep only their final one; runs created more than
    ``final_only_older_than_days`` ago keep only their final one.

    Safety: a run's last remaining checkpoint is never deleted; nothing outside ``namespace`` is
    touched; a plan deleting more than ``max_delete_fraction`` of the checkpoints found is refused
    (raise the fraction after reviewing the dry-run plan); the plan is recomputed from the server on
    every run, so a second run deletes nothing and an interrupted one is finished by the next.
    Cost: the scan reads the runs table page by page (100 runs a page, ``NEPTUNE_FETCH_TABLE_STEP_SIZE``)
    and plans each run as it arrives, holding only the runs that lose a checkpoint; each such run's
    deletions then go in one ``executeOperations`` by the run's id (no run is opened), confirmed by
    the server before the next; a run that keeps everything costs no request. All requests pass the
    hook's shared budget and retry policy; progress is logged.

    :param namespace: the checkpoints' namespace (templated), default ``checkpoints``.
    :param keep_top_k: checkpoints kept per run by score (templated).
    :param direction: ``max`` (higher score is better) or ``min``.
    :param keep_last: also keep each run's final checkpoint.
    :param tags: only runs having all these tags: a list, or a string naming one tag (never split).
    :param state: only runs in this state (``active`` or ``inactive``).
    :param query: NQL query selecting runs (templated); combined with ``tags``/``state`` by AND.
    :param older_than_days: only runs created more than this many days ago (templated).
    :param dry_run: report the plan without deleting anything (templated).
    :param max_delete_fraction: refuse plans deleting a larger share of the checkpoints found (templated).
    :param keep_best_runs: project-wide: only this many runs (best by ``run_metric``) keep top-k.
    :param run_metric: field or float series ranking the runs (its last value).
    :param run_metric_direction: ``max`` or ``min`` for ``run_metric``; default ``direction``.
    :param final_only_older_than_days: project-wide: runs older than this keep only the final one.
    :param delivery_timeout: accepted so DAGs written for earlier versions still parse; no effect now
        (each run's deletions are confirmed by their own request, bounded by ``request_timeout``).
    :param progress_every: log a progress line every this many runs.
    :param neptune_conn_id: the Neptune connection.
    :param project: ``workspace/project`` overriding the connection's.
    :param mode: client mode overriding the connection's; validated, but deletions are always sent
        synchronously by run id whatever the mode (an ``offline`` connection still needs its server).
    :returns: (XCom) runs_scanned, runs_with_checkpoints, runs_changed (runs losing a checkpoint),
        checkpoints_found/kept/deleted, bytes_freed, delete_fraction, requests (requests, 429s,
        retries spent), dry_run, and in a dry run the ``plan`` of the runs with deletions (and
        ``refused`` when a real run would refuse).
    """

    template_fields: Sequence[str] = (
        "namespace",
        "keep_top_k",
        "direction",
        "tags",
        "state",
        "query",
        "older_than_days",
        "is_dry_run",
        "max_delete_fraction",
        "keep_best_runs",
        "run_metric",
        "final_only_older_than_days",
        "project",
    )
    ui_color = "#f5dcc8"

    def __init__(
        self,
        *,
        namespace: str = "checkpoints",
        keep_top_k: int | str = 3,
        direction: str = "max",
        keep_last: bool = True,
        tags: Sequence[str] | str = (),
        state: str | None = None,
        query: str | None = None,
        older_than_days: float | str | None = None,
        dry_run: bool | str = False,
        max_delete_fraction: float | str = 0.5,
        keep_best_runs: int | str | None = None,
        run_metric: str | None = None,
        run_metric_direction: str | None = None,
        final_only_older_than_days: float | str | None = None,
        delivery_timeout: float = 300.0,
        progress_every: int = 100,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.namespace = namespace
        self.keep_top_k = keep_top_k
        self.direction = direction
        self.keep_last = keep_last
        self.tags = tags
        self.state = state
        self.query = query
        self.older_than_days = older_than_days
        # BaseOperator already has a dry_run() method; the flag lives under another attribute name.
        self.is_dry_run = dry_run
        self.max_delete_fraction = max_delete_fraction
        self.keep_best_runs = keep_best_runs
        self.run_metric = run_metric
        self.run_metric_direction = run_metric_direction
        self.final_only_older_than_days = final_only_older_than_days
        self.delivery_timeout = delivery_timeout
        self.progress_every = progress_every

    def _policy(self) -> RetentionPolicy:
        from airflow_provider_neptune.core.checkpoint_records import validate_direction
        from airflow_provider_neptune.core.rendered_values import (
            as_bool,
            as_optional_float,
            as_optional_int,
            as_optional_str,
        )
        from airflow_provider_neptune.core.retention_plan import RetentionPolicy

        direction = validate_direction(str(self.direction))
        keep_best_runs = as_optional_int("keep_best_runs", self.keep_best_runs, minimum=0)
        run_metric = as_optional_str(self.run_metric)
        if keep_best_runs is not None and run_metric is None:
            raise ValueError("keep_best_runs needs run_metric (the field that ranks the runs)")
        metric_direction: Direction = (
            validate_direction(str(self.run_metric_direction)) if self.run_metric_direction else direction
        )
        keep_top_k = as_optional_int("keep_top_k", self.keep_top_k, minimum=0)
        return RetentionPolicy(
            keep_top_k=3 if keep_top_k is None else keep_top_k,
            direction=direction,
            keep_last=as_bool("keep_last", self.keep_last),
            keep_best_runs=keep_best_runs,
            run_metric_direction=metric_direction,
            final_only_older_than_days=as_optional_float(
                "final_only_older_than_days", self.final_only_older_than_days
            ),
        )

    def _selection(self) -> dict[str, Any]:
        """``{"query": <NQL>}`` selecting the runs, built here with every value quoted (``{}``: all).

        The client's own ``tag=`` filter pastes tags into the query unescaped (a tag holding ``") OR
        ("`` would select every run), so tags and state always go through :mod:`..nql_text`. The user's
        ``query`` must be balanced so it stays one operand of the AND; the whole query is wrapped in
        parentheses because the client appends ``AND sys/trashed`` and paging conditions unbracketed.
        """
        from airflow_provider_neptune.core.rendered_values import as_optional_str
        from airflow_provider_neptune.hooks.nql_text import check_fragment, condition

        tags = normalize_tags(self.tags)
        state = as_optional_str(self.state)
        if state is not None and state not in ("active", "inactive"):
            raise ValueError(f"state must be 'active' or 'inactive', got {state!r}")
        query = as_optional_str(self.query)
        parts = [f"({check_fragment(query, 'query')})"] if query is not None else []
        parts += [condition("sys/tags", "stringSet", "CONTAINS", t, "tag") for t in tags]
        if state is not None:
            api_state = "running" if state == "active" else "idle"
            parts.append(condition("sys/state", "experimentState", "=", api_state, "state"))
        if not parts:
            return {}
        return {"query": "(" + " AND ".join(parts) + ")"}

    def execute(self, context: Context) -> dict[str, Any]:
        """Scan, plan, check the safety limit, then delete run by run (or only report in a dry run)."""
        from airflow_provider_neptune.core.checkpoint_records import validate_namespace
        from airflow_provider_neptune.core.rendered_values import as_bool, as_optional_float

        namespace = validate_namespace(str(self.namespace))
        policy = self._policy()
        dry_run = as_bool("dry_run", self.is_dry_run)
        max_fraction = as_optional_float("max_delete_fraction", self.max_delete_fraction)
        if max_fraction is None or not 0 <= max_fraction <= 1:
            raise ValueError(f"max_delete_fraction must be between 0 and 1, got {self.max_delete_fraction!r}")
        with self.closing_hook() as hook:
            return self._clean_up(hook, namespace, policy, dry_run, max_fraction)

    def _clean_up(
        self, hook: NeptuneHook, namespace: str, policy: RetentionPolicy, dry_run: bool, max_fraction: float
    ) -> dict[str, Any]:
        """Scan and plan; in a dry run report, else check the safety limit and delete."""
        from airflow_provider_neptune.core.rendered_values import as_optional_float, as_optional_str
        from airflow_provider_neptune.core.retention_plan import PlanBuilder
        from airflow_provider_neptune.core.retention_scan import scan_into
        from airflow_provider_neptune.hooks.run_edits import RunEditor

        requests_before = self.request_counters()
        now = datetime.now(UTC)
        older_than = as_optional_float("older_than_days", self.older_than_days)
        editor = RunEditor(hook)
        try:
            builder = PlanBuilder(policy, now=now)
            counts = scan_into(
                builder,
                editor.runs(self._selection().get("query"), progress_bar=_progress_bar_class(self.log)),
                namespace=namespace,
                created_before=now - timedelta(days=older_than) if older_than is not None else None,
                run_metric=as_optional_str(self.run_metric),
                progress_every=self.progress_every,
                task_log=self.log,
            )
            plan = builder.finish(runs_scanned=counts.runs_scanned)
            self._log_plan(plan, namespace, dry_run)
            refusal = plan.refusal(max_fraction)
            summary = plan.summary(include_plan=dry_run)
            summary.update(
                namespace=namespace,
                dry_run=dry_run,
                runs_matched=counts.runs_matched,
                runs_too_recent=counts.runs_too_recent,
            )
            if dry_run:
                if refusal:
                    summary["refused"] = refusal
                    self.log.warning("A real run would refuse this plan: %s", refusal)
                self.log.info("Dry run: nothing deleted")
                summary["bytes_freed"] = 0
                summary["bytes_to_free"] = plan.bytes_freed
                summary["checkpoints_to_delete"] = plan.checkpoints_deleted
                summary["checkpoints_deleted"] = 0
                summary["requests"] = self.requests_since(requests_before)
                return summary
            if refusal:
                raise NeptuneRetentionRefusedError(refusal)
            self._apply(editor, plan, namespace)
        finally:
            editor.close()
        summary["requests"] = self.requests_since(requests_before)
        self.log.info("Requests spent (shared budget): %s", summary["requests"])
        return summary

    def _log_plan(self, plan: RetentionPlan, namespace: str, dry_run: bool) -> None:
        verb = "would delete" if dry_run else "deletes"
        for run in plan.runs:
            if run.deleted:
                self.log.info(
                    "Run %s (%s): keeps %s; %s %s (%d bytes)",
                    run.run_id,
                    run.mode,
                    ", ".join(f"{k} [{why}]" for k, why in run.kept.items()),
                    verb,
                    ", ".join(run.deleted),
                    run.bytes_freed,
                )
        self.log.info(
            "Plan for %s/: %d runs scanned, %d with checkpoints; %d checkpoints found, %d kept, %d to "
            "delete (%.0f%%), %d bytes to free",
            namespace,
            plan.runs_scanned,
            plan.runs_with_checkpoints,
            plan.checkpoints_found,
            plan.checkpoints_kept,
            plan.checkpoints_deleted,
            plan.delete_fraction * 100,
            plan.bytes_freed,
        )

    def _apply(self, editor: RunEditor, plan: RetentionPlan, namespace: str) -> None:
        """Delete each changed run's entries in one request by the run's id (no run is opened).

        The server confirms each request before the next: a failure leaves the runs before it done,
        the run it hit either untouched or (on a server applying a batch one edit after the other)
        with a remnant the next clean-up finishes, and the runs after it untouched.
        """
        from airflow_provider_neptune.core.checkpoint_store import deletion_edits
        from airflow_provider_neptune.exceptions import NeptuneProviderError, NeptuneRunNotFoundError

        todo = plan.runs
        freed = 0
        for index, run_plan in enumerate(todo, start=1):
            edits = deletion_edits(namespace, zip(run_plan.deleted, run_plan.deleted_fields, strict=True))
            try:
                errors = editor.edit(run_plan.internal_id, edits)
            except NeptuneRunNotFoundError:
                self.log.warning(
                    "[%d/%d] run %s no longer exists; skipped", index, len(todo), run_plan.run_id
                )
                continue
            if errors:
                raise NeptuneProviderError(
                    f"The server refused {len(errors)} deletion(s) in run {run_plan.run_id}: "
                    + "; ".join(errors[:5])
                    + (f"; and {len(errors) - 5} more" if len(errors) > 5 else "")
                    + ". The next clean-up retries them."
                )
            freed += run_plan.bytes_freed
            self.log.info(
                "[%d/%d] run %s: deleted %d checkpoint(s), %d bytes freed (%d so far)",
                index,
                len(todo),
                run_plan.run_id,
                len(run_plan.deleted),
                run_plan.bytes_freed,
                freed,
            )
        self.log.info(
            "Clean-up done: %d checkpoints deleted in %d runs, %d bytes freed",
            plan.checkpoints_deleted,
            len(todo),
            freed,
        )


def _progress_bar_class(logger: Any) -> type:
    """A neptune progress-bar callback that writes the table fetch's page progress to the task log."""
    from neptune.typing import ProgressBarCallback

    class _LogProgress(ProgressBarCallback):
        """Logs ``done/total runs`` for every page the client fetches."""

        def __init__(self, *, description: str | None = None, **_: Any) -> None:
            super().__init__()
            self._description = description or "Fetching runs"
            self._done = 0
            self._total: int | None = None

        def update(self, *, by: int, total: int | None = None) -> None:
            """Called by the client after each page."""
            if total is not None:
                self._total = total
            self._done += by
            if by:
                logger.info("%s: %d/%s runs", self._description, self._done, self._total or "?")

        def __enter__(self) -> _LogProgress:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

    return _LogProgress
