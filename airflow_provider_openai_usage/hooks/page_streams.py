"""Consecutive sub-ranges of one pull paged at once, their pages handed over in time order.

``OpenAIUsageHook.iter_query_buckets(streams=N)`` splits a range (``UsageQuery.split``) and reads
the parts here: one thread and one ``requests.Session`` per part (a session is not documented as
safe to share between threads), each paging its part with the hook's own paging, retries and
scrubbing. The caller sees one stream: the pages of part 1, then of part 2, ...; an error of a part
waits in that part's queue and is raised where the caller reaches it, after every page before it.

What may be held at once (fetched and not yet released by the caller) is bounded:

- the part the caller is reading fetches its next page only when none of its pages is waiting:
  one page ahead, exactly what ``prefetch`` holds with one stream;
- with ``page_results`` (the operator), a later part fetches only once a first page has shown how
  dense buckets are, and only while the results held (pages waiting, the caller's page, and for
  each request in flight a full page at that density: ``limit`` buckets times the most results per
  bucket seen) stay within ``page_results``: sparse pulls run ahead freely (365 daily buckets are a
  few thousand results), dense ones take turns (a full page of theirs is more than
  ``page_results``, which is why their ``limit`` adapts), so about two pages of ``page_results``
  results are held at most, as with one stream;
- without ``page_results``, a later part holds at most two pages.

``close()`` (called when the caller closes the iterator, stops early or an error is raised) cancels
the pull's retry waits, waits for requests in flight and ends every thread; no thread outlives it.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import requests

    from airflow_provider_openai_usage.query import UsageQuery

#: Threads are named ``openai-usage-stream-<part>`` (tests check none is left).
THREAD_PREFIX = "openai-usage-stream"
#: Pages a later part may hold when there is no ``page_results`` to bound results.
PAGES_AHEAD = 2

_END = object()


def page_units(page: dict[str, Any]) -> int:
    """What a page holds for the memory bound: its results (a bucket without results counts one), at least 1."""
    units = 0
    for bucket in page.get("data") or ():
        results = bucket.get("results", bucket.get("result")) if isinstance(bucket, dict) else None
        units += max(1, len(results)) if isinstance(results, list) else 1
    return max(1, units)


class PageStreams:
    """Pages of consecutive sub-queries, fetched on one thread each and handed over in order (``pages()``).

    ``pages_of(sub, session)`` pages one sub-query (the hook's own paging); ``new_session()`` gives
    each thread its session, closed when the thread ends; ``cancel()`` ends the pull's retry waits.
    """

    def __init__(
        self,
        subs: list[UsageQuery],
        pages_of: Callable[[UsageQuery, requests.Session], Iterator[dict[str, Any]]],
        new_session: Callable[[], requests.Session],
        cancel: Callable[[], None],
        page_results: int | None = None,
    ) -> None:
        self._subs = subs
        self._pages_of = pages_of
        self._new_session = new_session
        self._cancel = cancel
        self._page_results = page_results
        self._cond = threading.Condition()
        # Per part: (page, units), (_END, 0) or (an exception, 0), in the order the part produced them.
        self._queues: list[deque[tuple[Any, int]]] = [deque() for _ in subs]
        self._head = 0  # the part the caller is reading
        self._held = 0  # units of pages fetched and not yet released, plus what requests in flight reserved
        self._density = 0  # the most units per bucket seen so far (0: no bucket yet)
        self._closed = False
        self._threads: list[threading.Thread] = []  # started in part order, each when its part may fetch

    # -- the caller's side ------------------------------------------------------------------------
    def pages(self) -> Generator[tuple[UsageQuery, dict[str, Any]], None, None]:
        """(the sub-query, a page of it) in time order; the first thread starts with the first ``next()``."""
        try:
            for i, sub in enumerate(self._subs):
                with self._cond:
                    self._head = i
                    self._start_ready()
                    self._cond.notify_all()
                while True:
                    with self._cond:
                        while not self._queues[i]:
                            self._cond.wait()
                        item, units = self._queues[i].popleft()
                        self._cond.notify_all()  # the head part may fetch its next page now
                    if item is _END:
                        break
                    if isinstance(item, BaseException):
                        raise item
                    yield sub, item
                    del item
                    with self._cond:  # the caller is done with that page
                        self._held -= units
                        self._start_ready()
                        self._cond.notify_all()
        finally:
            self.close()

    def close(self) -> None:
        """End every thread: retry waits end at once, requests in flight are waited for."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._cancel()
        with self._cond:
            started = list(self._threads)
        for thread in started:
            thread.join()

    # -- the threads' side ------------------------------------------------------------------------
    def _start_ready(self) -> None:
        """Start the threads of the next parts that may fetch now (under the lock, in part order).

        A part's thread starts only when it may fetch: a dense pull's later parts start one after
        another as the caller reaches them, each on a fresh thread that reuses the ended one's
        memory (glibc hands an ended thread's malloc arena to the next thread), so taking turns
        costs no more memory than one stream.
        """
        while not self._closed and len(self._threads) < len(self._subs):
            i = len(self._threads)
            if i > self._head and not self._may_fetch(i):
                return
            thread = threading.Thread(target=self._run, args=(i,), name=f"{THREAD_PREFIX}-{i + 1}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _may_fetch(self, i: int) -> bool:
        waiting = len(self._queues[i])
        if i == self._head:
            return waiting == 0
        if self._page_results is None:
            return waiting < PAGES_AHEAD
        return self._density > 0 and self._held + self._full_page(i) <= self._page_results

    def _full_page(self, i: int) -> int:
        """Units a page of part ``i`` may bring: its maximum ``limit`` at the densest buckets seen."""
        return self._density * self._subs[i].limit

    def _run(self, i: int) -> None:
        session = None
        source: Iterator[dict[str, Any]] | None = None
        try:
            session = self._new_session()
            source = self._pages_of(self._subs[i], session)
            while True:
                with self._cond:
                    while not self._closed and not self._may_fetch(i):
                        self._cond.wait()
                    if self._closed:
                        return
                    reserved = self._full_page(i)
                    self._held += reserved
                try:
                    page = next(source, None)
                except BaseException:
                    with self._cond:
                        self._held -= reserved
                    raise
                last = page is None or page.get("has_more") is False
                units = 0 if page is None else page_units(page)
                buckets = 0 if page is None else len(page.get("data") or ())
                with self._cond:
                    self._held += units - reserved
                    if buckets:
                        self._density = max(self._density, -(-units // buckets))
                    if page is not None:
                        self._queues[i].append((page, units))
                    if last:
                        self._queues[i].append((_END, 0))
                    self._start_ready()
                    self._cond.notify_all()
                del page
                if last:
                    return
        except BaseException as exc:  # raised where the caller reaches this part
            with self._cond:
                self._queues[i].append((exc, 0))
                self._cond.notify_all()
        finally:
            if source is not None and hasattr(source, "close"):
                source.close()
            if session is not None:
                session.close()
