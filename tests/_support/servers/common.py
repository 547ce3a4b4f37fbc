"""What the fake servers share: the scripted model, stop strings and token caps, the HTTP server and handler bases.

The "model" is :class:`ScriptedMathModel`: problems look like ``What is A + B?``; a solution is ``n_steps``
steps, the last with ``\\boxed{answer}``. The weak variant makes a visible mistake (a step containing
``wrong``) at step 2 of every problem with ``(A + B) % 3 == 0`` and its final answer is then off by one —
unless the step 2 it is continuing from was written by someone else. The fake PRM scores a step 0.1 if it
contains ``wrong``, else 0.9. Tokens are whitespace-separated words.
"""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["COUNT_ASK", "ScriptedMathModel", "count_tokens", "prm_scores_of"]

#: the continuation check of the chat mode asks to go on counting from "1, 2, ..., 8,"
COUNT_ASK = "Count from 1 to 20"

_PROBLEM = re.compile(r"What is (\d+) \+ (\d+)\?")


def count_tokens(text: str) -> int:
    return len(text.split())


def prm_scores_of(steps: list[str]) -> list[float]:
    return [0.1 if "wrong" in s else 0.9 for s in steps]


class ScriptedMathModel:
    """Deterministic stepwise solver of ``What is A + B?`` problems (see module docstring)."""

    def __init__(
        self,
        n_steps: int = 3,
        weak: bool = True,
        words_per_step: int = 8,
        blank_before_step: int | None = None,
    ) -> None:
        self.blank_before_step = blank_before_step  # 0-based step the model opens with a blank line
        self.n_steps = n_steps
        self.weak = weak
        self.words_per_step = words_per_step

    def steps(self, prompt: str, prefix_steps: list[str]) -> list[str]:
        """The remaining steps after ``prefix_steps``."""
        m = _PROBLEM.search(prompt)
        a, b = (int(m.group(1)), int(m.group(2))) if m else (1, 1)
        bad = self.weak and (a + b) % 3 == 0
        k0 = len(prefix_steps)
        pad = " ".join(["so"] * max(0, self.words_per_step - 6))
        wrong_in_prefix = any("wrong" in s for s in prefix_steps)
        out = []
        for k in range(k0, self.n_steps):
            if k == self.n_steps - 1:
                made_error = wrong_in_prefix or (bad and k0 <= 1 and self.n_steps > 2)
                ans = a + b + (1 if made_error else 0)
                out.append(f"Therefore the answer is \\boxed{{{ans}}}.")
            elif k == 1 and bad and k0 <= 1:
                out.append(f"Step 2: a wrong carry gives {a + b + 1} {pad}")
            else:
                tag = "" if self.weak else " carefully"
                check = f" check {k + 1}" if k else ""  # consecutive steps say different things
                out.append(f"Step {k + 1}:{tag} we add {a} and {b}{check} {pad}")
        if self.blank_before_step is not None and self.blank_before_step == k0 and out:
            out[0] = "\n\n" + out[0]
        return out


def _apply_stops(
    text: str, stops: list[str], max_tokens: int | None, min_tokens: int = 0
) -> tuple[str, str, str | None]:
    """Cut ``text`` at the first stop string / token cap: (text, finish_reason, matched stop or None).

    ``min_tokens > 0`` (vLLM): stop strings are not checked before the first word has been generated."""
    best, matched = len(text), None
    start = len(text) - len(text.lstrip()) if min_tokens else 0
    for s in stops:
        i = text.find(s, start)
        if 0 <= i < best:
            best, matched = i, s
    cut = text[:best]
    if max_tokens is not None:
        words = cut.split(" ")
        # keep whitespace structure: rebuild from word boundaries
        toks = re.findall(r"\S+\s*", cut)
        if len(toks) > max_tokens:
            return "".join(toks[:max_tokens]).rstrip(" "), "length", None
        del words
    return cut, "stop", matched


class _Base(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the stdlib default (5) drops connections at 64 in flight
    allow_reuse_address = True

    def __init__(self, handler: type, delay_s: float = 0.0) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.delay_s = delay_s
        self.failures: deque[str] = deque()
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def fail_next(self, kind: str, n: int = 1) -> None:
        with self.lock:
            self.failures.extend([kind] * n)

    def pop_failure(self) -> str | None:
        with self.lock:
            return self.failures.popleft() if self.failures else None

    def log(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> None:
        with self.lock:
            self.requests.append({"path": path, "body": body, "headers": headers})

    def start(self):
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.shutdown()
        self.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: avoid Nagle + delayed-ACK stalls
    server: _Base

    def log_message(self, format: str, *args: Any) -> None:  # silence
        return

    def _read_json(self) -> dict[str, Any]:
        n = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(n) if n else b"{}"
        return json.loads(raw or b"{}")

    def _send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _start_sse(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        self.end_headers()
        self.close_connection = True

    def _sse(self, data: Any, event: str | None = None) -> None:
        chunk = (
            f"event: {event}\n" if event else ""
        ) + f"data: {json.dumps(data) if not isinstance(data, str) else data}\n\n"
        self.wfile.write(chunk.encode())
        self.wfile.flush()

    def _hang(self) -> None:
        self.server.stop_event.wait(60)
        self.close_connection = True

    def _common_failure(self, kind: str | None, error_body) -> bool:
        if kind is None:
            return False
        if kind == "hang":
            self._hang()
            return True
        if kind == "429":
            self._send_json(429, error_body("rate_limit_error", "Rate limited"), {"retry-after": "0.05"})
            return True
        if kind == "500":
            self._send_json(500, error_body("api_error", "Internal server error"))
            return True
        if kind == "529":
            self._send_json(529, error_body("overloaded_error", "Overloaded"))
            return True
        if kind == "echo_key":  # a server that quotes the key it was sent in its error message
            sent = (self.headers.get("authorization") or "").removeprefix("Bearer ").strip()
            sent = sent or self.headers.get("x-api-key") or ""
            self._send_json(400, error_body("invalid_request_error", f"Incorrect API key provided: {sent}"))
            return True
        if kind == "invalid_json":  # a 200 whose body is cut off: not JSON
            data = b'{"id": "cmpl-broken", "choices": [{"text": "Step'
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return True
        return False
