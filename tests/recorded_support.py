"""Recorded answers of OpenAI's live API (``tests/data/recorded``, sources in its README) served again
over real HTTP, so the hook and the operators read them exactly as they read the API.

A recording holds the request it answers, the moment of the answer (``answered_at``, replayed as the
``Date`` header the hook reads) and the answers in order (status and body as sent; a second answer is
the next page). ``ReplayAPI`` serves them in that order whatever the query says, and logs what the
client sent, so a test can check the client's requests too.
"""

from __future__ import annotations

import email.utils
import json
import re
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

RECORDED = Path(__file__).resolve().parent / "data" / "recorded"
REPLAY_KEY = "sk-admin-replay-recorded-answers-0123456789"


def load(name: str) -> dict[str, Any]:
    """A recording, every JSON number exact (``Decimal``), as the hook decodes them."""
    return json.loads((RECORDED / name).read_text(), parse_float=Decimal)


def raw_answers(name: str, key: str = "answers") -> list[tuple[int, bytes]]:
    """(status, body bytes) of each answer, the body re-serialised with every recorded digit kept."""
    text = (RECORDED / name).read_text()
    doc = json.loads(text, parse_float=lambda s: _Literal(s))
    source = doc[key] if key == "answers" else doc[key]["answers"]
    return [(a["status"], _dumps(a["body"]).encode()) for a in source]


class _Literal(str):
    """A JSON number kept as its text, so a replayed answer has exactly the recorded digits."""


def _dumps(value: Any) -> str:
    if isinstance(value, _Literal):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(json.dumps(k) + ":" + _dumps(v) for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_dumps(v) for v in value) + "]"
    return json.dumps(value)


class ReplayAPI:
    """Serves recorded answers per path, in order, with the recording's ``Date``; ``requests`` logs (path, params)."""

    #: The organization of recordings that name none (usage answers do not): any valid id.
    UNNAMED_ORGANIZATION = "org-RecordedUsageWithoutOrg"

    def __init__(self, answers: dict[str, list[tuple[int, bytes]]], answered_at: int) -> None:
        self.answers = answers
        self.answered_at = answered_at
        #: The recording's organization (the costs results' organization_id), given to the connection as
        #: its extra, as a user sets it: the operators then land under it without asking the API.
        found = {m.decode() for raw in answers.values() for _, body in raw for m in re.findall(rb'"organization_id":\s*"(org-[A-Za-z0-9_-]+)"', body)}
        self.organization_id = min(found) if found else self.UNNAMED_ORGANIZATION
        self.requests: list[tuple[str, list[tuple[str, str]]]] = []
        self._served: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @classmethod
    def of(cls, name: str) -> ReplayAPI:
        doc = load(name)
        answers = {doc["request"]["path"]: raw_answers(name)}
        if "costs" in doc:
            answers[doc["costs"]["request"]["path"]] = raw_answers(name, "costs")
        return cls(answers, doc["answered_at"])

    def rewind(self) -> None:
        """Serve the answers again from the first (a re-run)."""
        with self._lock:
            self._served.clear()
            self.requests.clear()

    def _answer(self, path: str, params: list[tuple[str, str]]) -> tuple[int, bytes]:
        with self._lock:
            self.requests.append((path, params))
            answers = self.answers.get(path)
            if not answers:
                return 404, json.dumps({"error": {"message": f"nothing recorded for {path}", "type": "invalid_request_error"}}).encode()
            i = self._served.get(path, 0)
            self._served[path] = i + 1
            if i >= len(answers):
                return 500, json.dumps({"error": {"message": f"only {len(answers)} answers recorded for {path}", "type": "server_error"}}).encode()
            return answers[i]

    def __enter__(self) -> ReplayAPI:
        replay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_GET(self) -> None:  # noqa: N802
                parts = urlsplit(self.path)
                status, body = replay._answer(parts.path, parse_qsl(parts.query, keep_blank_values=True))
                self.send_response(status)  # its Date header is the recording's moment (date_time_string)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def date_time_string(self, timestamp: float | None = None) -> str:
                return email.utils.formatdate(replay.answered_at, usegmt=True)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def connection_json(self) -> str:
        return json.dumps(
            {"conn_type": "openai_usage", "host": self.base_url, "password": REPLAY_KEY,
             "extra": {"timeout": 5, "max_retries": 2, "backoff_base": 0.01, "organization_id": self.organization_id}}
        )
