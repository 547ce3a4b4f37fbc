"""Weak model (M_w) through an OpenAI-compatible server, typically vLLM's (``vllm serve MODEL``).

One call per step with ``stop=["\\n\\n"]``. Two ways to continue the partial solution *literally* (the same
text prefix every step, so vLLM's automatic prefix caching makes the growing prefix nearly free):

``mode="completions"`` (default)
    ``/v1/completions`` with ``prompt = template.format(problem) + prefix``; the chat template is applied here
    (``prompt_template``, Qwen2.5-Math's by default), so the token prefix is identical between steps.
``mode="chat"``
    ``/v1/chat/completions`` with ``[user, assistant(prefix)]`` and vLLM's ``add_generation_prompt=False,
    continue_final_message=True`` (``extra_body``); the server applies the model's own chat template.
``mode="user"``
    user-turn continuation (problem and accepted steps in the user message): for chat-only endpoints that
    cannot continue an assistant message; used by
    :class:`~trim_pomdp.generation.backends.strong_openai.OpenAIStrongGenerator`.

End of solution: vLLM reports ``finish_reason="stop"`` with ``stop_reason=None`` for EOS (and the matched stop
string otherwise); a step holding a complete ``\\boxed{}`` also ends the solution.
"""

from __future__ import annotations

import os
import time
from typing import Any

from trim_pomdp._internal.optional import require
from trim_pomdp.generation.backends._common import (
    DEFAULT_SYSTEM_PROMPT,
    QWEN_MATH_TEMPLATE,
    RetryPolicy,
    call_with_retries,
    prompt_head,
    user_turn_messages,
)
from trim_pomdp.generation.base import (
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


def openai_retryable(exc: BaseException) -> bool:
    """429, 408, 409, 5xx and connection errors/timeouts are retried; other 4xx are not."""
    openai = require("openai", "openai", "the OpenAI-compatible backend")
    if isinstance(exc, (openai.APIConnectionError, openai.APITimeoutError)):
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return False


class OpenAICompatibleGenerator:
    """Step generator for any OpenAI-compatible endpoint (vLLM, SGLang, TGI, OpenAI, ...).

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
        For ``mode="completions"``: the prompt before the solution, with ``{problem}`` and ``{system}``
        fields.
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
        When vLLM reports that the step separator matched before any text (the model opened with a blank
        line), ask once more with ``min_tokens=2`` instead of ending the solution with an empty step.
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
        client: Any = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode == "completions" and "{problem}" not in prompt_template:
            raise ValueError("prompt_template must contain a '{problem}' field")
        if max_tokens_per_step < 1:
            raise ValueError(f"max_tokens_per_step must be >= 1, got {max_tokens_per_step}")
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
        self._heads: dict[str, str] = {}
        self.base_url = base_url
        self._api_key = api_key
        self._client = client

    # -- client -------------------------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            openai = require("openai", "openai", "the OpenAI-compatible backend")
            key = self._api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
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

    def build_messages(self, problem: str, steps: list[str]) -> tuple[list[dict[str, str]], dict[str, Any]]:
        msgs: list[dict[str, str]] = []
        if self.system_prompt:
            msgs.append({"role": "system", "content": self.system_prompt})
        extra: dict[str, Any] = {}
        if self.mode == "user":
            msgs += user_turn_messages(problem, steps)
        else:
            msgs.append({"role": "user", "content": problem})
            if steps:
                msgs.append({"role": "assistant", "content": solution_prefix(steps)})
                extra = {"add_generation_prompt": False, "continue_final_message": True}
        return msgs, extra

    def _sampling(self, max_tokens: int) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "max_tokens": max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "stop": [STEP_SEPARATOR],
        }
        if self.seed is not None:
            kw["seed"] = self.seed
        return kw

    async def _request(
        self, problem: str, steps: list[str], cap: int, more: dict[str, Any]
    ) -> tuple[Any, int]:
        kw = self._sampling(cap)
        if self.mode == "completions":
            prompt = self.build_prompt(problem, steps)
            body = {**self.extra_body, **more}

            async def call() -> Any:
                return await self.client.completions.create(
                    model=self.model, prompt=prompt, extra_body=body or None, **kw
                )
        else:
            messages, extra = self.build_messages(problem, steps)
            body = {**self.extra_body, **extra, **more}

            async def call() -> Any:
                return await self.client.chat.completions.create(
                    model=self.model, messages=messages, extra_body=body or None, **kw
                )

        return await call_with_retries(call, self.retry, openai_retryable, f"{self.model} step")

    def _parse(self, resp: Any) -> tuple[str, str, int, dict[str, Any], bool]:
        choice = resp.choices[0]
        raw = choice.text if self.mode == "completions" else (choice.message.content or "")
        finish_reason = choice.finish_reason
        extra_fields = getattr(choice, "model_extra", None) or {}
        has_stop_field = "stop_reason" in extra_fields
        stop_reason = extra_fields.get("stop_reason")
        tokens = int(resp.usage.completion_tokens) if resp.usage is not None else 0
        text, went_on = split_first_step(raw)
        if finish_reason == "length":
            finish = "length"
        elif went_on:
            finish = "step"
        elif (
            finish_reason == "stop"
            and has_stop_field
            and (stop_reason is None or isinstance(stop_reason, int))
        ):
            finish = "eos"  # vLLM: stop without a matched stop string = EOS (or a stop token id)
        else:
            finish = "step"
        if self.mode == "user" and finish == "eos":
            finish = "step"  # a chat turn ending is not the end of the solution
        finish = settle_finish(text, finish)
        info: dict[str, Any] = {"finish_reason": finish_reason, "stop_reason": stop_reason}
        # vLLM matched the separator before any text: the model opened with a blank line
        blank_start = finish == "empty" and has_stop_field and stop_reason == STEP_SEPARATOR
        return text, finish, tokens, info, blank_start

    async def generate_step(
        self, problem: str, steps: list[str], *, max_tokens: int | None = None
    ) -> StepResult:
        cap = step_cap(self.max_tokens_per_step, max_tokens)
        t0 = time.perf_counter()
        resp, attempts = await self._request(problem, steps, cap, {})
        text, finish, tokens, info, blank_start = self._parse(resp)
        if blank_start and self.retry_blank_start and cap > 2:
            # A whitespace-only "step" (the model wrote a blank line first) would end the solution. Ask again
            # with vLLM's min_tokens, which defers stop-string checks past the first tokens; the leading blank
            # lines are then stripped from the step.
            resp, more = await self._request(problem, steps, cap, {"min_tokens": 2})
            attempts += more
            text, finish, tokens2, info, _ = self._parse(resp)
            tokens += tokens2
            info["blank_start_retry"] = True
        final = ends_solution(text, finish)
        return StepResult(
            text=text,
            tokens=tokens,
            finish=finish,
            final=final,
            model=self.model,
            latency_s=time.perf_counter() - t0,
            attempts=attempts,
            extra=info,
        )
