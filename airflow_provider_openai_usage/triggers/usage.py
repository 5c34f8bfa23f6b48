"""OpenAIUsageTrigger: waits in the triggerer until a range's usage is settled.

The HTTP client is blocking (requests), so each poll runs in a worker thread
(``asyncio.to_thread``) and the triggerer's event loop is never blocked. The trigger carries its
own deadline: ``airflow dags test`` does not enforce ``defer(timeout=...)``, so the trigger fires a
timeout event itself. It serializes the connection id, never the key.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_openai_usage.exceptions import OpenAIUsageAuthError, OpenAIUsageValidationError


class OpenAIUsageTrigger(BaseTrigger):
    def __init__(
        self,
        *,
        openai_usage_conn_id: str,
        endpoint: str,
        start_time: int,
        end_time: int,
        bucket_width: str = "1d",
        group_by: Sequence[str] | None = None,
        filters: Mapping[str, Any] | None = None,
        settle_period_seconds: float = 3600.0,
        require_results: bool = False,
        stable_polls: int = 1,
        poll_interval: float = 300.0,
        deadline: float | None = None,
        stability_fingerprint: str | None = None,
        stability_streak: int = 0,
        initial_delay: float = 0.0,
    ) -> None:
        super().__init__()
        self.openai_usage_conn_id = openai_usage_conn_id
        self.endpoint = endpoint
        self.start_time = int(start_time)
        self.end_time = int(end_time)
        self.bucket_width = bucket_width
        self.group_by = list(group_by) if group_by else None
        self.filters = dict(filters) if filters else None
        self.settle_period_seconds = float(settle_period_seconds)
        self.require_results = bool(require_results)
        self.stable_polls = int(stable_polls)
        self.poll_interval = float(poll_interval)
        self.deadline = deadline
        # What the sensor's own poll saw just before deferring: stability counts on from there.
        self.stability_fingerprint = stability_fingerprint
        self.stability_streak = int(stability_streak)
        self.initial_delay = float(initial_delay)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "openai_usage_conn_id": self.openai_usage_conn_id,
                "endpoint": self.endpoint,
                "start_time": self.start_time,
                "end_time": self.end_time,
                "bucket_width": self.bucket_width,
                "group_by": self.group_by,
                "filters": self.filters,
                "settle_period_seconds": self.settle_period_seconds,
                "require_results": self.require_results,
                "stable_polls": self.stable_polls,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "stability_fingerprint": self.stability_fingerprint,
                "stability_streak": self.stability_streak,
                "initial_delay": self.initial_delay,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook
        from airflow_provider_openai_usage.query import UsageQuery
        from airflow_provider_openai_usage.settlement import SettleRules, StabilityState, check_settled

        state = StabilityState(self.stability_fingerprint, self.stability_streak)
        polls = 0
        hook = None
        try:
            query = UsageQuery.build(
                self.endpoint, self.start_time, self.end_time, bucket_width=self.bucket_width, group_by=self.group_by, filters=self.filters
            )
            rules = SettleRules(self.settle_period_seconds, self.require_results, self.stable_polls)
            connection = await OpenAIUsageHook.aget_connection(self.openai_usage_conn_id)
            hook = OpenAIUsageHook(self.openai_usage_conn_id, connection=connection)
            if self.initial_delay > 0:
                remaining = None if self.deadline is None else max(0.0, self.deadline - time.time())
                await asyncio.sleep(self.initial_delay if remaining is None else min(self.initial_delay, remaining))
            while True:
                polls += 1
                result = await asyncio.to_thread(check_settled, hook, query, rules, now=time.time(), state=state)
                state = result.state
                self.log.info("poll %d: %s", polls, result.reason)
                if result.settled:
                    yield TriggerEvent({"status": "success", "message": result.reason, "summary": result.summary, "polls": polls})
                    return
                remaining = None if self.deadline is None else self.deadline - time.time()
                if remaining is not None and remaining <= 0:
                    yield TriggerEvent(
                        {
                            "status": "timeout",
                            "message": f"gave up after {polls} polls: {result.reason}",
                            "summary": result.summary,
                            "polls": polls,
                        }
                    )
                    return
                await asyncio.sleep(self.poll_interval if remaining is None else min(self.poll_interval, remaining))
        except (OpenAIUsageAuthError, OpenAIUsageValidationError) as exc:
            yield TriggerEvent({"status": "error", "message": str(exc), "polls": polls})
        except Exception as exc:  # the sensor turns this into a task failure with the message
            yield TriggerEvent({"status": "error", "message": f"{type(exc).__name__}: {exc}", "polls": polls})
        finally:
            if hook is not None:
                hook.close()  # the triggerer is long-lived: give the pooled connections back
