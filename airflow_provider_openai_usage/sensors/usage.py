"""Sensors that wait until a range's usage is reported and settled, in poke, reschedule or deferrable mode.

``OpenAIUsageSensor(endpoint=...)`` does the work; the per-endpoint classes only fix ``endpoint``.
Poke/reschedule and the trigger call the same ``settlement.check_settled``, so the modes cannot
disagree about what "settled" means.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue, conf

from airflow_provider_openai_usage.exceptions import OpenAIUsageError, OpenAIUsageValidationError
from airflow_provider_openai_usage.task_range import UsageRangeTask

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_openai_usage.query import UsageQuery
    from airflow_provider_openai_usage.settlement import SettleResult, SettleRules, StabilityState

#: Costs and daily usage are typically final within the hour after a UTC day closes.
DEFAULT_SETTLE_PERIOD = dt.timedelta(hours=1)


class OpenAIUsageSensor(UsageRangeTask, BaseSensorOperator):
    """Wait until [start_time, end_time) of an endpoint is fully reported and no longer changing.

    :param endpoint: a registry key (``completions``, ..., ``costs``).
    :param openai_usage_conn_id: the ``openai_usage`` connection.
    :param start_time: default the run's ``data_interval_start``.
    :param end_time: default the run's ``data_interval_end``.
    :param bucket_width: ``1d`` (default), ``1h`` or ``1m``.
    :param group_by: grouping checked for stability (as the operator will pull it).
    :param filters: the API's filters.
    :param settle_period: how long after the range ends to wait at least (default 1 hour).
    :param require_results: also wait for at least one result (costs: a non-zero amount).
    :param stable_polls: wait until the results were identical on this many consecutive polls.
    :param deferrable: hand the waiting to ``OpenAIUsageTrigger`` (default from
        ``[operators] default_deferrable``).
    """

    template_fields: Sequence[str] = ("start_time", "end_time", "bucket_width", "group_by", "filters", "openai_usage_conn_id")
    ui_color = "#c7f0e2"

    def __init__(
        self,
        *,
        endpoint: str | None = None,
        openai_usage_conn_id: str = "openai_usage_default",
        start_time: Any = None,
        end_time: Any = None,
        bucket_width: str = "1d",
        group_by: Sequence[str] | None = None,
        filters: Mapping[str, Any] | None = None,
        settle_period: dt.timedelta = DEFAULT_SETTLE_PERIOD,
        require_results: bool = False,
        stable_polls: int = 1,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        endpoint = self.resolve_endpoint(endpoint)
        if not isinstance(settle_period, dt.timedelta) or settle_period < dt.timedelta(0):
            raise OpenAIUsageValidationError(f"settle_period={settle_period!r} must be a timedelta >= 0")
        if not isinstance(stable_polls, int) or isinstance(stable_polls, bool) or stable_polls < 1:
            raise OpenAIUsageValidationError(f"stable_polls={stable_polls!r} must be an int >= 1")
        if not isinstance(require_results, bool):
            raise OpenAIUsageValidationError(f"require_results={require_results!r} must be True or False")
        super().__init__(**kwargs)
        if self.mode == "reschedule" and stable_polls > 1 and not deferrable:
            # Airflow clears a task's XComs on every reschedule, so nothing can remember earlier polls.
            raise OpenAIUsageValidationError(
                f"stable_polls={stable_polls} needs memory across polls, which mode='reschedule' does not have; "
                "use deferrable=True (frees the worker slot too) or mode='poke'"
            )
        self.keep_range_parameters(endpoint, openai_usage_conn_id, start_time, end_time, bucket_width, group_by, filters)
        self.settle_period = settle_period
        self.require_results = require_results
        self.stable_polls = stable_polls
        self.deferrable = deferrable
        self._stability: StabilityState | None = None
        self.check_literal_parameters()  # at DAG parse time, so list-import-errors names a bad one

    def _rules(self) -> SettleRules:
        from airflow_provider_openai_usage.settlement import SettleRules

        return SettleRules(self.settle_period.total_seconds(), self.require_results, self.stable_polls)

    def _poll(self, query: UsageQuery, state: StabilityState) -> SettleResult:
        from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook
        from airflow_provider_openai_usage.settlement import check_settled

        hook = OpenAIUsageHook(self.openai_usage_conn_id)
        try:
            result = check_settled(hook, query, self._rules(), now=time.time(), state=state)
        finally:
            hook.close()
        self.log.info("%s", result.reason)
        return result

    def execute(self, context: Context) -> dict[str, Any] | None:
        if not self.deferrable:
            return super().execute(context)
        from airflow_provider_openai_usage.settlement import StabilityState
        from airflow_provider_openai_usage.triggers.usage import OpenAIUsageTrigger

        query = self.build_query(context)  # validation errors fail the task before deferring
        # Check once before deferring: history (backfills) is usually settled already, and deferring
        # a task whose trigger fires at once races the scheduler ("finished with state success, but
        # the task instance's state attribute is queued", seen with LocalExecutor).
        first = self._poll(query, StabilityState())
        if first.settled:
            return first.summary
        rules = self._rules()
        self.defer(
            trigger=OpenAIUsageTrigger(
                openai_usage_conn_id=self.openai_usage_conn_id,
                endpoint=self.endpoint,
                start_time=query.start_time,
                end_time=query.end_time,
                bucket_width=query.bucket_width,
                group_by=list(query.group_by) or None,
                filters={k: (list(v) if isinstance(v, tuple) else v) for k, v in query.filters} or None,
                settle_period_seconds=rules.settle_period_seconds,
                require_results=rules.require_results,
                stable_polls=rules.stable_polls,
                poll_interval=float(self.poke_interval),
                deadline=time.time() + float(self.timeout),
                stability_fingerprint=first.state.fingerprint,
                stability_streak=first.state.streak,
                initial_delay=float(self.poke_interval),
            ),
            method_name="execute_complete",
            timeout=dt.timedelta(seconds=float(self.timeout)),
        )

    def poke(self, context: Context) -> PokeReturnValue:
        from airflow_provider_openai_usage.settlement import StabilityState

        result = self._poll(self.build_query(context), self._stability or StabilityState())
        self._stability = result.state
        return PokeReturnValue(is_done=result.settled, xcom_value=result.summary if result.settled else None)

    def execute_complete(self, context: Context, event: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        if not event:
            raise OpenAIUsageError("the trigger ended without an event")
        if event.get("status") == "success":
            self.log.info("%s", event.get("message"))
            return event.get("summary")
        if event.get("status") == "timeout":
            from airflow.sdk.exceptions import AirflowSensorTimeout

            raise AirflowSensorTimeout(f"{self.task_id}: timed out after {self.timeout}s waiting for settled usage; {event.get('message')}")
        raise OpenAIUsageError(f"{self.task_id}: {event.get('message')}")


class OpenAICompletionsUsageSensor(OpenAIUsageSensor):
    """Waits for settled completions usage (``/organization/usage/completions``)."""

    endpoint_key = "completions"


class OpenAIEmbeddingsUsageSensor(OpenAIUsageSensor):
    """Waits for settled embeddings usage (``/organization/usage/embeddings``)."""

    endpoint_key = "embeddings"


class OpenAIModerationsUsageSensor(OpenAIUsageSensor):
    """Waits for settled moderations usage (``/organization/usage/moderations``)."""

    endpoint_key = "moderations"


class OpenAIImagesUsageSensor(OpenAIUsageSensor):
    """Waits for settled images usage (``/organization/usage/images``)."""

    endpoint_key = "images"


class OpenAIAudioSpeechesUsageSensor(OpenAIUsageSensor):
    """Waits for settled text-to-speech usage (``/organization/usage/audio_speeches``)."""

    endpoint_key = "audio_speeches"


class OpenAIAudioTranscriptionsUsageSensor(OpenAIUsageSensor):
    """Waits for settled transcription usage (``/organization/usage/audio_transcriptions``)."""

    endpoint_key = "audio_transcriptions"


class OpenAIVectorStoresUsageSensor(OpenAIUsageSensor):
    """Waits for settled vector store usage (``/organization/usage/vector_stores``)."""

    endpoint_key = "vector_stores"


class OpenAICodeInterpreterSessionsUsageSensor(OpenAIUsageSensor):
    """Waits for settled code interpreter sessions (``/organization/usage/code_interpreter_sessions``)."""

    endpoint_key = "code_interpreter_sessions"


class OpenAIFileSearchCallsUsageSensor(OpenAIUsageSensor):
    """Waits for settled file search calls (``/organization/usage/file_search_calls``)."""

    endpoint_key = "file_search_calls"


class OpenAIWebSearchCallsUsageSensor(OpenAIUsageSensor):
    """Waits for settled web search calls (``/organization/usage/web_search_calls``)."""

    endpoint_key = "web_search_calls"


class OpenAICostsSensor(OpenAIUsageSensor):
    """Waits for settled costs (``/organization/costs``)."""

    endpoint_key = "costs"


class OpenAIDecisionsUsageSensor(OpenAIUsageSensor):
    """Waits for settled Decisions API usage (``/organization/usage/decisions``)."""

    endpoint_key = "decisions"
