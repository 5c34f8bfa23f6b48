"""A local stand-in for a Slack incoming webhook: an HTTP server on 127.0.0.1 that keeps each POST.

The demo points ``SlackWebhookNotifier`` at it to show spend alerts end to end without Slack, and
tests use it as a real receiver. It answers as Slack does (``200 ok``).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from airflow_provider_openai_usage.testing.server import SHUTDOWN_POLL_SECONDS

WEBHOOK_PATH = "/services/T000/B000/XXXX"


class WebhookReceiver:
    """``with WebhookReceiver() as hook:`` then send to ``hook.url``; ``hook.messages`` holds the JSON bodies."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append({"path": self.path, "content_type": self.headers.get("Content-Type", "")})
                receiver.messages.append(json.loads(body or b"{}"))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence access logs
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # shutdown() waits for the loop's next poll (0.5 s by default, per receiver).
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": SHUTDOWN_POLL_SECONDS}, name="webhook-receiver", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{WEBHOOK_PATH}"

    def connection_json(self) -> str:
        """An Airflow ``slackwebhook`` connection that posts here (the whole URL as the password)."""
        return json.dumps({"conn_type": "slackwebhook", "password": self.url})

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
