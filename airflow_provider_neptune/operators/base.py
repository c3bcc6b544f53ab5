"""NeptuneBaseOperator: the connection, the one cached hook, its close policy and request counts.

Cheap at DAG parse time: neither ``neptune`` nor the worker-side core is imported here; the hook is
built on the worker, on first use.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_neptune.exceptions import NeptuneSettingsError
from airflow_provider_neptune.hooks.server_rules import REQUEST_KEYS, counter_delta

if TYPE_CHECKING:
    from airflow_provider_neptune.hooks.neptune import NeptuneHook

DEFAULT_CONN_ID = "neptune_default"


def build_hook(neptune_conn_id: str, project: Any = None, mode: Any = None) -> NeptuneHook:
    """The one way the provider's Airflow classes build a hook.

    Templated ``project``/``mode`` may render to ``""`` or ``"None"`` when not set: both then fall back
    to the connection (and NEPTUNE_* variables), like None.
    """
    from airflow_provider_neptune.hooks.neptune import NeptuneHook
    from airflow_provider_neptune.operators.rendered_values import as_optional_str

    return NeptuneHook(neptune_conn_id, project=as_optional_str(project), mode=as_optional_str(mode))


def normalize_tags(tags: Any, *, where: str = "tags") -> list[str]:
    """Tags as a list: a string is ONE tag, a list/tuple/set holds several; None or ``()`` is none.

    Neptune tags may contain commas, so a string is never split. Blank tags are dropped, duplicates
    kept once (first occurrence). Any other type raises NeptuneSettingsError naming ``where``.
    """
    if tags is None:
        return []
    if isinstance(tags, str):
        items: list[Any] = [tags]
    elif isinstance(tags, list | tuple | set | frozenset):
        items = sorted(tags, key=str) if isinstance(tags, set | frozenset) else list(tags)
    else:
        raise NeptuneSettingsError(
            where, tags, f"must be a string (one tag) or a list of strings, not {type(tags).__name__}"
        )
    result: list[str] = []
    for tag in items:
        if not isinstance(tag, str | int | float) or isinstance(tag, bool):
            raise NeptuneSettingsError(where, tags, f"tag {tag!r} is a {type(tag).__name__}, not a string")
        text = str(tag)
        if text.strip() and text not in result:
            result.append(text)
    return result


class NeptuneHookMixin:
    """One cached hook per task instance, closed once the task is done, and its request counts.

    Close policy: :meth:`closing_hook` closes the hook when ``execute`` leaves (success, failure or
    deferral) and :meth:`on_kill` closes it too. Closing stops the *idle* pooled run handles of the
    hook's server, token and project, draining their queues within the pool's time bound: each task
    runs in its own process, so a handle left open could only be reused by nothing and would be
    stopped at interpreter exit, unbounded by the task's timeout and outside its log. Handles still in
    use (another thread of the task) are left to that user.
    """

    neptune_conn_id: str
    project: str | None

    def _hook_mode(self) -> str | None:
        """The client mode the hook is built with (None: the connection's)."""
        return None

    def make_hook(self) -> NeptuneHook:
        """Build a new hook on the task's connection, project and mode (use :attr:`hook` instead)."""
        return build_hook(self.neptune_conn_id, self.project, self._hook_mode())

    @cached_property
    def hook(self) -> NeptuneHook:
        """The Neptune hook of this task (built by :meth:`make_hook` on first use, on the worker; cached)."""
        return self.make_hook()

    def close_hook(self) -> None:
        """Close the hook if this task built one (see the close policy in the class docstring)."""
        hook = self.__dict__.get("hook")
        if hook is not None:
            hook.close()

    @contextmanager
    def closing_hook(self) -> Iterator[NeptuneHook]:
        """Yield :attr:`hook` and close it on the way out, however the block ends."""
        try:
            yield self.hook
        finally:
            self.close_hook()

    def request_counters(self) -> dict[str, int]:
        """Snapshot of the hook's counters, to pass to :meth:`requests_since` later."""
        return self.hook.counters

    def requests_since(self, before: dict[str, int]) -> dict[str, int]:
        """Requests, 429 answers and retries this process sent to the hook's server since ``before``."""
        return counter_delta(before, self.hook.counters, REQUEST_KEYS)

    def on_kill(self) -> None:
        """Close the hook when the task is killed, so idle run handles are stopped within a bound."""
        self.close_hook()


class NeptuneBaseOperator(NeptuneHookMixin, BaseOperator):
    """Base of the provider's operators: connection, project and client mode, one hook, one close policy.

    :param neptune_conn_id: Airflow connection of type ``neptune`` (token in the password); without
        such a connection ``neptune_default`` falls back to the NEPTUNE_* environment variables.
    :param project: Neptune project ``workspace/name`` (templated where the operator lists it);
        overrides the connection's. ``None``, ``""`` or ``"None"`` mean the connection's.
    :param mode: neptune client mode (``async``, ``sync``, ``offline``, ``read-only``, ``debug``);
        overrides the connection's. ``None``, ``""`` or ``"None"`` mean the connection's. Operators
        that accept only some modes say so and fail naming the mode otherwise.
    """

    def __init__(
        self,
        *,
        neptune_conn_id: str = DEFAULT_CONN_ID,
        project: str | None = None,
        mode: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.neptune_conn_id = neptune_conn_id
        self.project = project
        self.mode = mode

    def _hook_mode(self) -> str | None:
        """The operator's ``mode`` argument (None: the connection's)."""
        return self.mode
