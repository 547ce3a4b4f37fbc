"""Shared pieces of the backends: retries with backoff, the user-turn continuation prompt, micro-batching."""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from trim_pomdp.exceptions import InvalidParameterError, TrimPomdpError
from trim_pomdp.generation.base import StepResult, step_cap

__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "QWEN_MATH_TEMPLATE",
    "ContextFullError",
    "GenerationError",
    "IncompleteReplyError",
    "LocalStepGenerator",
    "MicroBatcher",
    "RetryPolicy",
    "call_with_retries",
    "check_template",
    "fill_template",
    "prompt_head",
    "redact",
    "register_secret",
    "strip_scaffolding",
    "user_turn_messages",
]

log = logging.getLogger("trim_pomdp.generation")
T = TypeVar("T")


class GenerationError(TrimPomdpError, RuntimeError):
    """A model call failed for good (non-retryable error, or retries exhausted)."""


class IncompleteReplyError(GenerationError):
    """A reply ended before the server said it was complete (a stream cut short, a body that is not JSON).

    Retried like a connection error; a reply that stays incomplete is never cached.
    """


class ContextFullError(GenerationError):
    """The server's context has no room left for a step; the loop ends the problem with what it has."""


class RetryPolicy:
    """Exponential backoff with full jitter.

    Attempt ``k`` (0-based) sleeps ``uniform(0, min(max_delay, base_delay * 2**k))``, or the server's
    ``retry-after`` when it gives one (capped at ``max_delay``).

    Parameters
    ----------
    max_retries : int
        Retries after the first attempt.
    base_delay, max_delay : float
        Seconds.
    timeout : float or None
        Wall-clock limit of one attempt (``asyncio.wait_for``), covering a server that accepts and then hangs.
    """

    def __init__(
        self,
        max_retries: int = 6,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
        timeout: float | None = 120.0,
        seed: int | None = None,
    ) -> None:
        if max_retries < 0 or base_delay < 0 or max_delay < 0 or (timeout is not None and timeout <= 0):
            raise ValueError("max_retries, base_delay, max_delay must be >= 0 and timeout > 0")
        self.max_retries = max_retries
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.timeout = timeout
        self._rng = random.Random(seed)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None and retry_after >= 0:
            return min(self.max_delay, retry_after)
        return self._rng.uniform(0.0, min(self.max_delay, self.base_delay * (2**attempt)))


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    for name in ("retry-after-ms", "retry-after"):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value)
        except ValueError:
            continue
        return seconds / 1000.0 if name.endswith("-ms") else seconds
    return None


def _always_retried(exc: BaseException) -> bool:
    """An incomplete reply, or a transport error that an SDK let through (a connection dropped mid-stream)."""
    if isinstance(exc, IncompleteReplyError):
        return True
    return type(exc).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore", "httpcore2")


async def call_with_retries(
    fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    is_retryable: Callable[[BaseException], bool],
    what: str,
) -> tuple[T, int]:
    """Run ``fn`` with the policy's per-attempt timeout, retrying retryable failures.

    Returns ``(result, attempts)``; raises :class:`GenerationError` (chained to the last error) otherwise.
    Error messages name the error class and status only — never headers or request bodies (which hold the API
    key).
    """
    attempt = 0
    while True:
        try:
            if policy.timeout is not None:
                result = await asyncio.wait_for(fn(), policy.timeout)
            else:
                result = await fn()
            return result, attempt + 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            timed_out = isinstance(exc, (asyncio.TimeoutError, TimeoutError))
            retryable = timed_out or _always_retried(exc) or is_retryable(exc)
            status = getattr(exc, "status_code", None)
            desc = f"{type(exc).__name__}" + (f" (HTTP {status})" if status else "")
            if timed_out:
                desc = f"timeout after {policy.timeout:g} s"
            if not retryable and isinstance(exc, GenerationError):
                raise  # already says what failed
            if not retryable or attempt >= policy.max_retries:
                raise GenerationError(
                    f"{what} failed after {attempt + 1} attempt(s): {desc}: {_safe_message(exc)}"
                ) from exc
            wait = policy.delay(attempt, _retry_after(exc))
            log.warning("%s: %s; retry %d/%d in %.2f s", what, desc, attempt + 1, policy.max_retries, wait)
            await asyncio.sleep(wait)
            attempt += 1


_KEYLIKE = re.compile(r"(sk-[A-Za-z0-9_\-]{6,}|sk-ant-[A-Za-z0-9_\-]{6,})")
#: every API key a backend of this process was given (values, never written anywhere): see :func:`redact`
_SECRETS: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember an API key so that :func:`redact` removes it from every message (blank values are ignored)."""
    if value and value.strip() and value != "EMPTY":
        _SECRETS.add(value)


def redact(text: str) -> str:
    """``text`` without any registered API key (whatever its form) and without ``sk-...``-like keys."""
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, "[redacted]")
    return _KEYLIKE.sub("[redacted]", text)


def _safe_message(exc: BaseException) -> str:
    return redact(str(exc))[:500]


DEFAULT_SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."

#: the fields of a prompt template (replaced literally; every other brace is kept)
TEMPLATE_PROBLEM, TEMPLATE_SYSTEM = "{problem}", "{system}"

#: Qwen2.5(-Math)-Instruct chat format, for raw completions against servers whose model uses it.
QWEN_MATH_TEMPLATE = (
    "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{problem}<|im_end|>\n<|im_start|>assistant\n"
)


def check_template(template: str, where: str = "the prompt template") -> str:
    """``template`` if it has a ``{problem}`` field; else an :class:`InvalidParameterError` naming ``where``."""
    if TEMPLATE_PROBLEM not in template:
        raise InvalidParameterError(
            f"{where} has no {TEMPLATE_PROBLEM} field: write {TEMPLATE_PROBLEM} where the problem goes "
            f"(and optionally {TEMPLATE_SYSTEM} for the system prompt); other braces are kept as written"
        )
    return template


def fill_template(template: str, problem: str, system_prompt: str | None) -> str:
    """``template`` with ``{system}`` and then ``{problem}`` replaced literally (no ``str.format``)."""
    return template.replace(TEMPLATE_SYSTEM, system_prompt or "").replace(TEMPLATE_PROBLEM, problem)


def prompt_head(
    problem: str, system_prompt: str | None, *, template: str | None, tokenizer: Any = None
) -> str:
    """The prompt text before the solution, for literal continuation.

    ``template`` with its ``{problem}`` and ``{system}`` fields filled in when it is given (a literal
    substitution: every other brace, such as LaTeX's ``\\boxed{10}``, stays as written); otherwise ``tokenizer``'s
    chat template applied to the system and user messages, with the generation prompt.
    """
    if template is not None:
        return fill_template(template, problem, system_prompt)
    msgs = [{"role": "system", "content": system_prompt}] if system_prompt else []
    msgs.append({"role": "user", "content": problem})
    return str(tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True))


#: the markers around the quoted partial solution of the user-turn prompt (removed from any reply that echoes them)
PARTIAL_OPEN, PARTIAL_CLOSE = "<partial_solution>", "</partial_solution>"

_USER_TURN = (
    "Solve the following math problem step by step. Steps are separated by a single blank line; put the final "
    "answer within \\boxed{{}}.\n\nProblem:\n{problem}\n\n{partial}"
    "Write ONLY the {which} step of the solution: one paragraph with no blank lines, no preamble, no tags, and "
    "do not repeat earlier steps. If this step reaches the final answer, write it within \\boxed{{}}.{marker_note}"
)


def user_turn_messages(problem: str, steps: list[str], marker: str | None = None) -> list[dict[str, str]]:
    """The user-turn continuation prompt: problem and accepted steps in the user turn; asks for the next step.

    Used for models that reject assistant prefill (Claude 4.6+) and for chat-only endpoints. Every accepted
    step is quoted verbatim, so consecutive calls of one problem share the whole prompt up to the new step.
    The reply is cleaned with :func:`strip_scaffolding`.
    """
    if steps:
        body = "\n\n".join(steps)
        partial = f"Partial solution so far:\n{PARTIAL_OPEN}\n{body}\n{PARTIAL_CLOSE}\n\n"
        which = "next"
    else:
        partial, which = "", "first"
    note = f" End the step with {marker}" if marker else ""
    return [
        {
            "role": "user",
            "content": _USER_TURN.format(problem=problem, partial=partial, which=which, marker_note=note),
        }
    ]


_SCAFFOLD = re.compile(
    r"</?partial_solution>|^\s*partial solution so far\s*:\s*",
    re.IGNORECASE | re.MULTILINE,
)


def strip_scaffolding(text: str, steps: list[str] | tuple[str, ...] = ()) -> str:
    """A reply to the user-turn prompt without the prompt's own scaffolding echoed into it.

    Removes the ``<partial_solution>`` tags and a "Partial solution so far:" label wherever the model copied
    them, and the accepted ``steps`` when the reply starts by repeating them, so that none of it reaches an
    accepted step (or is copied from there by the weak model).
    """
    out = _SCAFFOLD.sub("", text).lstrip()
    for step in steps:
        if not step or not out.startswith(step):
            break
        out = out[len(step) :].lstrip()
    return out


class MicroBatcher:
    """Collects concurrent requests into batches for a batch function.

    ``await batcher.submit(item)`` returns ``fn(items)[i]`` for the batch the item landed in. A batch is
    flushed when it reaches ``max_batch`` items or ``max_wait_s`` after its first item arrived. At most
    ``max_inflight`` batches run at once: 1 for a local model (one device), more for a server that batches on
    its own (vLLM's continuous batching), so that batches are not serialised behind each other's latency.
    ``fn`` is synchronous and runs in a worker thread (torch and vLLM release the GIL), or is a coroutine
    function awaited directly.
    """

    def __init__(
        self,
        fn: Callable[[list[Any]], Any],
        max_batch: int = 16,
        max_wait_s: float = 0.002,
        max_inflight: int = 1,
    ) -> None:
        if max_batch < 1 or max_inflight < 1:
            raise ValueError(f"max_batch and max_inflight must be >= 1, got {max_batch}, {max_inflight}")
        self.max_inflight = max_inflight
        self._slots: asyncio.Semaphore | None = None
        self._slots_loop: Any = None
        self._tasks: set[asyncio.Task] = set()
        self.fn = fn
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._pending: list[tuple[Any, asyncio.Future]] = []
        self._worker: asyncio.Task | None = None
        self.batches = 0
        self.items = 0
        self.busy_s = 0.0

    async def submit(self, item: Any) -> Any:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        self._pending.append((item, fut))
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._work())
        return await fut

    async def _work(self) -> None:
        # One worker per event loop. At most ``max_inflight`` batches run at once; items that arrive meanwhile
        # form the next batch, so the batch size adapts to the load.
        if self._slots is None or self._slots_loop is not asyncio.get_running_loop():
            self._slots = asyncio.Semaphore(self.max_inflight)
            self._slots_loop = asyncio.get_running_loop()
        while self._pending:
            if len(self._pending) < self.max_batch and self.max_wait_s > 0:
                await asyncio.sleep(self.max_wait_s)
            await self._slots.acquire()
            # an item whose caller was cancelled (a request that ended) is dropped: no call is made for it
            self._pending = [p for p in self._pending if not p[1].cancelled()]
            if not self._pending:
                self._slots.release()
                break
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        assert self._slots is not None  # set by _work before any batch starts
        self._slots.release()

    async def _run(self, batch: list[tuple[Any, asyncio.Future]]) -> None:
        items = [b[0] for b in batch]
        t0 = time.perf_counter()
        try:
            if asyncio.iscoroutinefunction(self.fn):
                results = await self.fn(items)
            else:
                results = await asyncio.to_thread(self.fn, items)
            if len(results) != len(items):
                raise RuntimeError(f"batch function returned {len(results)} results for {len(items)} items")
        except Exception as exc:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        finally:
            self.busy_s += time.perf_counter() - t0
        self.batches += 1
        self.items += len(items)
        for (_, fut), res in zip(batch, results, strict=True):
            if not fut.done():
                fut.set_result(res)


class LocalStepGenerator:
    """Base of the in-process generators: concurrent steps are batched into one ``_generate_many`` call.

    A subclass sets ``model``, ``max_tokens_per_step`` and ``_batcher`` (a :class:`MicroBatcher` over its
    ``_generate_many([(prompt, cap), ...])``) and implements :meth:`build_prompt`.
    """

    model: str
    max_tokens_per_step: int
    _batcher: MicroBatcher

    def build_prompt(self, problem: str, steps: list[str]) -> str:
        """The exact prompt: the chat-formatted problem and the partial solution."""
        raise NotImplementedError

    async def generate_step(
        self, problem: str, steps: list[str], *, max_tokens: int | None = None
    ) -> StepResult:
        """Generate the step that follows ``steps`` (batched with the other problems' requests)."""
        cap = step_cap(self.max_tokens_per_step, max_tokens)
        result: StepResult = await self._batcher.submit((self.build_prompt(problem, steps), cap))
        return result

    async def aclose(self) -> None:
        """Nothing to release (the model lives as long as the generator)."""
        return None
