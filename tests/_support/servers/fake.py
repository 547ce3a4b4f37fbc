"""Fake-but-real-wire-format model servers (stdlib ``ThreadingHTTPServer``; no extra dependencies).

* :class:`FakeOpenAIServer` — ``POST /v1/completions``, ``/v1/chat/completions`` (incl. SSE streaming and
vLLM's
  ``continue_final_message`` / ``add_generation_prompt``; vLLM's ``stop_reason`` field: the matched stop
  string, or ``null`` for EOS) and vLLM's ``POST /pooling`` for a process reward model.
* :class:`FakeAnthropicServer` — ``POST /v1/messages``, plain and SSE streaming (``message_start`` …
  ``message_delta`` with cumulative ``usage`` … ``message_stop``), validating what the real API validates
  here: ``x-api-key`` or ``Authorization: Bearer``, whitespace-only stop sequences (400), assistant prefill on
  Claude 4.6+ (400), trailing whitespace in a final assistant message (400).

Both can be told to fail: ``server.fail_next("429" | "529" | "500" | "hang" | "overloaded_stream", n)``; 429
carries ``retry-after``. ``delay_s`` adds a fixed latency per call (benchmarks).

The "model" is :class:`ScriptedMathModel`: problems look like ``What is A + B?``; a solution is ``n_steps``
steps, the last with ``\\boxed{answer}``. The weak variant makes a visible mistake (a step containing
``wrong``) at step 2 of every problem with ``(A + B) % 3 == 0`` and its final answer is then off by one —
unless the step 2 it is continuing from was written by someone else. The fake PRM scores a step 0.1 if it
contains ``wrong``, else
0.9.
Tokens are whitespace-separated words.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeAnthropicServer", "FakeOpenAIServer", "ScriptedMathModel", "count_tokens", "prm_scores_of"]

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
                out.append(f"Step {k + 1}:{tag} we add {a} and {b} {pad}")
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
        return False


# ------------------------------------------------------------------------------------------------ OpenAI /
# vLLM


def _openai_error(etype: str, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": etype, "param": None, "code": None}}


class _OpenAIHandler(_Handler):
    def do_POST(self) -> None:
        body = self._read_json()
        srv: FakeOpenAIServer = self.server  # type: ignore[assignment]
        srv.log(self.path, body, dict(self.headers))
        if srv.delay_s:
            time.sleep(srv.delay_s)
        if self._common_failure(srv.pop_failure(), _openai_error):
            return
        if self.path.endswith("/pooling"):
            return self._pooling(body)
        model = srv.model
        stops = body.get("stop") or []
        stops = [stops] if isinstance(stops, str) else list(stops)
        max_tokens = body.get("max_tokens")
        if self.path.endswith("/v1/completions"):
            prompt = body["prompt"]
            prefix = (
                prompt.rsplit("<|im_start|>assistant\n", 1)[-1] if "<|im_start|>assistant\n" in prompt else ""
            )
            steps = [s for s in prefix.split("\n\n")[:-1]] if prefix else []
            kind = "text_completion"
        elif self.path.endswith("/v1/chat/completions"):
            msgs = body["messages"]
            prompt = "\n".join(m["content"] for m in msgs)
            if msgs[-1]["role"] == "assistant":
                if not body.get("continue_final_message"):
                    return self._send_json(
                        400,
                        _openai_error(
                            "BadRequestError", "final assistant message needs continue_final_message"
                        ),
                    )
                steps = msgs[-1]["content"].split("\n\n")[:-1]
            else:
                m = re.search(r"<partial_solution>\n(.*)\n</partial_solution>", msgs[-1]["content"], re.S)
                steps = m.group(1).split("\n\n") if m else []
            kind = "chat.completion"
        else:
            return self._send_json(404, _openai_error("NotFound", f"no route {self.path}"))
        full = "\n\n".join(model.steps(prompt, steps))
        text, finish, matched = _apply_stops(full, stops, max_tokens, int(body.get("min_tokens") or 0))
        if body.get("include_stop_str_in_output") and matched:
            text += matched
        n_out = count_tokens(text)
        usage = {
            "prompt_tokens": count_tokens(prompt),
            "completion_tokens": n_out,
            "total_tokens": count_tokens(prompt) + n_out,
        }
        rid = f"cmpl-{uuid.uuid4().hex[:12]}"
        if kind == "text_completion":
            choice = {
                "index": 0,
                "text": text,
                "logprobs": None,
                "finish_reason": finish,
                "stop_reason": matched,
            }
        else:
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish,
                "stop_reason": matched,
            }
        if body.get("stream"):
            self._start_sse()
            words = re.findall(r"\S*\s*", text)
            for w in [w for w in words if w]:
                delta = {"text": w} if kind == "text_completion" else {"delta": {"content": w}}
                self._sse(
                    {
                        "id": rid,
                        "object": kind + ".chunk" if kind != "text_completion" else kind,
                        "created": int(time.time()),
                        "model": body.get("model"),
                        "choices": [{"index": 0, **delta, "finish_reason": None}],
                    }
                )
            last = {
                "index": 0,
                "finish_reason": finish,
                "stop_reason": matched,
                **({"text": ""} if kind == "text_completion" else {"delta": {}}),
            }
            self._sse(
                {
                    "id": rid,
                    "object": kind + ".chunk" if kind != "text_completion" else kind,
                    "created": int(time.time()),
                    "model": body.get("model"),
                    "choices": [last],
                    "usage": usage,
                }
            )
            self._sse("[DONE]")
            return
        self._send_json(
            200,
            {
                "id": rid,
                "object": kind,
                "created": int(time.time()),
                "model": body.get("model"),
                "choices": [choice],
                "usage": usage,
            },
        )

    def _pooling(self, body: dict[str, Any]) -> None:
        inputs = body.get("input")
        inputs = [inputs] if isinstance(inputs, str) else list(inputs or [])
        data = []
        for i, text in enumerate(inputs):
            assistant = text.rsplit("<|im_start|>assistant\n", 1)[-1]
            steps = assistant.split("<extra_0>")[:-1]
            data.append({"index": i, "object": "pooling", "data": [[1 - p, p] for p in prm_scores_of(steps)]})
        self._send_json(
            200,
            {
                "id": f"pool-{uuid.uuid4().hex[:8]}",
                "object": "list",
                "created": int(time.time()),
                "model": body.get("model"),
                "data": data,
                "usage": {"prompt_tokens": sum(count_tokens(t) for t in inputs), "total_tokens": 0},
            },
        )


class FakeOpenAIServer(_Base):
    """OpenAI-compatible / vLLM server on 127.0.0.1 (random port); ``url + "/v1"`` is the SDK base URL."""

    def __init__(self, model: ScriptedMathModel | None = None, delay_s: float = 0.0) -> None:
        super().__init__(_OpenAIHandler, delay_s)
        self.model = model or ScriptedMathModel(weak=True)


# ------------------------------------------------------------------------------------------------ Anthropic


def _anthropic_error(etype: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": etype, "message": message}, "request_id": "req_fake"}


def _prefill_rejected(model: str) -> bool:
    m = re.search(r"claude-(?:[a-z]+-)?(\d+)(?:-(\d{1,2}))?(?!\d)", model)
    if not m:
        return False
    major, minor = int(m.group(1)), int(m.group(2) or 0)
    return major >= 5 or (major == 4 and minor >= 6)


class _AnthropicHandler(_Handler):
    def do_POST(self) -> None:
        body = self._read_json()
        srv: FakeAnthropicServer = self.server  # type: ignore[assignment]
        srv.log(self.path, body, dict(self.headers))
        if srv.delay_s:
            time.sleep(srv.delay_s)
        if self.path.rstrip("/") != "/v1/messages":
            return self._send_json(404, _anthropic_error("not_found_error", f"no route {self.path}"))
        bearer = (self.headers.get("authorization") or "").removeprefix("Bearer ").strip()
        if srv.api_key not in (self.headers.get("x-api-key"), bearer):
            return self._send_json(401, _anthropic_error("authentication_error", "invalid x-api-key"))
        failure = srv.pop_failure()
        if failure != "overloaded_stream" and self._common_failure(failure, _anthropic_error):
            return
        for s in body.get("stop_sequences") or []:
            if not s.strip():
                return self._send_json(
                    400,
                    _anthropic_error(
                        "invalid_request_error",
                        "stop_sequences: each stop sequence must contain non-whitespace",
                    ),
                )
        msgs = body.get("messages") or []
        if not msgs or "max_tokens" not in body:
            return self._send_json(
                400, _anthropic_error("invalid_request_error", "messages and max_tokens required")
            )
        model_id = body.get("model", "")
        if msgs[-1]["role"] == "assistant":
            if _prefill_rejected(model_id):
                return self._send_json(
                    400,
                    _anthropic_error(
                        "invalid_request_error", "This model does not support assistant message prefill."
                    ),
                )
            if msgs[-1]["content"] != msgs[-1]["content"].rstrip():
                return self._send_json(
                    400,
                    _anthropic_error(
                        "invalid_request_error", "final assistant content cannot end with trailing whitespace"
                    ),
                )
            prefix_steps = msgs[-1]["content"].split("\n\n")
            prompt = msgs[0]["content"]
            lead = "\n\n"
        else:
            content = msgs[-1]["content"]
            m = re.search(r"<partial_solution>\n(.*)\n</partial_solution>", content, re.S)
            prefix_steps = m.group(1).split("\n\n") if m else []
            prompt = content
            lead = ""
        remaining = srv.model.steps(prompt, prefix_steps)
        marker = None
        mm = re.search(r"End the step with (\S+)", prompt + (body.get("system") or ""))
        if mm:
            marker = mm.group(1)
        if marker:
            full = lead + "\n\n".join(f"{s} {marker}" for s in remaining)
        else:
            full = lead + "\n\n".join(remaining)
        text, finish, matched = _apply_stops(full, list(body.get("stop_sequences") or []), body["max_tokens"])
        stop_reason = "max_tokens" if finish == "length" else ("stop_sequence" if matched else "end_turn")
        n_out = max(1, count_tokens(text))
        usage_in = count_tokens(json.dumps(msgs))
        mid = f"msg_{uuid.uuid4().hex[:20]}"
        if not body.get("stream"):
            return self._send_json(
                200,
                {
                    "id": mid,
                    "type": "message",
                    "role": "assistant",
                    "model": model_id,
                    "content": [{"type": "text", "text": text}],
                    "stop_reason": stop_reason,
                    "stop_sequence": matched,
                    "usage": {"input_tokens": usage_in, "output_tokens": n_out},
                },
            )
        self._start_sse()
        try:
            self._sse(
                {
                    "type": "message_start",
                    "message": {
                        "id": mid,
                        "type": "message",
                        "role": "assistant",
                        "model": model_id,
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {"input_tokens": usage_in, "output_tokens": 1},
                    },
                },
                "message_start",
            )
            self._sse(
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                "content_block_start",
            )
            self._sse({"type": "ping"}, "ping")
            pieces = [p for p in re.findall(r"\S*\s*", text) if p]
            for i, piece in enumerate(pieces):
                if failure == "overloaded_stream" and i == len(pieces) // 2:
                    self._sse(
                        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
                        "error",
                    )
                    return
                self._sse(
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": piece},
                    },
                    "content_block_delta",
                )
                if srv.stream_chunk_delay_s:
                    time.sleep(srv.stream_chunk_delay_s)
            self._sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
            self._sse(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": matched},
                    "usage": {"output_tokens": n_out},
                },
                "message_delta",
            )
            self._sse({"type": "message_stop"}, "message_stop")
            with srv.lock:
                srv.completed_streams += 1
        except (BrokenPipeError, ConnectionResetError):
            with srv.lock:
                srv.aborted_streams += 1


class FakeAnthropicServer(_Base):
    """Anthropic Messages API on 127.0.0.1 (random port); pass ``url`` as the SDK's ``base_url``."""

    def __init__(
        self,
        model: ScriptedMathModel | None = None,
        api_key: str = "sk-ant-test-key-123456",
        delay_s: float = 0.0,
        stream_chunk_delay_s: float = 0.0,
    ) -> None:
        super().__init__(_AnthropicHandler, delay_s)
        self.model = model or ScriptedMathModel(weak=False, words_per_step=12)
        self.api_key = api_key
        self.stream_chunk_delay_s = stream_chunk_delay_s
        self.completed_streams = 0
        self.aborted_streams = 0


# ------------------------------------------------------------------------------------------------ in-process
# fakes


class ScriptedGenerator:
    """The :class:`ScriptedMathModel` as an in-process step generator (no HTTP): measures the loop's cost."""

    def __init__(self, model: ScriptedMathModel, name: str = "scripted", latency_s: float = 0.0) -> None:
        self.script = model
        self.model = name
        self.latency_s = latency_s
        self.calls = 0

    def cache_params(self) -> dict[str, Any]:
        return {"backend": "scripted", "weak": self.script.weak, "n_steps": self.script.n_steps}

    async def generate_step(self, problem: str, steps: list[str], *, max_tokens: int | None = None):
        import asyncio

        from trim_pomdp.datasets.answers import has_boxed
        from trim_pomdp.generation.base import StepResult

        self.calls += 1
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        rest = self.script.steps(problem, steps)
        text = rest[0] if rest else ""
        final = len(rest) <= 1
        return StepResult(
            text=text,
            tokens=count_tokens(text),
            finish="eos" if final else "step",
            final=final or has_boxed(text),
            model=self.model,
        )

    async def aclose(self) -> None:
        return None


class FakePRMBackend:
    """Synchronous PRM backend with the fake scoring rule (``score_batch``)."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def score_batch(self, items):
        self.batches.append(len(items))
        return [prm_scores_of(list(steps)) for _, steps in items]
