"""triggers/usage.py: serialization without the key, polling off the event loop, errors as events."""

from __future__ import annotations

import asyncio
import json

from conftest import DAY, NOW, SENTINEL_KEY

from airflow_provider_openai_usage.triggers.usage import OpenAIUsageTrigger

DAY_START = NOW - DAY


def test_trigger_serializes_to_plain_kwargs_without_the_key(fake_api, conn_id):
    trigger = OpenAIUsageTrigger(
        openai_usage_conn_id=conn_id, endpoint="completions", start_time=DAY_START, end_time=NOW,
        group_by=["model"], filters={"batch": False, "project_ids": ["proj_alpha"]}, stable_polls=2, deadline=123.0,
    )
    classpath, kwargs = trigger.serialize()
    text = json.dumps(kwargs)
    assert SENTINEL_KEY not in text and SENTINEL_KEY not in classpath
    module, name = classpath.rsplit(".", 1)
    rebuilt = getattr(__import__(module, fromlist=[name]), name)(**json.loads(text))
    assert rebuilt.serialize() == (classpath, kwargs)


def test_trigger_polls_in_a_thread_and_never_blocks_the_event_loop(fake_api, conn_id):
    fake_api.controls.latency = 0.3
    trigger = OpenAIUsageTrigger(openai_usage_conn_id=conn_id, endpoint="costs", start_time=DAY_START, end_time=NOW, settle_period_seconds=0)

    async def main() -> tuple[dict, int]:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        event = await trigger.run().__anext__()
        done.set()
        await task
        return event.payload, ticks

    payload, ticks = asyncio.run(main())
    assert payload["status"] == "success" and payload["summary"]["buckets"] == 1
    assert ticks >= 10, "the loop kept running while the 0.3 s request was in flight"


def test_trigger_reports_validation_errors_as_error_events(fake_api, conn_id):
    trigger = OpenAIUsageTrigger(openai_usage_conn_id=conn_id, endpoint="costs", start_time=DAY_START, end_time=NOW, bucket_width="1h")

    async def first() -> dict:
        return (await trigger.run().__anext__()).payload

    payload = asyncio.run(first())
    assert payload["status"] == "error" and "bucket_width='1h'" in payload["message"]
    assert fake_api.requests == []
