"""Trigger behind the deferrable Neptune sensors: polls a run condition without blocking the event loop.

Every hook call (connection lookup, HTTP reads) runs in a worker thread through ``asyncio.to_thread``,
so a slow or throttled server never stalls the triggerer's other triggers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

if TYPE_CHECKING:
    from airflow_provider_neptune.core.run_conditions import Outcome
    from airflow_provider_neptune.hooks.neptune import NeptuneHook

# run_conditions (worker-side core) is imported where it is used: the provider metadata lists this
# module, so Airflow may import it outside a task, where core/ must not be loaded.


class NeptuneConditionTrigger(BaseTrigger):
    """Poll a serialized run condition (see ``run_conditions``) until it is met or can never be met.

    :param condition: the condition as returned by ``MetricCondition.to_dict()`` / ``RunCondition.to_dict()``.
    :param neptune_conn_id: Airflow connection of type ``neptune``.
    :param project: Neptune project ``workspace/name``; overrides the connection's.
    :param poke_interval: seconds between two evaluations.
    """

    def __init__(
        self,
        condition: dict[str, Any],
        neptune_conn_id: str = "neptune_default",
        project: str | None = None,
        poke_interval: float = 30.0,
    ) -> None:
        from airflow_provider_neptune.core.run_conditions import condition_from_dict

        super().__init__()
        condition_from_dict(condition)  # fail at defer time, not in the triggerer, on a bad condition
        self.condition = dict(condition)
        self.neptune_conn_id = neptune_conn_id
        self.project = project
        self.poke_interval = float(poke_interval)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the class path and the kwargs that rebuild this trigger in the triggerer."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "condition": dict(self.condition),
                "neptune_conn_id": self.neptune_conn_id,
                "project": self.project,
                "poke_interval": self.poke_interval,
            },
        )

    def _make_hook(self) -> NeptuneHook:
        """The read-only hook, built the one way operators and sensors build theirs."""
        from airflow_provider_neptune.operators.base import build_hook

        return build_hook(self.neptune_conn_id, self.project, "read-only")

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Evaluate the condition every ``poke_interval`` seconds; yield one event when it settles."""
        from airflow_provider_neptune.core.run_conditions import condition_from_dict

        condition = condition_from_dict(self.condition)
        hook: NeptuneHook | None = None
        try:
            hook = reader = await asyncio.to_thread(self._make_hook)
            while True:
                outcome: Outcome = await asyncio.to_thread(condition.evaluate, reader)
                if outcome.status != "waiting":
                    yield TriggerEvent(outcome.to_event())
                    return
                self.log.info("%s; next check in %ss", outcome.message, self.poke_interval)
                await asyncio.sleep(self.poke_interval)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            yield TriggerEvent({"status": "error", "message": f"{type(exc).__name__}: {exc}"})
        finally:
            if hook is not None:
                await asyncio.to_thread(hook.close)
