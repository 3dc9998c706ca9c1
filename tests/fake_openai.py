"""A fake OpenAI-compatible server for the tests of `OpenAIBackend` and of runs on it.

`FakeOpenAI(answer)` listens on a free local port (`url` is its ``/v1`` base URL), records every
request (path, Authorization header, JSON body) in ``requests`` and answers each POST with the
JSON object ``answer(body)``. Failures are scriptable: the first ``fail_first`` requests get
HTTP ``fail_status`` (500), requests after the first ``down_after`` get HTTP 503 (both counted
over ``requests``, which a test may clear), and every answer waits ``delay`` seconds. An error's
body is ``boom``, or with ``echo_headers`` a JSON object holding the request's headers (as some
servers and proxies do), Authorization first. The ``fake_openai`` fixture (conftest.py)
starts servers and stops them after the test.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = Callable[[dict[str, Any]], dict[str, Any]]


def persona_answer(body: dict[str, Any]) -> dict[str, Any]:
    """An answer for LLM personas: log-probabilities over one label of each question (choice
    ``A``, ``stay``, ``4`` stars) when scoring, else a sentence."""
    if body.get("logprobs"):
        top = {"A": math.log(0.5), "stay": math.log(0.3), "4": math.log(0.2)}
        choice: dict[str, Any] = {"text": "A", "logprobs": {"top_logprobs": [top]}}
    else:
        choice = {"text": "I like films."}
    return {"choices": [choice], "usage": {"prompt_tokens": 9}}


class FakeOpenAI(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        answer: Answer,
        *,
        fail_first: int = 0,
        fail_status: int = 500,
        down_after: int | None = None,
        delay: float = 0.0,
        echo_headers: bool = False,
    ) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answer = answer
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.echo_headers = echo_headers
        self.down_after = down_after
        self.delay = delay
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def record(self, path: str, auth: str | None, body: dict[str, Any]) -> int | None:
        """Record one request; the HTTP error status it gets, or None to answer it."""
        with self.lock:
            self.requests.append({"path": path, "auth": auth, "body": body})
            n = len(self.requests)
        if n <= self.fail_first:
            return self.fail_status
        if self.down_after is not None and n > self.down_after:
            return 503
        return None

    def start(self) -> FakeOpenAI:
        threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: FakeOpenAI
    timeout = 5

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        status = self.server.record(self.path, self.headers.get("Authorization"), body)
        if self.server.delay:
            time.sleep(self.server.delay)
        if status is not None:
            self.send_response(status)
            self.end_headers()
            if self.server.echo_headers:
                headers = sorted(self.headers.items(), key=lambda kv: kv[0] != "Authorization")
                echo = {"error": "request refused", "headers": dict(headers)}
                self.wfile.write(json.dumps(echo).encode())
            else:
                self.wfile.write(b"boom")
            return
        data = json.dumps(self.server.answer(body)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
