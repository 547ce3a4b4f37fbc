"""Strong model (M_s): Claude through the Anthropic Messages API (official ``anthropic`` SDK, streaming).

Two API constraints shape this backend:

* **"\\n\\n" cannot be a stop sequence** (whitespace-only stop sequences are rejected). Default
  ``step_mode="marker"``: the prompt asks Claude to end its step with a visible marker (``<end_of_step>``) that
  is passed as the stop sequence, so the server stops right after the step and ``usage.output_tokens`` is the
  exact, billed cost of the call; the text is additionally cut client-side at its first blank line (any text
  past it is billed but discarded, which is rare with the marker). ``step_mode="cut"``: no marker; the stream
  is closed client-side as soon as a blank line arrives. That saves the over-generation, but the final
  ``usage`` is then never delivered: the cost is the last cumulative ``usage.output_tokens`` seen, raised to an
  estimate from the kept text (``len/4``) and flagged ``extra["tokens_exact"] = False``.
* **Assistant prefill is rejected by Claude 4.6+**. Default ``continuation="user"``: the problem and the
  accepted steps go into the user turn and Claude is asked for the next step only. ``continuation="prefill"``
  (older models only; refused for 4.6+ model ids) sends the partial solution as the last assistant message,
  with trailing whitespace removed (the API rejects it), and strips the leading whitespace of the reply.

Streaming usage is cumulative (``message_start`` then ``message_delta``): the latest value is kept, never
summed. Retries with exponential backoff and full jitter on 429, 408/409, 5xx, 529 ``overloaded_error`` (as
HTTP status or as an ``error`` event inside a 200 stream) and connection errors; a per-call timeout covers
hung connections. The key comes from ``ANTHROPIC_API_KEY`` (or ``api_key=``) and is never logged or stored.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from typing import Any

from trim_pomdp._internal.optional import require
from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.generation.backends._common import (
    DEFAULT_SYSTEM_PROMPT,
    IncompleteReplyError,
    RetryPolicy,
    call_with_retries,
    register_secret,
    strip_scaffolding,
    user_turn_messages,
)
from trim_pomdp.generation.base import (
    StepResult,
    ends_solution,
    settle_finish,
    solution_prefix,
    split_first_step,
    step_cap,
)

__all__ = [
    "DEFAULT_CLAUDE_MODEL",
    "STEP_MARKER",
    "AnthropicStepGenerator",
    "MissingAPIKeyError",
    "anthropic_retryable",
    "prefill_allowed",
]

DEFAULT_CLAUDE_MODEL = "claude-sonnet-4-6"
STEP_MARKER = "<end_of_step>"
RETRYABLE_TYPES = {"overloaded_error", "rate_limit_error", "api_error", "timeout_error"}


class MissingAPIKeyError(InvalidParameterError):
    """No Anthropic API key is configured."""


def prefill_allowed(model: str) -> bool:
    """Whether ``model`` accepts an assistant prefill (Claude 4.6 and later reject it)."""
    m = re.search(r"claude-(?:[a-z]+-)?(\d+)(?:[-.](\d{1,2}))?(?!\d)", model)
    if not m:
        return True
    major = int(m.group(1))
    minor = int(m.group(2)) if m.group(2) and len(m.group(2)) <= 2 else 0
    if major >= 5:
        return False
    return not (major == 4 and minor >= 6)


def anthropic_retryable(exc: BaseException) -> bool:
    """Retry 408/409/429/5xx/529, ``overloaded_error``-type errors inside a stream, connection errors, and
    replies that are not valid JSON (a 200 whose body or stream event cannot be read)."""
    anthropic = require("anthropic", "anthropic", "the Anthropic backend")
    if isinstance(exc, (anthropic.APIConnectionError, anthropic.APITimeoutError)):
        return True
    if isinstance(exc, anthropic.APIResponseValidationError) or isinstance(exc, json.JSONDecodeError):
        return True
    if isinstance(exc, anthropic.APIStatusError):
        if exc.status_code in (408, 409, 429) or exc.status_code >= 500:
            return True
        body = getattr(exc, "body", None)
        etype = body.get("error", {}).get("type") if isinstance(body, dict) else None
        return etype in RETRYABLE_TYPES
    return False


class AnthropicStepGenerator:
    """Claude as the strong step generator.

    Parameters
    ----------
    model : str
        Model id (default :data:`DEFAULT_CLAUDE_MODEL`).
    api_key : str, optional
        Default ``ANTHROPIC_API_KEY``; a missing key raises :class:`MissingAPIKeyError` at the first call.
    base_url : str, optional
        Default ``ANTHROPIC_BASE_URL`` or the public API.
    continuation : {"user", "prefill"}
    step_mode : {"marker", "cut"}
    temperature : float or None
        ``None`` (default) sends no temperature: Claude Opus 4.7+ reject it. Sent through ``extra_body``.
    max_tokens_per_step : int
    stream : bool
        Stream the response (default). ``step_mode="cut"`` requires it.
    retry : RetryPolicy, optional
    system_prompt : str or None
    prompt_cache : bool
        Ask for prompt caching (top-level ``cache_control``): the user-turn prompt of a problem grows by one
        step per call, so the cached prefix cuts input cost.
    client : anthropic.AsyncAnthropic, optional
    """

    def __init__(
        self,
        model: str = DEFAULT_CLAUDE_MODEL,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        continuation: str = "user",
        step_mode: str = "marker",
        temperature: float | None = None,
        max_tokens_per_step: int = 1024,
        stream: bool = True,
        retry: RetryPolicy | None = None,
        system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
        prompt_cache: bool = False,
        client: Any = None,
    ) -> None:
        if continuation not in ("user", "prefill"):
            raise InvalidParameterError(f"continuation must be 'user' or 'prefill', got {continuation!r}")
        if continuation == "prefill" and not prefill_allowed(model):
            raise InvalidParameterError(
                f"{model} rejects assistant prefill (Claude 4.6 and later); use continuation='user'"
            )
        if step_mode not in ("marker", "cut"):
            raise InvalidParameterError(f"step_mode must be 'marker' or 'cut', got {step_mode!r}")
        if step_mode == "cut" and not stream:
            raise InvalidParameterError("step_mode='cut' needs stream=True")
        self.model = model
        self.continuation = continuation
        self.step_mode = step_mode
        self.temperature = temperature
        self.max_tokens_per_step = max_tokens_per_step
        self.stream = stream
        self.retry = retry or RetryPolicy()
        self.system_prompt = system_prompt
        self.prompt_cache = prompt_cache
        self.base_url = base_url
        self._api_key = api_key
        register_secret(api_key)
        self._client = client

    def __repr__(self) -> str:
        return (
            f"AnthropicStepGenerator(model={self.model!r}, continuation={self.continuation!r}, "
            f"step_mode={self.step_mode!r})"
        )

    @property
    def client(self) -> Any:
        if self._client is None:
            anthropic = require("anthropic", "anthropic", "the Anthropic (Claude) backend")
            key = self._api_key or os.environ.get("ANTHROPIC_API_KEY")
            register_secret(key)
            if not key:
                raise MissingAPIKeyError(
                    "no Anthropic API key: set the ANTHROPIC_API_KEY environment variable "
                    "(export ANTHROPIC_API_KEY=...) or pass api_key=; "
                    "or choose an OpenAI-compatible strong model"
                )
            self._client = anthropic.AsyncAnthropic(
                api_key=key,
                base_url=self.base_url or os.environ.get("ANTHROPIC_BASE_URL") or None,
                max_retries=0,
                timeout=self.retry.timeout,
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    def cache_params(self) -> dict[str, Any]:
        return {
            "backend": "anthropic",
            "continuation": self.continuation,
            "step_mode": self.step_mode,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens_per_step,
            "system": self.system_prompt,
            "marker": STEP_MARKER if self.step_mode == "marker" else None,
        }

    def build_request(self, problem: str, steps: list[str], max_tokens: int) -> dict[str, Any]:
        """The Messages API request body (without ``stream``)."""
        marker = STEP_MARKER if self.step_mode == "marker" else None
        if self.continuation == "user":
            messages: list[dict[str, str]] = user_turn_messages(problem, steps, marker=marker)
        else:
            messages = [{"role": "user", "content": problem}]
            prefix = solution_prefix(steps).rstrip()
            if prefix:
                messages.append({"role": "assistant", "content": prefix})
        req: dict[str, Any] = {"model": self.model, "max_tokens": max_tokens, "messages": messages}
        system = self.system_prompt
        if marker and self.continuation == "prefill":
            system = (
                system + " " if system else ""
            ) + f"Write one step at a time; end each step with {marker}"
        if system:
            req["system"] = system
        if marker:
            req["stop_sequences"] = [marker]
        if self.temperature is not None:
            # recent SDKs no longer type sampling parameters (newer models reject them): send them raw
            req["extra_body"] = {"temperature": self.temperature}
        if self.prompt_cache:
            req["cache_control"] = {"type": "ephemeral"}
        return req

    async def _call_stream(self, req: dict[str, Any]) -> dict[str, Any]:
        text_parts: list[str] = []
        out_tokens = 0
        saw_final_usage = saw_stop = False
        stop_reason = stop_sequence = None
        cut = False
        events = 0
        stream = await self.client.messages.create(**req, stream=True)
        try:
            async for event in stream:
                events += 1
                etype = event.type
                if etype == "message_stop":
                    saw_stop = True
                elif etype == "message_start":
                    usage = getattr(event.message, "usage", None)
                    if usage is not None and usage.output_tokens is not None:
                        out_tokens = int(usage.output_tokens)
                elif etype == "content_block_delta":
                    delta = event.delta
                    if getattr(delta, "type", None) == "text_delta":
                        text_parts.append(delta.text)
                        if self.step_mode == "cut":
                            acc = "".join(text_parts)
                            if "\n\n" in acc.lstrip("\n"):
                                cut = True
                                break
                elif etype == "message_delta":
                    usage = getattr(event, "usage", None)
                    if usage is not None and usage.output_tokens is not None:
                        out_tokens = int(usage.output_tokens)  # cumulative: keep the latest, never add
                        saw_final_usage = True
                    stop_reason = getattr(event.delta, "stop_reason", None)
                    stop_sequence = getattr(event.delta, "stop_sequence", None)
        finally:
            await stream.close()
        if not cut and not (saw_stop and saw_final_usage):
            # a stream that closed early (or a 200 whose body held no events): retried, never cached
            raise IncompleteReplyError(
                f"the stream ended after {events} events without message_delta and message_stop"
            )
        return {
            "text": "".join(text_parts),
            "output_tokens": out_tokens,
            "exact": saw_final_usage and not cut,
            "stop_reason": "client_cut" if cut else stop_reason,
            "stop_sequence": stop_sequence,
        }

    async def _call_plain(self, req: dict[str, Any]) -> dict[str, Any]:
        msg = await self.client.messages.create(**req)
        text = "".join(getattr(b, "text", "") for b in msg.content if getattr(b, "type", None) == "text")
        return {
            "text": text,
            "output_tokens": int(msg.usage.output_tokens),
            "exact": True,
            "stop_reason": msg.stop_reason,
            "stop_sequence": msg.stop_sequence,
        }

    async def generate_step(
        self, problem: str, steps: list[str], *, max_tokens: int | None = None
    ) -> StepResult:
        req = self.build_request(problem, steps, step_cap(self.max_tokens_per_step, max_tokens))
        _ = self.client  # raise MissingAPIKeyError before any retry logic
        fn = self._call_stream if self.stream else self._call_plain
        t0 = time.perf_counter()
        out, attempts = await call_with_retries(
            lambda: fn(req), self.retry, anthropic_retryable, f"{self.model} step"
        )
        latency = time.perf_counter() - t0
        raw = out["text"].replace(STEP_MARKER, "")
        if self.continuation == "user":
            raw = strip_scaffolding(raw, steps)
        text, went_on = split_first_step(raw.lstrip() if self.continuation == "prefill" else raw)
        tokens = out["output_tokens"]
        exact = out["exact"]
        if not exact:
            tokens = max(tokens, math.ceil(len(text) / 4))
        stop_reason = out["stop_reason"]
        if stop_reason == "max_tokens" and not went_on:
            finish = "length"
        elif self.continuation == "prefill" and stop_reason == "end_turn" and not went_on:
            finish = "eos"
        else:
            finish = "step"
        finish = settle_finish(text, finish)
        final = ends_solution(text, finish)
        return StepResult(
            text=text,
            tokens=int(tokens),
            finish=finish,
            final=final,
            model=self.model,
            latency_s=latency,
            attempts=attempts,
            extra={
                "stop_reason": stop_reason,
                "stop_sequence": out["stop_sequence"],
                "tokens_exact": exact,
                "discarded_text": went_on,
            },
        )
