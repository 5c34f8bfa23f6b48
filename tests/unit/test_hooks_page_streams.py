"""hooks/page_streams.py: parts paged on their own threads come back in order, errors where the caller
reaches them, within the memory bound, and no thread outlives the pull.

The parts here are plain generators standing in for the hook's paging (the real paging over HTTP is
tested through the hook in test_hooks_usage.py); they count what was fetched and what was handed over."""

from __future__ import annotations

import threading

import pytest
from conftest import DAY, NOW

from airflow_provider_openai_usage.hooks.page_streams import PAGES_AHEAD, THREAD_PREFIX, PageStreams, page_units
from airflow_provider_openai_usage.query import UsageQuery


class Session:
    """What a thread is given as its session; closing it is recorded."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def close(self) -> None:
        self.log.append("closed")


class Parts:
    """Parts of ``pages`` pages of 31 buckets (the first ``first`` buckets) of ``results`` results each,
    recording how far fetching ran ahead."""

    def __init__(self, parts: int, pages: int, results: int, fail_at: tuple[int, int] | None = None, first: int = 31) -> None:
        self.query = UsageQuery.build("completions", NOW - 31 * parts * pages * DAY, NOW)
        self.subs = self.query.split(parts)
        assert len(self.subs) == parts
        self.pages, self.results, self.fail_at, self.first = pages, results, fail_at, first
        self.lock = threading.Lock()
        self.fetched_more = threading.Condition(self.lock)  # notified on every fetch: tests wait on counts, not on time
        self.fetched = 0
        self.taken = 0
        self.most_ahead = 0  # the most pages fetched and not yet taken by the caller, over the run
        self.sessions: list[str] = []
        self.cancelled = threading.Event()

    def pages_of(self, sub: UsageQuery, session: Session):
        part = self.subs.index(sub)
        for n in range(self.pages):
            if self.fail_at == (part, n):
                raise RuntimeError(f"part {part} page {n} failed")
            with self.lock:
                self.fetched += 1
                self.most_ahead = max(self.most_ahead, self.fetched - self.taken)
                self.fetched_more.notify_all()
            buckets = [{"part": part, "page": n, "results": [{}] * self.results} for _ in range(self.first if n == 0 else 31)]
            yield {"data": buckets, "has_more": n < self.pages - 1}

    def streams(self, page_results: int | None = None) -> PageStreams:
        return PageStreams(self.subs, self.pages_of, lambda: Session(self.sessions), self.cancelled.set, page_results)

    def read(self, streams: PageStreams, hold_first_until: int = 0):
        """The pages as (sub, part, page); with ``hold_first_until``, the caller keeps its first page
        until that many pages were fetched (what running ahead means, whatever the threads' timing)."""
        for sub, page in streams.pages():
            if hold_first_until:
                with self.lock:
                    reached = self.fetched_more.wait_for(lambda: self.fetched >= hold_first_until, timeout=120)
                assert reached, f"only {self.fetched} pages were fetched while the caller held its first: no part ran ahead"
                hold_first_until = 0
            with self.lock:
                self.taken += 1
            yield sub, page["data"][0]["part"], page["data"][0]["page"]


def threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)]


def test_pages_come_in_order_each_with_its_part_and_every_thread_and_session_ends():
    parts = Parts(4, 5, 1)
    # While the caller holds part 1's first page, each later part fetches its PAGES_AHEAD pages.
    got = list(parts.read(parts.streams(), hold_first_until=1 + 3 * PAGES_AHEAD))
    assert [(p, n) for _, p, n in got] == [(p, n) for p in range(4) for n in range(5)]
    # At least what the caller waited for; at most its page, one ahead of it and each later part's two.
    assert 1 + 3 * PAGES_AHEAD <= parts.most_ahead <= 2 + 3 * PAGES_AHEAD
    assert all(sub is parts.subs[p] for sub, p, _ in got)
    assert not threads() and parts.sessions == ["closed"] * 4 and parts.cancelled.is_set()


def test_an_error_comes_where_the_caller_reaches_it_after_every_page_before_it():
    parts = Parts(3, 4, 1, fail_at=(1, 2))
    got = []
    with pytest.raises(RuntimeError, match="part 1 page 2 failed"):
        for _, p, n in parts.read(parts.streams()):
            got.append((p, n))
    assert got == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1)]
    assert not threads() and parts.sessions == ["closed"] * 3


def test_without_page_results_a_later_part_holds_at_most_two_pages():
    parts = Parts(3, 8, 1)
    assert len(list(parts.read(parts.streams()))) == 24
    # The caller's page plus one ahead for the part being read, two for each later part, one in flight each.
    assert parts.most_ahead <= 2 + PAGES_AHEAD * 2


def test_with_page_results_sparse_parts_run_ahead_and_dense_ones_take_turns():
    sparse = Parts(2, 6, 1)  # 31 results a page
    # Small pages: while the caller holds its first page, the later part fetches all six of its pages.
    assert len(list(sparse.read(sparse.streams(page_results=1000), hold_first_until=1 + 6))) == 12
    assert 2 + PAGES_AHEAD < 1 + 6 <= sparse.most_ahead <= 2 + 6, "the later part ran ahead past the page count bound"
    dense = Parts(3, 6, 40)  # 1,240 results a page
    assert len(list(dense.read(dense.streams(page_results=1000)))) == 18
    # The page read and one ahead (and the next part's first page once the reader moves on).
    assert dense.most_ahead <= 3


def test_a_small_first_page_does_not_let_dense_parts_run_ahead():
    """A grouped 1m pull starts with ten minutes of buckets: small, but as dense per bucket as the rest."""
    dense = Parts(3, 6, 40, first=1)
    assert len(list(dense.read(dense.streams(page_results=1000)))) == 18
    assert dense.most_ahead <= 3


def test_closing_early_ends_every_thread_and_fetches_no_more():
    parts = Parts(3, 50, 1)
    streams = parts.streams()
    pages = parts.read(streams)
    next(pages)
    assert threads()
    pages.close()
    assert not threads() and parts.sessions == ["closed"] * 3 and parts.cancelled.is_set()
    fetched = parts.fetched
    assert fetched <= 2 + PAGES_AHEAD * 2


def test_page_units_count_results_and_a_bucket_without_results_as_one():
    assert page_units({"data": [{"results": [1, 2, 3]}, {"results": []}, {"result": [1]}, "junk"]}) == 3 + 1 + 1 + 1
    assert page_units({"data": []}) == 1
