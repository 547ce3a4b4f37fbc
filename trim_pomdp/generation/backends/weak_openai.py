"""Weak model (M_w) through an OpenAI-compatible server: vLLM, SGLang, TGI, llama.cpp, ``transformers serve``, ...

One call per step. Three ways to continue the partial solution:

``mode="completions"`` (default)
    ``/v1/completions`` with ``prompt = template(problem) + prefix``; the chat template is applied here
    (``prompt_template``, Qwen2.5-Math's by default, or the model's own through its tokenizer), so the token
    prefix is identical between steps and a server with prefix caching (vLLM, SGLang) re-uses it.
``mode="chat"``
    ``/v1/chat/completions`` with ``[user, assistant(prefix)]`` and ``add_generation_prompt=False,
    continue_final_message=True`` (vLLM's and SGLang's extension); the server applies the model's own chat
    template. Servers that ignore these fields open a new assistant turn instead, and every step would restart
    the solution: the first call checks, with one request, that the server continues a partial assistant
    message, and refuses to run otherwise.
``mode="user"``
    user-turn continuation (problem and accepted steps in the user message): for chat-only endpoints that
    cannot continue an assistant message; used by
    :class:`~trim_pomdp.generation.backends.strong_openai.OpenAIStrongGenerator`.

Step and end detection follow :mod:`~trim_pomdp.generation.backends.stop_detection`: the server's documented
way of reporting which stop ended a completion, found once per server (``step_detection="auto"``), or streaming
with a client-side cut where a server reports nothing. A request that does not fit the server's context is sent
again once with ``max_tokens`` lowered to the room left (the trace says so); with no room for a step left,
:class:`~trim_pomdp.generation.backends._common.ContextFullError` ends the problem.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from trim_pomdp._internal.optional import require
from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.generation.backends._common import (
    DEFAULT_SYSTEM_PROMPT,
    QWEN_MATH_TEMPLATE,
    ContextFullError,
    GenerationError,
    IncompleteReplyError,
    RetryPolicy,
    call_with_retries,
    check_template,
    prompt_head,
    register_secret,
    strip_scaffolding,
    user_turn_messages,
)
from trim_pomdp.generation.backends.stop_detection import (
    STEP_DETECTIONS,
    classify_stop,
    context_limit,
    probe_stop_string,
    report_from_probe,
    report_from_response,
    separator_matched,
)
from trim_pomdp.generation.base import (
    MIN_STEP_TOKENS,
    STEP_SEPARATOR,
    StepResult,
    ends_solution,
    settle_finish,
    solution_prefix,
    split_first_step,
    step_cap,
)

__all__ = ["OpenAICompatibleGenerator", "openai_retryable"]

MODES = ("completions", "chat", "user")
log = logging.getLogger("trim_pomdp.generation")

#: the probes: a problem whose greedy start shows how stops are reported, a count to continue in chat mode
_PROBE_PROBLEM = "What is 2 + 3?"
_COUNT_ASK, _COUNT_PARTIAL = "Count from 1 to 20, separated by commas.", "1, 2, 3, 4, 5, 6, 7, 8,"


def openai_retryable(exc: BaseException) -> bool:
    """429, 408, 409, 5xx, connection errors, timeouts and invalid response bodies are retried; other 4xx are not."""
    openai = require("openai", "openai", "the OpenAI-compatible backend")
    if isinstance(
        exc, (openai.APIConnectionError, openai.APITimeoutError, openai.APIResponseValidationError)
    ):
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return isinstance(exc, ValueError) and "JSON" in type(exc).__name__  # a 200 whose body is not JSON


@dataclass
class _Reply:
    """One answer: the text as sent, why it stopped, the choice's extra fields, its output tokens."""

    raw: str
    finish_reason: str | None
    fields: dict[str, Any] = field(default_factory=dict)
    tokens: int = 0
    exact: bool = True


def _loop_lock(holder: dict[str, Any]) -> asyncio.Lock:
    """A lock of the running event loop (a generator may be used from several ``asyncio.run`` calls)."""
    loop = asyncio.get_running_loop()
    if holder.get("loop") is not loop:
        holder.update(loop=loop, lock=asyncio.Lock())
    lock: asyncio.Lock = holder["lock"]
    return lock


class OpenAICompatibleGenerator:
    """Step generator for any OpenAI-compatible endpoint (vLLM, SGLang, TGI, llama.cpp, transformers serve, ...).

    Parameters
    ----------
    model : str
        Model name as the server knows it.
    base_url : str, optional
        e.g. ``http://localhost:8000/v1``; default ``OPENAI_BASE_URL`` or the OpenAI API.
    api_key : str, optional
        Default ``OPENAI_API_KEY``, or ``"EMPTY"`` for local servers without auth. Never logged.
    mode : {"completions", "chat", "user"}
        How the partial solution is continued (see the module docstring).
    prompt_template : str
        For ``mode="completions"``: the prompt before the solution, with a ``{problem}`` and an optional
        ``{system}`` field (replaced literally; LaTeX braces elsewhere are kept).
    system_prompt : str or None
        System message (``None`` for none).
    temperature, top_p, seed : sampling parameters (``seed`` is sent when not ``None``).
    max_tokens_per_step : int
        Per-call output cap.
    retry : RetryPolicy, optional
        Backoff and per-call timeout.
    extra_body : dict, optional
        Extra request fields (e.g. vLLM's ``top_k``, ``repetition_penalty``); part of the cache key.
    tokenizer : optional
        For ``mode="completions"``: the weak model's tokenizer; its chat template renders the prompt
        instead of ``prompt_template`` (use it for non-Qwen models).
    retry_blank_start : bool
        When the step separator matched before any text (the model opened with a blank line), ask once more
        (with vLLM's ``min_tokens=2`` where the server is vLLM, else with the blank line added to the prompt)
        instead of ending the solution with an empty step.
    step_detection : str
        ``"auto"`` (default), one of the server reports of
        :data:`~trim_pomdp.generation.backends.stop_detection.SERVER_REPORTS`, or ``"stream"`` (see
        :mod:`~trim_pomdp.generation.backends.stop_detection`).
    min_step_tokens : int
        A request that fits the context only with fewer output tokens than this is not sent.
    client : openai.AsyncOpenAI, optional
        Bring your own client (its retries should be 0; this class retries).
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        mode: str = "completions",
        prompt_template: str = QWEN_MATH_TEMPLATE,
        system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        max_tokens_per_step: int = 512,
        retry: RetryPolicy | None = None,
        extra_body: dict[str, Any] | None = None,
        tokenizer: Any = None,
        retry_blank_start: bool = True,
        step_detection: str = "auto",
        min_step_tokens: int = MIN_STEP_TOKENS,
        client: Any = None,
    ) -> None:
        if mode not in MODES:
            raise InvalidParameterError(f"mode must be one of {MODES}, got {mode!r}")
        if mode == "completions" and tokenizer is None:
            check_template(prompt_template)
        if max_tokens_per_step < 1:
            raise InvalidParameterError(f"max_tokens_per_step must be >= 1, got {max_tokens_per_step}")
        if step_detection not in STEP_DETECTIONS:
            raise InvalidParameterError(
                f"step_detection must be one of {STEP_DETECTIONS}, got {step_detection!r}"
            )
        self.model = model
        self.mode = mode
        self.prompt_template = prompt_template
        self.system_prompt = system_prompt
        self.temperature = temperature
        self.top_p = top_p
        self.seed = seed
        self.max_tokens_per_step = max_tokens_per_step
        self.retry = retry or RetryPolicy()
        self.extra_body = dict(extra_body or {})
        self.tokenizer = tokenizer
        self.retry_blank_start = retry_blank_start
        self.step_detection = step_detection
        self.min_step_tokens = min_step_tokens
        #: the server's report in use (``None`` until ``auto`` has found it)
        self.stop_report: str | None = None if step_detection == "auto" else step_detection
        self._continues = mode != "chat"
        self._lock: dict[str, Any] = {}
        self._heads: dict[str, str] = {}
        self.base_url = base_url
        self._api_key = api_key
        register_secret(api_key)
        self._client = client

    # -- client -------------------------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            openai = require("openai", "openai", "the OpenAI-compatible backend")
            key = self._api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
            register_secret(key)
            self._client = openai.AsyncOpenAI(
                base_url=self.base_url, api_key=key, max_retries=0, timeout=self.retry.timeout
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    def __repr__(self) -> str:  # the key is never part of the repr
        return f"{type(self).__name__}(model={self.model!r}, base_url={self.base_url!r}, mode={self.mode!r})"

    def cache_params(self) -> dict[str, Any]:
        p: dict[str, Any] = {
            "backend": "openai",
            "mode": self.mode,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
            "max_tokens": self.max_tokens_per_step,
            "system": self.system_prompt,
            "extra_body": self.extra_body,
            "step_detection": self.step_detection,
        }
        if self.mode == "completions":
            p["template"] = (
                self.prompt_template
                if self.tokenizer is None
                else getattr(self.tokenizer, "chat_template", None) or type(self.tokenizer).__name__
            )
        return p

    # -- requests -------------------------------------------------------------------------------------------
    def build_prompt(self, problem: str, steps: list[str]) -> str:
        """The exact completions prompt: chat-formatted problem + partial solution."""
        head = self._heads.get(problem)
        if head is None:
            template = self.prompt_template if self.tokenizer is None else None
            head = prompt_head(problem, self.system_prompt, template=template, tokenizer=self.tokenizer)
            if len(self._heads) < 100_000:
                self._heads[problem] = head
        return head + solution_prefix(steps)

    def build_messages(
        self, problem: str, steps: list[str], tail: str = ""
    ) -> tuple[list[dict[str, str]], dict[str, Any]]:
        """The chat messages (and the continuation fields) that ask for the step after ``steps``."""
        msgs: list[dict[str, str]] = []
        if self.system_prompt:
            msgs.append({"role": "system", "content": self.system_prompt})
        extra: dict[str, Any] = {}
        if self.mode == "user":
            msgs += user_turn_messages(problem, steps)
        else:
            msgs.append({"role": "user", "content": problem})
            if steps or tail:
                msgs.append({"role": "assistant", "content": solution_prefix(steps) + tail})
                extra = {"add_generation_prompt": False, "continue_final_message": True}
        return msgs, extra

    def _sampling(self, max_tokens: int, stop: list[str] | None, greedy: bool) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "max_tokens": max_tokens,
            "temperature": 0.0 if greedy else self.temperature,
            "top_p": 1.0 if greedy else self.top_p,
        }
        if stop:
            kw["stop"] = stop
        if self.seed is not None:
            kw["seed"] = self.seed
        return kw

    async def _create(
        self,
        problem: str,
        steps: list[str],
        cap: int,
        *,
        more: dict[str, Any] | None = None,
        tail: str = "",
        stop: list[str] | None = None,
        stream: bool = False,
        greedy: bool = False,
    ) -> Any:
        """One request (a response, or an SDK stream when ``stream``)."""
        kw = self._sampling(cap, stop, greedy)
        if stream:
            kw["stream"] = True
        if self.mode == "completions":
            body = {**self.extra_body, **(more or {})}
            prompt = self.build_prompt(problem, steps) + tail
            return await self.client.completions.create(
                model=self.model, prompt=prompt, extra_body=body or None, **kw
            )
        messages, extra = self.build_messages(problem, steps, tail)
        body = {**self.extra_body, **extra, **(more or {})}
        return await self.client.chat.completions.create(
            model=self.model, messages=messages, extra_body=body or None, **kw
        )

    async def _call(
        self, problem: str, steps: list[str], cap: int, info: dict[str, Any], **kw: Any
    ) -> tuple[Any, int]:
        """:meth:`_create` with retries; a request too long for the context is sent once more, shortened."""
        what = f"{self.model} step"
        try:
            return await call_with_retries(
                lambda: self._create(problem, steps, cap, **kw), self.retry, openai_retryable, what
            )
        except GenerationError as exc:
            room = self._room_left(exc, cap)
            if room is None:
                raise
            log.warning(
                "%s: the request does not fit the server's context; max_tokens lowered from %d to %d",
                self.model,
                cap,
                room,
            )
            info["max_tokens_limited"] = {"asked": cap, "sent": room}
            resp, attempts = await call_with_retries(
                lambda: self._create(problem, steps, room, **kw), self.retry, openai_retryable, what
            )
            return resp, attempts + 1

    def _room_left(self, exc: GenerationError, cap: int) -> int | None:
        """The output tokens that fit the context after a "maximum context length" error (``None``: not one).

        Raises :class:`ContextFullError` when the room left is below ``min_step_tokens``.
        """
        cause = exc.__cause__
        if getattr(cause, "status_code", None) not in (400, 413):
            return None
        limit = context_limit(str(getattr(cause, "message", cause)), getattr(cause, "body", None))
        if limit is None or limit[1] is None:
            return None
        context, prompt = limit[0], limit[1]
        room = context - prompt
        if room >= cap:
            return None  # the request would have fitted: the error is about something else
        if room < min(self.min_step_tokens, cap):
            raise ContextFullError(
                f"{self.model}: the server's context ({context} tokens) holds the prompt ({prompt} tokens) "
                f"with room for {max(0, room)} output tokens, fewer than a step needs ({self.min_step_tokens})"
            ) from exc
        return room

    def _reply_of(self, resp: Any) -> _Reply:
        choice = resp.choices[0]
        raw = choice.text if self.mode == "completions" else (choice.message.content or "")
        tokens = int(resp.usage.completion_tokens) if resp.usage is not None else 0
        return _Reply(
            raw or "", choice.finish_reason, dict(getattr(choice, "model_extra", None) or {}), tokens
        )

    async def _stream_reply(
        self, problem: str, steps: list[str], cap: int, info: dict[str, Any], **kw: Any
    ) -> tuple[_Reply, int]:
        """Stream without a stop string and close the stream at the first blank line after the step's text."""

        async def consume(limit: int) -> _Reply:
            stream = await self._create(problem, steps, limit, stream=True, **kw)
            parts: list[str] = []
            chunks, usage, finish, fields, cut = 0, None, None, {}, False
            try:
                async for chunk in stream:
                    if getattr(chunk, "usage", None) is not None:
                        usage = chunk.usage.completion_tokens
                    if not chunk.choices:
                        continue
                    c = chunk.choices[0]
                    piece = c.text if self.mode == "completions" else getattr(c.delta, "content", None)
                    if piece:
                        parts.append(piece)
                        chunks += 1
                        if STEP_SEPARATOR in "".join(parts).lstrip("\n"):
                            cut = True
                            break
                    if c.finish_reason:
                        finish, fields = c.finish_reason, dict(getattr(c, "model_extra", None) or {})
            finally:
                await stream.close()
            if not cut and finish is None:
                raise IncompleteReplyError("the stream ended before the server said the reply was complete")
            if cut or usage is None:
                return _Reply("".join(parts), finish, fields, chunks, exact=False)
            return _Reply("".join(parts), finish, fields, int(usage))

        what = f"{self.model} step"
        try:
            return await call_with_retries(lambda: consume(cap), self.retry, openai_retryable, what)
        except GenerationError as exc:
            room = self._room_left(exc, cap)
            if room is None:
                raise
            info["max_tokens_limited"] = {"asked": cap, "sent": room}
            out, attempts = await call_with_retries(lambda: consume(room), self.retry, openai_retryable, what)
            return out, attempts + 1

    # -- what the server reports ----------------------------------------------------------------------------
    async def _resolve(self, reply: _Reply) -> None:
        """Find the server's stop report (``step_detection="auto"``): from ``reply`` if it shows it, else a probe."""
        async with _loop_lock(self._lock):
            if self.stop_report is not None:
                return
            report = report_from_response(reply.fields, reply.raw, reply.finish_reason)
            if report is None and reply.finish_reason == "length":
                return  # this answer shows nothing; a later one will
            if report is None:
                report = await self._probe()
            log.info("%s at %s: step detection %r", self.model, self.base_url, report)
            self.stop_report = report

    async def _probe(self) -> str:
        """Ask for a greedy continuation, then again with a piece of it as the stop string; read the report."""
        info: dict[str, Any] = {}
        first, _ = await self._call(_PROBE_PROBLEM, [], 8, info, greedy=True)
        stop = probe_stop_string(self._reply_of(first).raw)
        if stop is None:
            return "stream"
        second, _ = await self._call(_PROBE_PROBLEM, [], 8, info, greedy=True, stop=[stop])
        r = self._reply_of(second)
        return report_from_probe(stop, r.raw, r.finish_reason, r.fields)

    async def check_continuation(self) -> None:
        """For ``mode="chat"``: check once that the server continues a partial assistant message.

        Raises
        ------
        GenerationError
            The server refuses ``continue_final_message`` or answers with a new assistant turn.
        """
        if self._continues:
            return
        async with _loop_lock(self._lock):
            if self._continues:
                return
            msgs = [{"role": "user", "content": _COUNT_ASK}, {"role": "assistant", "content": _COUNT_PARTIAL}]
            body = {**self.extra_body, "add_generation_prompt": False, "continue_final_message": True}

            async def ask() -> Any:
                return await self.client.chat.completions.create(
                    model=self.model, messages=msgs, max_tokens=4, temperature=0.0, extra_body=body
                )

            how = (
                f"--weak-mode chat needs a server that continues a partial assistant message (vLLM, SGLang); "
                f"use --weak-mode completions with {self.base_url}"
            )
            what = f"{self.model} continuation check"
            try:
                resp, _ = await call_with_retries(ask, self.retry, openai_retryable, what)
            except GenerationError as exc:
                status = getattr(exc.__cause__, "status_code", None)
                if status is not None and 400 <= status < 500:
                    raise GenerationError(
                        f"the server refused continue_final_message (HTTP {status}): {how}"
                    ) from exc
                raise
            reply = (resp.choices[0].message.content or "").strip()
            if not reply.startswith("9"):
                raise GenerationError(
                    f"the server did not continue a partial assistant message (asked to go on from "
                    f"{_COUNT_PARTIAL!r} it answered {reply[:40]!r}), so every step would restart the "
                    f"solution: {how}"
                )
            self._continues = True

    # -- one step -------------------------------------------------------------------------------------------
    async def _reply(
        self, problem: str, steps: list[str], cap: int, info: dict[str, Any], **kw: Any
    ) -> tuple[_Reply, int]:
        if self.mode != "user" and self.stop_report == "stream":
            return await self._stream_reply(problem, steps, cap, info, **kw)
        resp, attempts = await self._call(problem, steps, cap, info, stop=[STEP_SEPARATOR], **kw)
        reply = self._reply_of(resp)
        if self.mode != "user" and self.stop_report is None:
            await self._resolve(reply)
            if self.stop_report == "stream":  # this answer cannot be read: ask again, streamed
                again, more = await self._stream_reply(problem, steps, cap, info, **kw)
                return again, attempts + more
        return reply, attempts

    def _finish(self, reply: _Reply) -> str:
        if self.mode == "user":  # a chat turn ending is not the end of the solution
            return "length" if reply.finish_reason == "length" and STEP_SEPARATOR not in reply.raw else "step"
        # a streamed reply (or one that stopped at the length cap before the report was known) shows its
        # separator in the text, like a server that keeps the stop string
        report = self.stop_report if self.stop_report not in (None, "stream") else "stop_in_text"
        return classify_stop(report, reply.raw, reply.finish_reason, reply.fields)

    def _blank_start(self, reply: _Reply) -> bool:
        """Whether the separator matched before any text (the model opened the step with a blank line)."""
        if reply.raw.strip() or self.mode == "user":
            return False
        report = self.stop_report or "stop_in_text"
        return report != "stream" and separator_matched(report, reply.raw, reply.finish_reason, reply.fields)

    async def generate_step(
        self, problem: str, steps: list[str], *, max_tokens: int | None = None
    ) -> StepResult:
        cap = step_cap(self.max_tokens_per_step, max_tokens)
        t0 = time.perf_counter()
        await self.check_continuation()
        info: dict[str, Any] = {}
        reply, attempts = await self._reply(problem, steps, cap, info)
        tokens = reply.tokens
        if self._blank_start(reply) and self.retry_blank_start and cap > 2:
            # A whitespace-only "step" (the model wrote a blank line first) would end the solution. Ask again:
            # with vLLM's min_tokens, which defers stop-string checks past the first tokens, or with the blank
            # line added to the prompt on other servers; the leading blank lines never reach the step.
            vllm = self.stop_report == "stop_reason"
            reply, more = await self._reply(
                problem,
                steps,
                cap,
                info,
                **({"more": {"min_tokens": 2}} if vllm else {"tail": STEP_SEPARATOR}),
            )
            attempts += more
            tokens += reply.tokens
            info["blank_start_retry"] = True
        text, _ = split_first_step(strip_scaffolding(reply.raw, steps) if self.mode == "user" else reply.raw)
        finish = settle_finish(text, self._finish(reply))
        info.update(finish_reason=reply.finish_reason, step_detection=self.stop_report or self.step_detection)
        info.update({k: reply.fields[k] for k in ("stop_reason", "matched_stop") if k in reply.fields})
        if not reply.exact:
            info["tokens_exact"] = False
        return StepResult(
            text=text,
            tokens=tokens,
            finish=finish,
            final=ends_solution(text, finish),
            model=self.model,
            latency_s=time.perf_counter() - t0,
            attempts=attempts,
            extra=info,
        )
