"""A fake Anthropic Messages API (see :mod:`tests._support.servers.fake`)."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

from tests._support.servers.common import ScriptedMathModel, _apply_stops, _Base, _Handler, count_tokens

__all__ = ["FakeAnthropicServer"]

#: faults injected inside a 200 stream (the others answer the request with an error status)
_STREAM_FAULTS = ("overloaded_stream", "cut_stream", "invalid_json_stream")

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
        if failure not in _STREAM_FAULTS and self._common_failure(failure, _anthropic_error):
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
                if failure == "cut_stream" and i == max(1, len(pieces) // 3):
                    return  # the connection closes: no content_block_stop, message_delta or message_stop
                if failure == "invalid_json_stream" and i == len(pieces) // 2:
                    self.wfile.write(
                        b'event: content_block_delta\ndata: {"type": "content_block_delta", "ind\n\n'
                    )
                    self.wfile.flush()
                    return
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
