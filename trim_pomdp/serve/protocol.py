"""The OpenAI wire format of the endpoint: the request it accepts, the bodies and chunks it sends, its errors.

Requests are checked with pydantic and refused with a 400 that names the field (``messages[0].content``), in the
error body the OpenAI SDKs parse (``{"error": {"message", "type", "param", "code"}}``). Fields of the OpenAI API
that the loop cannot honour per request are ignored (``temperature``, ``top_p``, ``seed``, ...: the upstreams'
sampling is fixed when the server starts, so that the cache and the records stay consistent); ``n`` must be 1.

Two extension fields (pass them with the SDK's ``extra_body``):

``max_strong_tokens``
    A per-query cap on the strong model's output tokens, handed to a router that plans with it (a TRIM-POMDP
    policy plans with the budget-aware model of :mod:`trim_pomdp.pomdp.budget`); the loop never lets the strong
    model write more than the cap leaves. Each step's entry then shows ``strong_tokens_left``.
``trim_steps``
    ``false`` leaves the per-step decisions out of the answer (default ``true``).

Answers carry, besides the standard fields, a ``trim`` object (policy, knob, why the solution stopped, token
counts and, unless ``trim_steps`` is false, one entry per step: action, PRM score, belief); streamed chunks carry
the step's entry as ``trim_step``. ``usage.completion_tokens`` counts every output token the upstream models
wrote for the answer (weak and strong, accepted or not); ``usage.strong_tokens`` is the strong model's share (the
cost the paper counts), ``usage.weak_tokens`` the weak model's and ``usage.prm_calls`` the prefixes the PRM
scored. ``prompt_tokens`` is 0: the loop does not track the upstreams' input tokens.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "ApiError",
    "ChatRequest",
    "answer_body",
    "chunk",
    "error_body",
    "parse_request",
    "sse",
    "step_entry",
    "usage",
]


class ApiError(Exception):
    """An error answered in the OpenAI error format.

    Parameters
    ----------
    status : int
        HTTP status.
    message : str
        What was wrong and what to do (never a secret: callers pass redacted text).
    type : str
        OpenAI error type (``invalid_request_error``, ``rate_limit_error``, ``upstream_error``, ...).
    code : str, optional
        Machine-readable code (``model_not_found``, ``invalid_api_key``, ...).
    param : str, optional
        The request field at fault.
    headers : dict, optional
        Extra response headers (``Retry-After``).
    """

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, code=self.code, param=self.param)


def error_body(
    message: str, type: str, *, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """``{"error": {"message", "type", "param", "code"}}``: the body the OpenAI SDKs turn into exceptions."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


class _TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    """One message of the conversation; only its role and text matter here."""

    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[_TextPart] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)


class _StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class ChatRequest(BaseModel):
    """A ``POST /v1/chat/completions`` body (the fields the endpoint uses; others are ignored)."""

    model_config = ConfigDict(extra="ignore")
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: _StreamOptions | None = None
    n: int = 1
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    max_strong_tokens: int | None = Field(default=None, ge=1)
    trim_steps: bool = True

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    @property
    def output_cap(self) -> int | None:
        """The request's cap on output tokens (``max_completion_tokens``, else ``max_tokens``)."""
        return self.max_completion_tokens or self.max_tokens

    def problem(self) -> str:
        """The problem: the text of the last user message."""
        for m in reversed(self.messages):
            if m.role == "user":
                text = m.text().strip()
                if not text:
                    raise ApiError(
                        400, "the last user message is empty: it must hold the problem", param="messages"
                    )
                return text
        raise ApiError(
            400, "messages holds no user message: the last user message is the problem", param="messages"
        )


def _field(loc: tuple[Any, ...]) -> str:
    """``("messages", 0, "content")`` → ``messages[0].content`` (pydantic's union branches left out)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("str", "list[_TextPart]", "function-after", "tagged-union") or "[" in str(part):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out


def parse_request(raw: bytes) -> ChatRequest:
    """The checked request; an :class:`ApiError` (400) naming the field otherwise."""
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(
            400, f"the request body is not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc})"
        ) from None
    if not isinstance(data, dict):
        raise ApiError(400, f"the request body must be a JSON object, got {type(data).__name__}")
    try:
        req = ChatRequest.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = _field(tuple(err["loc"])) or "body"
        raise ApiError(400, f"{name}: {err['msg']}", param=name, code="invalid_value") from None
    if req.n != 1:
        raise ApiError(400, f"n: only n=1 is supported, got {req.n}", param="n", code="invalid_value")
    return req


def step_entry(rec: dict[str, Any]) -> dict[str, Any]:
    """The per-step decision shown to clients, from a loop trace entry."""
    out: dict[str, Any] = {"t": rec["t"], "action": rec.get("action")}
    if "r" in rec:
        out["score"] = rec["r"]
    if "r_strong" in rec:
        out["score_strong"] = rec["r_strong"]
    decision = rec.get("decision") or {}
    for key in ("belief", "predicted", "values", "source", "strong_tokens_left"):
        if key in decision:
            out[key] = decision[key]
    for who in ("weak", "strong"):
        if who in rec:
            out[f"{who}_tokens"] = rec[who]["tokens"]
    if "rejected" in rec:  # the loop's repetition guard stopped the solution at this step
        out["rejected"] = rec["rejected"]
    return out


def usage(trace: dict[str, Any]) -> dict[str, Any]:
    """The ``usage`` object of an answer (see the module docstring)."""
    strong, weak = int(trace["strong_tokens"]), int(trace["weak_tokens"])
    prm_calls = sum(("r" in s) + ("r_strong" in s) for s in trace["steps"])
    return {
        "prompt_tokens": 0,
        "completion_tokens": strong + weak,
        "total_tokens": strong + weak,
        "strong_tokens": strong,
        "weak_tokens": weak,
        "prm_calls": prm_calls,
    }


def _summary(trace: dict[str, Any], with_steps: bool) -> dict[str, Any]:
    out = {
        "policy": trace["policy"],
        "knob": trace["knob"],
        "stop": trace["stop"],
        "answer": trace["answer"],
        "n_steps": trace["n_steps"],
        "n_regenerated": trace["n_regenerated"],
        "strong_tokens": trace["strong_tokens"],
        "weak_tokens": trace["weak_tokens"],
        "wall_s": trace["wall_s"],
    }
    if with_steps:
        out["steps"] = [step_entry(s) for s in trace["steps"]]
    return out


def _finish_reason(trace: dict[str, Any]) -> str:
    """``stop`` when the solution ended; ``length`` when a step or token cap cut it."""
    return "stop" if trace["stop"] == "final" else "length"


@dataclass
class _Ids:
    id: str
    model: str
    created: int


def _ids(request_id: str, model: str, created: int | None) -> _Ids:
    return _Ids(request_id, model, int(time.time()) if created is None else created)


def answer_body(
    request_id: str,
    model: str,
    text: str,
    trace: dict[str, Any],
    *,
    with_steps: bool,
    created: int | None = None,
) -> dict[str, Any]:
    """The non-streamed ``chat.completion`` answer."""
    ids = _ids(request_id, model, created)
    return {
        "id": ids.id,
        "object": "chat.completion",
        "created": ids.created,
        "model": ids.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": _finish_reason(trace),
            }
        ],
        "usage": usage(trace),
        "trim": _summary(trace, with_steps),
    }


def chunk(
    request_id: str,
    model: str,
    created: int,
    *,
    delta: dict[str, Any] | None = None,
    finish_reason: str | None = None,
    extra: dict[str, Any] | None = None,
    usage_of: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One ``chat.completion.chunk``; with ``usage_of`` (a trace) the usage chunk (no choices)."""
    body: dict[str, Any] = {
        "id": request_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
    }
    if usage_of is not None:
        body["choices"] = []
        body["usage"] = usage(usage_of)
    else:
        body["choices"] = [
            {"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish_reason}
        ]
    if extra:
        body.update(extra)
    return body


def final_chunk(request_id: str, model: str, created: int, trace: dict[str, Any]) -> dict[str, Any]:
    """The last choice chunk: the finish reason and the ``trim`` summary (its steps were streamed already)."""
    return chunk(
        request_id,
        model,
        created,
        finish_reason=_finish_reason(trace),
        extra={"trim": _summary(trace, with_steps=False)},
    )


def sse(data: dict[str, Any] | str) -> bytes:
    """One server-sent event: ``data: <json>`` and a blank line (``[DONE]`` as it is)."""
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return f"data: {text}\n\n".encode()
