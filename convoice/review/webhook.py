"""A receiver for Label Studio's annotation webhooks: an event wakes the pull loop.

Polling stays the default (``convoice review pull --every N``); with
``--listen PORT`` the loop also pulls as soon as Label Studio reports an
annotation. The webhook carries no payload (the pull reads everything itself)
and a random path, so a stray POST cannot trigger anything but a harmless pull.
"""

from __future__ import annotations

import http.server
import json
import secrets
import threading
from typing import Any

ACTIONS = ("ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED")


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that sets :attr:`event` when an annotation changes."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self.event = threading.Event()
        self.received = 0
        self.path = f"/convoice-review/{secrets.token_urlsafe(12)}"
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path != receiver.path:
                    self.send_response(404)
                    self.end_headers()
                    return
                try:
                    action = json.loads(body or b"{}").get("action", "")
                except (ValueError, AttributeError):
                    action = ""
                if action in ACTIONS:
                    receiver.received += 1
                    receiver.event.set()
                self.send_response(200)
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer((host, port), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}{self.path}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait(self, timeout: float | None) -> bool:
        """True when an annotation event arrived (then cleared), False on timeout."""
        arrived = self.event.wait(timeout)
        self.event.clear()
        return arrived
