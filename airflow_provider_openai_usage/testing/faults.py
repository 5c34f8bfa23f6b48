"""Fault injection for the fake API: what can go wrong between a client and OpenAI, on demand.

Faults are taken from a schedule in order (one per matching request) or drawn at a seeded rate, so
a failing test replays exactly.
"""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

FaultKind = Literal[
    "pass", "status", "drop", "truncate", "garbage", "slow", "loop", "shift", "legacy", "drift", "wrong_object", "no_data",
    "echo", "echo_html", "trickle", "no_has_more", "gap", "empty",
]


@dataclass(frozen=True)
class Fault:
    """One injected failure.

    - ``pass``: no fault (lets one request through, to aim later faults at later pages);
    - ``status``: answer ``status`` with OpenAI's error body (and ``Retry-After`` if given);
    - ``drop``: close the connection without answering;
    - ``truncate``: announce the whole body, send half of it, close;
    - ``garbage``: answer 200 with a body that is not JSON;
    - ``slow``: wait ``delay`` seconds, then answer normally (a read timeout if the client gives up);
    - ``loop``: answer with ``next_page`` pointing back at the cursor just used;
    - ``shift``: move the page's last bucket a week later, outside the requested range;
    - ``legacy``: old spellings (``result``, ``sessions``); ``drift``: an unknown field on every
      result and optional fields left out; ``wrong_object``: results of another type;
      ``no_data``: a page without ``data``;
    - ``echo``: answer ``status`` with an OpenAI-shaped error body that quotes the request's
      Authorization header (a misbehaving server or gateway); ``echo_html``: the same as a proxy's
      HTML error page;
    - ``trickle``: answer normally, but send the body one byte every ``delay`` seconds;
    - ``no_has_more``: a page without ``has_more``; ``gap``: a page missing its middle bucket;
      ``empty``: a last page with no buckets (what OpenAI answers for a range not reported yet).
    ``message``/``param`` replace the error body's message and param of a ``status`` fault (e.g. a
    400 refusing a grouping). ``path`` limits the fault to requests whose path ends with it;
    ``params`` to requests that carry every one of these query parameters (e.g. the ``start_time``
    of one sub-range, to aim at one of several concurrent streams); ``key`` to requests whose Bearer
    token is that key (one organization of several a fake serves: a 401 or 429 storm for one key
    while the others answer). A fault a request is not aimed at is left for the next one.
    """

    kind: FaultKind
    status: int = 500
    retry_after: int | None = None
    delay: float = 0.0
    path: str | None = None
    message: str | None = None
    param: str | None = None
    params: tuple[tuple[str, str], ...] = ()
    #: Not in ``describe()``: the request log never holds a key.
    key: str | None = field(default=None, repr=False)

    def applies_to(self, path: str, query: Iterable[tuple[str, str]] = (), key: str | None = None) -> bool:
        if not self.aimed_at(key):
            return False
        if self.path is not None and not path.endswith(self.path):
            return False
        return not self.params or set(self.params) <= set(query)

    def aimed_at(self, key: str | None) -> bool:
        """Whether a request carrying the Bearer token ``key`` is one this fault may hit."""
        return self.key is None or key == self.key

    def describe(self) -> str:
        if self.kind == "status":
            return f"{self.status}" + (f" retry-after={self.retry_after}" if self.retry_after is not None else "")
        if self.kind in ("echo", "echo_html"):
            return f"{self.kind} {self.status}"
        return self.kind if self.kind not in ("slow", "trickle") else f"{self.kind} {self.delay}s"


def status(code: int, retry_after: int | None = None, path: str | None = None, key: str | None = None) -> Fault:
    return Fault("status", status=code, retry_after=retry_after, path=path, key=key)


class FaultPlan:
    """Thread-safe source of faults for the server's handler threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[Fault] = deque()
        self._rate = 0.0
        self._kinds: tuple[Fault, ...] = ()
        self._rng = random.Random(0)

    def schedule(self, faults: Iterable[Fault]) -> None:
        """Queue faults; each is used once, by the next request it applies to."""
        with self._lock:
            self._queue.extend(faults)

    def at_rate(self, rate: float, faults: Iterable[Fault], seed: int = 0) -> None:
        """Fail a seeded fraction of requests with a fault drawn from ``faults``."""
        with self._lock:
            self._rate, self._kinds, self._rng = rate, tuple(faults), random.Random(seed)

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
            self._rate, self._kinds = 0.0, ()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def next_for(self, path: str, query: Iterable[tuple[str, str]] = (), key: str | None = None) -> Fault | None:
        """The fault for a request to ``path`` with ``query``, carrying the Bearer token ``key``.

        A rate draw only happens among the faults aimed at ``key``: requests of other keys neither
        fail nor move the seeded sequence, so one organization's storm replays exactly however the
        others' requests interleave (without ``key`` filters every request draws, as before).
        """
        query = tuple(query)
        with self._lock:
            for i, fault in enumerate(self._queue):
                if fault.applies_to(path, query, key):
                    del self._queue[i]
                    return None if fault.kind == "pass" else fault
            candidates = tuple(f for f in self._kinds if f.aimed_at(key))
            if candidates and self._rng.random() < self._rate:
                fault = self._rng.choice(candidates)
                return fault if fault.applies_to(path, query, key) else None
        return None
