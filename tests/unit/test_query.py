"""query.py: every refusal happens before any request and names the parameter, the value and the fix."""

from __future__ import annotations

import pytest
from conftest import DAY, NOW

from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError
from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook
from airflow_provider_openai_usage.query import UsageQuery

T0 = NOW - 7 * DAY  # 2025-11-03T00:00:00Z


def test_milliseconds_through_the_hook_send_no_request(fake_api, conn_id):
    hook = OpenAIUsageHook(conn_id)
    with pytest.raises(OpenAIUsageValidationError, match=r"end_time=\d+ looks like epoch milliseconds"):
        list(hook.iter_rows("costs", T0, NOW * 1000))
    with pytest.raises(OpenAIUsageValidationError, match=r"start_time=\d+ looks like epoch milliseconds"):
        list(hook.iter_rows("costs", T0 * 1000, NOW * 1000))
    assert fake_api.requests == []


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"filters": ["project_ids"]}, r"filters=\['project_ids'\] must be a mapping of filter name to value"),
        ({"filters": {"project_ids": 5}}, r"filter project_ids=5 must be a non-empty list of non-empty strings"),
        ({"filters": {"bogus": None}}, r"filter 'bogus' is not accepted by endpoint 'costs'"),
        ({"bucket_width": "1h"}, r"bucket_width='1h' is not allowed for endpoint 'costs'; allowed: 1d"),
        ({"group_by": "model"}, r"group_by value 'model' is not allowed for endpoint 'costs'"),
        ({"group_by": {"project_id"}}, r"group_by=\{'project_id'\} must be a list of field names"),
    ],
)
def test_build_refuses_shapes_naming_the_parameter(kwargs, fragment):
    with pytest.raises(OpenAIUsageValidationError, match=fragment):
        UsageQuery.build("costs", T0, NOW, **kwargs)


def test_a_filter_left_out_with_none_still_has_its_name_checked():
    assert UsageQuery.build("completions", T0, NOW, filters={"models": None}).filters == ()
    with pytest.raises(OpenAIUsageValidationError, match="filter 'modles' is not accepted"):
        UsageQuery.build("completions", T0, NOW, filters={"modles": None})
