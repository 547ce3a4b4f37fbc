"""A fake OpenAI-compatible server in the dialect of one server family (see :mod:`tests._support.servers.fake`).

``FakeOpenAIServer(flavor="vllm" | "sglang" | "tgi" | "llamacpp" | "transformers")`` answers
``/v1/completions`` and ``/v1/chat/completions`` (plain and streamed) the way that server does
(:mod:`~tests._support.servers.flavors`), ``GET /v1/models`` and ``/health``, and vLLM's ``/pooling`` for the
PRM. ``max_model_len`` makes requests whose prompt plus ``max_tokens`` exceed it fail like that server's
context-length error. Requests without a stop string are answered with the whole rest of the solution (what a
client that cuts the stream itself asks for).
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from tests._support.servers.common import (
    COUNT_ASK,
    ScriptedMathModel,
    _apply_stops,
    _Base,
    _Handler,
    count_tokens,
    prm_scores_of,
)
from tests._support.servers.flavors import FLAVORS, Flavor

__all__ = ["FakeOpenAIServer"]


def _openai_error(etype: str, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": etype, "param": None, "code": None}}


_ASSISTANT = "<|im_start|>assistant\n"


class _OpenAIHandler(_Handler):
    server: FakeOpenAIServer  # type: ignore[assignment]

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            data = [{"id": self.server.served_name, "object": "model", "owned_by": "fake", "created": 0}]
            return self._send_json(200, {"object": "list", "data": data})
        if self.path.rstrip("/").endswith("/health"):
            return self._send_json(200, {"status": "ok"})
        return self._send_json(404, _openai_error("NotFound", f"no route {self.path}"))

    def do_POST(self) -> None:
        body = self._read_json()
        srv = self.server
        srv.log(self.path, body, dict(self.headers))
        if srv.delay_s:
            time.sleep(srv.delay_s)
        failure = srv.pop_failure()
        if self._common_failure(failure, _openai_error):
            return
        if self.path.endswith("/pooling"):
            return self._pooling(body, failure)
        bad = srv.flavor.unexpected(body)
        if bad:  # transformers serve's BaseHandler._validate_request
            return self._send_json(422, {"detail": f"Unexpected fields in the request: {bad}"})
        if self.path.endswith("/v1/completions"):
            kind, prompt = "text_completion", body["prompt"]
            prefix = prompt.rsplit(_ASSISTANT, 1)[-1] if _ASSISTANT in prompt else ""
            steps = [x for x in prefix.split("\n\n")[:-1] if x] if prefix else []
        elif self.path.endswith("/v1/chat/completions"):
            kind = "chat.completion"
            parsed = self._chat_request(body, srv.flavor)
            if parsed is None:
                return
            prompt, steps = parsed
        else:
            return self._send_json(404, _openai_error("NotFound", f"no route {self.path}"))
        if srv.max_model_len is not None:
            n_prompt, n_max = count_tokens(prompt), int(body.get("max_tokens") or 16)
            if n_prompt + n_max > srv.max_model_len:
                return self._send_json(*srv.flavor.context_error(srv.max_model_len, n_prompt, n_max))
        self._answer(body, kind, prompt, self._continuation(body, prompt, steps))

    def _chat_request(self, body: dict[str, Any], flavor: Flavor) -> tuple[str, list[str]] | None:
        msgs = body["messages"]
        prompt = "\n".join(m["content"] for m in msgs)
        if msgs[-1]["role"] != "assistant":
            m = re.search(r"<partial_solution>\n(.*)\n</partial_solution>", msgs[-1]["content"], re.S)
            return prompt, (m.group(1).split("\n\n") if m else [])
        if not flavor.continues_assistant:
            return prompt, []  # a new assistant turn is opened: the model starts the solution again
        if not body.get("continue_final_message"):
            self._send_json(
                400, _openai_error("BadRequestError", "final assistant message needs continue_final_message")
            )
            return None
        return prompt, [x for x in msgs[-1]["content"].split("\n\n")[:-1] if x]

    def _continuation(self, body: dict[str, Any], prompt: str, steps: list[str]) -> str:
        """What the model writes next: the rest of the solution, or the count of the continuation check."""
        if COUNT_ASK in prompt:
            msgs = body.get("messages") or []
            continued = msgs and msgs[-1]["role"] == "assistant" and self.server.flavor.continues_assistant
            start = 9 if continued else 1
            return (" " if continued else "") + ", ".join(str(i) for i in range(start, start + 4)) + ","
        rest = "\n\n".join(self.server.model.steps(prompt, steps))
        # a prompt that already ends in a blank line past the separator: the model does not open with another
        return rest.lstrip("\n") if prompt.endswith("\n\n\n\n") else rest

    def _answer(self, body: dict[str, Any], kind: str, prompt: str, full: str) -> None:
        flavor = self.server.flavor
        stops = body.get("stop") or []
        stops = [stops] if isinstance(stops, str) else list(stops)
        text, finish, matched = _apply_stops(
            full, stops, body.get("max_tokens"), int(body.get("min_tokens") or 0)
        )
        eos = finish == "stop" and matched is None
        if matched is not None and (flavor.keeps_stop_string or body.get("include_stop_str_in_output")):
            end = len(text) + len(matched)
            if flavor.stop_ends_token:  # the rest of the (word-sized) token the match ended in
                while end < len(full) and not full[end].isspace() and not full[end - 1].isspace():
                    end += 1
            text = full[:end]
        if matched is not None:
            finish = flavor.stop_finish_reason
        n_out = count_tokens(text) + (1 if eos and flavor.usage_counts_eos else 0)
        usage = {
            "prompt_tokens": count_tokens(prompt),
            "completion_tokens": n_out,
            "total_tokens": count_tokens(prompt) + n_out,
        }
        fields = flavor.choice_fields(matched, eos)
        with self.server.lock:
            self.server.usages.append(n_out)
        rid = f"cmpl-{uuid.uuid4().hex[:12]}"
        if body.get("stream"):
            return self._stream(body, kind, rid, text, finish, fields, usage)
        if kind == "text_completion":
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish, **fields}
        else:
            message = {"role": "assistant", "content": text}
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish, **fields}
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

    def _stream(
        self,
        body: dict[str, Any],
        kind: str,
        rid: str,
        text: str,
        finish: str,
        fields: dict[str, Any],
        usage: dict[str, Any],
    ) -> None:
        obj = kind + ".chunk" if kind != "text_completion" else kind
        head = {"id": rid, "object": obj, "created": int(time.time()), "model": body.get("model")}
        self._start_sse()
        try:
            for w in [w for w in re.findall(r"\S*\s*", text) if w]:
                delta = {"text": w} if kind == "text_completion" else {"delta": {"content": w}}
                self._sse({**head, "choices": [{"index": 0, **delta, "finish_reason": None}]})
                if self.server.stream_chunk_delay_s:
                    time.sleep(self.server.stream_chunk_delay_s)
            last = {"index": 0, "finish_reason": finish, **fields}
            last.update({"text": ""} if kind == "text_completion" else {"delta": {}})
            self._sse({**head, "choices": [last], "usage": usage})
            self._sse("[DONE]")
        except (BrokenPipeError, ConnectionResetError):
            with self.server.lock:
                self.server.aborted_streams += 1

    def _pooling(self, body: dict[str, Any], failure: str | None) -> None:
        inputs = body.get("input")
        inputs = [inputs] if isinstance(inputs, str) else list(inputs or [])
        data = []
        for i, text in enumerate(inputs):
            assistant = text.rsplit(_ASSISTANT, 1)[-1]
            scores = prm_scores_of(assistant.split("<extra_0>")[:-1])
            if failure == "nan_scores":
                scores = [float("nan")] * len(scores)
            elif failure == "big_scores":
                scores = [5.0] * len(scores)
            data.append({"index": i, "object": "pooling", "data": [[1 - p, p] for p in scores]})
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
    """OpenAI-compatible server on 127.0.0.1 (random port); ``url + "/v1"`` is the SDK base URL.

    Parameters
    ----------
    model : ScriptedMathModel, optional
    delay_s : float
        Latency added to every call.
    flavor : str
        The server family whose dialect it speaks (:data:`~tests._support.servers.flavors.FLAVORS`).
    max_model_len : int, optional
        Context length (prompt + ``max_tokens``, in words); longer requests get the flavor's context error.
    served_name : str
        The model name ``/v1/models`` lists.
    stream_chunk_delay_s : float
        Pause between streamed chunks.
    """

    def __init__(
        self,
        model: ScriptedMathModel | None = None,
        delay_s: float = 0.0,
        *,
        flavor: str = "vllm",
        max_model_len: int | None = None,
        served_name: str = "fake-weak",
        stream_chunk_delay_s: float = 0.0,
    ) -> None:
        super().__init__(_OpenAIHandler, delay_s)
        self.model = model or ScriptedMathModel(weak=True)
        self.flavor = FLAVORS[flavor]
        self.max_model_len = max_model_len
        self.served_name = served_name
        self.stream_chunk_delay_s = stream_chunk_delay_s
        self.aborted_streams = 0
        #: ``usage.completion_tokens`` of every completion answered, in order
        self.usages: list[int] = []
