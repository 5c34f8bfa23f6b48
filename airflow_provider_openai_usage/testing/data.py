"""Deterministic synthetic usage for the fake API: events per day, aggregated on demand.

Usage is generated as a handful of seeded *events* per endpoint and UTC day, each carrying a value
for every dimension and every metric. A query filters the events, cuts them into buckets of the
requested width and sums them per group. Because every answer is a sum over the same events, any
grouping or width sums to the ungrouped totals, exactly as OpenAI promises.

Only synthetic-data choices live here (which models, how many tokens); every API fact (dimensions,
metrics, filters, enums) is read from the endpoint registry.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any

from airflow_provider_openai_usage.endpoints import ENDPOINTS, Endpoint
from airflow_provider_openai_usage.times import DAY, day_start

#: Which models a synthetic organization uses per endpoint (data, not API facts).
DEFAULT_MODELS: Mapping[str, tuple[str, ...]] = {
    "completions": ("gpt-4o-2024-08-06", "gpt-4o-mini-2024-07-18", "o3-2025-04-16"),
    "embeddings": ("text-embedding-3-small", "text-embedding-3-large"),
    "moderations": ("omni-moderation-latest",),
    "images": ("gpt-image-1", "dall-e-3"),
    "audio_speeches": ("gpt-4o-mini-tts", "tts-1"),
    "audio_transcriptions": ("gpt-4o-transcribe", "whisper-1"),
    "web_search_calls": ("gpt-4o-2024-08-06", "gpt-4.1-2025-04-14"),
    "decisions": ("gpt-5-2025-08-07", "gpt-5-mini-2025-08-07"),
}
GENERIC_MODELS = ("gpt-4o-2024-08-06",)


#: Project ids a synthetic organization draws from (``serve --projects N`` takes the first N).
PROJECT_POOL = (
    "proj_alpha", "proj_beta", "proj_gamma", "proj_delta", "proj_epsilon", "proj_zeta", "proj_eta", "proj_theta", "proj_iota", "proj_kappa",
)


@dataclass(frozen=True)
class FakeOrganization:
    """Who uses the synthetic organization: the pools dimension values are drawn from."""

    seed: int = 0
    projects: tuple[str, ...] = ("proj_alpha", "proj_beta", "proj_gamma")
    users: tuple[str, ...] = ("user-ada", "user-grace", "user-alan", "user-linus")
    api_keys: tuple[str, ...] = ("key_ci", "key_prod", "key_notebook")
    vector_stores: tuple[str, ...] = ("vs_docs", "vs_tickets")
    service_tiers: tuple[str, ...] = ("default", "flex", "priority")
    #: (endpoint key, models) pairs; a tuple so the organization stays hashable (it keys a cache).
    models: tuple[tuple[str, tuple[str, ...]], ...] = tuple(DEFAULT_MODELS.items())

    def models_for(self, endpoint_key: str) -> tuple[str, ...]:
        return dict(self.models).get(endpoint_key, GENERIC_MODELS)
    #: Mean events per endpoint and day; roughly one day in ten has none (empty buckets).
    events_per_day: int = 12
    #: Ids the usage carries that the directory (testing/admin.py) no longer knows, as in real life:
    #: a key deleted since it was used, a user removed from the organization.
    deleted_api_keys: tuple[str, ...] = ("key_notebook",)
    removed_users: tuple[str, ...] = ("user-linus",)
    #: A spend spike for demos of alerts: (project id, UTC day start, extra events that day).
    spike: tuple[str, int, int] | None = None
    #: What every costs result carries as ``organization_id`` (the live API always sends it, issue #25).
    organization_id: str = "org-FakeUsage7Fk3bQz9Mn2Lp5"
    #: Which of several organizations one fake serves this is (``numbered``). Above 1 it salts every
    #: seeded draw and tags the directory's own ids and project names (testing/admin.py), so two
    #: organizations never share an id, a name or an amount even with the same ``seed``; 1 leaves
    #: everything as a lone organization has it.
    number: int = 1

    def user_email(self, user_id: str) -> str:
        """The ``user_email`` costs results grouped by ``user_id`` carry (issue #25)."""
        return user_id.removeprefix("user-") + "@example.com"

    @property
    def salt(self) -> str:
        """What seeded draws hash: the seed, plus the number beyond the first organization (the
        first one's data stays what it always was)."""
        return str(self.seed) if self.number == 1 else f"{self.seed}.{self.number}"

    @classmethod
    def numbered(cls, number: int, *, seed: int | None = None, projects: int = 3) -> FakeOrganization:
        """The ``number``-th of several organizations served together, clearly apart from the others.

        1 is the default organization (``FakeOrganization(seed=seed)``). Every other one gets its own
        ``organization_id``, seed (default ``number - 1``) and ids: ``proj_alpha_2``, ``user-ada-2``,
        ``key_ci_2``, ``vs_docs_2``... (real project, user and key ids are unique across organizations,
        so a lake holding both never joins one organization's rows to the other's directory).
        ``projects`` takes that many ids from ``PROJECT_POOL``, as ``serve --projects`` does.
        """
        if number < 1:
            raise ValueError(f"number={number}: organizations are numbered from 1")
        if not 1 <= projects <= len(PROJECT_POOL):
            raise ValueError(f"projects={projects}: between 1 and {len(PROJECT_POOL)}")
        seed = number - 1 if seed is None else seed
        if number == 1:
            return cls(seed=seed, projects=PROJECT_POOL[:projects])
        base = cls()

        def tagged(ids: tuple[str, ...], sep: str = "_") -> tuple[str, ...]:
            return tuple(f"{i}{sep}{number}" for i in ids)

        return cls(
            seed=seed,
            projects=tagged(PROJECT_POOL[:projects]),
            users=tagged(base.users, "-"),
            api_keys=tagged(base.api_keys),
            vector_stores=tagged(base.vector_stores),
            deleted_api_keys=tagged(base.deleted_api_keys),
            removed_users=tagged(base.removed_users, "-"),
            organization_id=numbered_organization_id(number),
            number=number,
        )


def numbered_organization_id(number: int) -> str:
    """``org-FakeUsage`` + the number + seeded letters and digits, 24 after ``org-`` like OpenAI's
    (the first organization keeps its historical ``org-FakeUsage7Fk3bQz9Mn2Lp5``)."""
    if number == 1:
        return FakeOrganization.organization_id
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
    digest = hashlib.sha256(f"fake-organization:{number}".encode()).digest()
    head = f"FakeUsage{number}"
    return "org-" + head + "".join(alphabet[b % len(alphabet)] for b in digest)[: max(24 - len(head), 4)]


def parse_spike(text: str) -> tuple[str, int, int]:
    """``proj_beta:2025-11-09:40`` → (project, UTC day start, extra events), for ``FakeOrganization.spike``."""
    import datetime as dt

    try:
        project, day, events = text.rsplit(":", 2)
        start = day_start(dt.date.fromisoformat(day))
        return project, start, int(events)
    except ValueError:
        raise ValueError(f"spike={text!r} must look like PROJECT:YYYY-MM-DD:EVENTS, e.g. proj_beta:2025-11-09:40") from None


@dataclass(frozen=True)
class Event:
    minute: int  # Unix seconds of the minute the usage happened in
    dims: tuple[tuple[str, Any], ...]
    metrics: tuple[tuple[str, Any], ...]


def _line_items(org: FakeOrganization) -> list[tuple[str, str]]:
    """Costs line items, shaped like the ones third-party fixtures show ("<model>, input")."""
    items = []
    for model in org.models_for("completions"):
        items += [(f"{model}, input", "tokens"), (f"{model}, output", "tokens")]
    items += [("web search tool calls", "1000_tokens"), ("vector store storage", "gibibyte_hours")]
    return items


def _dimension_pool(org: FakeOrganization, endpoint: Endpoint, dimension: str) -> Sequence[Any]:
    for f in endpoint.filters:
        if f.dimension == dimension and f.enum:
            return f.enum
    column = endpoint.column(dimension)
    if column.enum:
        return column.enum
    pools: dict[str, Sequence[Any]] = {
        "project_id": org.projects,
        "user_id": org.users,
        "api_key_id": org.api_keys,
        "vector_store_id": org.vector_stores,
        "service_tier": org.service_tiers,
        "batch": (False, True),
        "model": org.models_for(endpoint.key),
        "line_item": [name for name, _unit in _line_items(org)],
    }
    return pools[dimension]


def _metrics(endpoint: Endpoint, rng: random.Random, dims: Mapping[str, Any], org: FakeOrganization) -> dict[str, Any]:
    """Realistic metric values; completions keep the spec's token identities."""
    names = [c.name for c in endpoint.values]  # a list: set order changes per process (PYTHONHASHSEED)
    out: dict[str, Any] = {}
    if "input_cached_tokens" in names:
        text, audio, image = rng.randint(200, 40000), rng.choice((0, 0, rng.randint(10, 900))), rng.choice((0, rng.randint(50, 3000)))
        c_text, c_audio, c_image = rng.randint(0, text), rng.choice((0, audio // 2)), rng.choice((0, image // 3))
        write = rng.randint(0, 2000)
        o_text = rng.randint(20, 8000)
        o_audio = rng.choice((0, 0, rng.randint(5, 400)))
        o_image = rng.choice((0, 0, 0, rng.randint(100, 4000)))
        out.update(
            input_text_tokens=text, input_audio_tokens=audio, input_image_tokens=image,
            input_cached_text_tokens=c_text, input_cached_audio_tokens=c_audio, input_cached_image_tokens=c_image,
            input_cache_write_tokens=write, input_cache_write_12h_tokens=write // 3,
            input_cache_write_30m_tokens=write - write // 3, output_text_tokens=o_text, output_audio_tokens=o_audio,
            output_image_tokens=o_image,
            input_uncached_tokens=text + audio + image,
            input_cached_tokens=c_text + c_audio + c_image,
            output_tokens=o_text + o_audio + o_image,
        )
        out["input_tokens"] = out["input_cached_tokens"] + write + out["input_uncached_tokens"]
    ranges = {
        "input_tokens": (50, 90000), "num_model_requests": (1, 400), "images": (1, 30), "characters": (40, 20000),
        "seconds": (3, 3600), "usage_bytes": (10_000, 50_000_000), "num_sessions": (1, 20), "num_requests": (1, 60),
    }
    for name in names:
        if name in ranges and name not in out:
            out[name] = rng.randint(*ranges[name])
    if "amount_value" in names:
        units = dict(_line_items(org))
        # Ten decimals, like per-token prices; sums stay exact as Decimals.
        out["amount_value"] = Decimal(rng.randint(1, 9_000_000_000)).scaleb(-10)
        out["amount_currency"] = "usd"
        out["quantity"] = Decimal(rng.randint(1, 2_000_000))
        out["quantity_unit"] = units[dims["line_item"]]
    return out


def _drawn(endpoint: Endpoint) -> list[Any]:
    """The dimensions an event draws (not the fields the API reports alongside a group)."""
    return [d for d in endpoint.dimensions if d.name not in endpoint.reported_fields]


@lru_cache(maxsize=8192)
def day_events(org: FakeOrganization, endpoint_key: str, day_start: int, revision: int = 0) -> tuple[Event, ...]:
    """The usage of one endpoint on one UTC day; ``revision`` > 0 models OpenAI's late revisions."""
    endpoint = ENDPOINTS[endpoint_key]
    digest = hashlib.sha256(f"{org.salt}:{endpoint_key}:{day_start}:{revision}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    empty = rng.random() < 0.1  # about one day in ten has no usage
    events = []
    for _ in range(0 if empty else rng.randint(1, 2 * org.events_per_day)):
        minute = day_start + 60 * rng.randrange(DAY // 60)
        dims = {d.name: rng.choice(list(_dimension_pool(org, endpoint, d.name))) for d in _drawn(endpoint)}
        metrics = _metrics(endpoint, rng, dims, org)
        events.append(Event(minute, tuple(sorted(dims.items())), tuple(sorted(metrics.items()))))
    if org.spike and org.spike[1] == day_start and any(d.name == "project_id" for d in endpoint.dimensions):
        # Its own generator, so the rest of the day's data stays what it is without a spike.
        spike_rng = random.Random(int.from_bytes(digest[8:16], "big"))
        for _ in range(org.spike[2]):
            minute = day_start + 60 * spike_rng.randrange(DAY // 60)
            dims = {d.name: spike_rng.choice(list(_dimension_pool(org, endpoint, d.name))) for d in _drawn(endpoint)}
            dims["project_id"] = org.spike[0]
            metrics = _metrics(endpoint, spike_rng, dims, org)
            events.append(Event(minute, tuple(sorted(dims.items())), tuple(sorted(metrics.items()))))
    events.sort(key=lambda e: e.minute)
    return tuple(events)


@lru_cache(maxsize=8192)
def event_minutes(org: FakeOrganization, endpoint_key: str, day_start: int, revision: int = 0) -> tuple[int, ...]:
    """The sorted event times of a day, to cut buckets out of it by bisection."""
    return tuple(e.minute for e in day_events(org, endpoint_key, day_start, revision))


def dense_results(endpoint: Endpoint, bucket_start: int, groups: int) -> list[dict[str, Any]]:
    """Many results per bucket, cheaply: benchmark load, not realistic usage."""
    results = []
    for i in range(groups):
        result: dict[str, Any] = {"object": endpoint.result_object}
        value = (bucket_start // 60 * 31 + i * 7) % 997 + 1
        for column in endpoint.values:
            if column.type == "int64":
                _set_path(result, column.path, value)
            elif column.type == "decimal":
                _set_path(result, column.path, Decimal(value).scaleb(-4))
            else:
                _set_path(result, column.path, "usd" if column.name.endswith("currency") else None)
        for column in _drawn(endpoint):
            result[column.name] = f"proj_{i:03d}" if column.name == "project_id" else None
        results.append(result)
    return results


def matches(event: Event, filters: Mapping[str, Iterable[Any]]) -> bool:
    dims = dict(event.dims)
    return all(dims[dim] in allowed for dim, allowed in filters.items())


def aggregate(
    endpoint: Endpoint, events: Iterable[Event], group_by: Sequence[str]
) -> list[dict[str, Any]]:
    """Sum events per group into result objects shaped as the spec's ``*Result`` schemas."""
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for event in events:
        dims = dict(event.dims)
        key = tuple(dims[g] for g in group_by)
        totals = groups.setdefault(key, {})
        for name, value in event.metrics:
            if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
                totals[name] = totals.get(name, 0) + value
            else:
                totals.setdefault(name, value)
    results = []
    for key in sorted(groups, key=lambda k: tuple((v is None, str(v)) for v in k)):
        values = dict(zip(group_by, key, strict=True))
        totals = groups[key]
        if "quantity" in totals and "line_item" not in group_by:
            # A quantity only has a unit per line item; the API sends both as null otherwise.
            totals = {**totals, "quantity": None, "quantity_unit": None}
        result: dict[str, Any] = {"object": endpoint.result_object}
        for column in endpoint.values:
            value = totals.get(column.name)
            _set_path(result, column.path, value)
        for column in _drawn(endpoint):
            result[column.name] = values.get(column.name)
        results.append(result)
    return results


def _set_path(target: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        target = target.setdefault(part, {})
    target[path[-1]] = value
