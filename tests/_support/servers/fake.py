"""Fake-but-real-wire-format model servers (stdlib ``ThreadingHTTPServer``; no extra dependencies).

* :class:`FakeOpenAIServer` (:mod:`~tests._support.servers.openai_server`) — ``POST /v1/completions``,
  ``/v1/chat/completions`` (plain and SSE streaming), ``GET /v1/models`` and vLLM's ``POST /pooling`` for a
  process reward model, in the dialect of one server family (``flavor=``: ``vllm``, the default, ``sglang``,
  ``tgi``, ``llamacpp``, ``transformers``; see :mod:`~tests._support.servers.flavors`).
* :class:`FakeAnthropicServer` (:mod:`~tests._support.servers.anthropic_server`) — ``POST /v1/messages``, plain
  and SSE streaming (``message_start`` … ``message_delta`` with cumulative ``usage`` … ``message_stop``),
  validating what the real API validates here: ``x-api-key`` or ``Authorization: Bearer``, whitespace-only stop
  sequences (400), assistant prefill on Claude 4.6+ (400), trailing whitespace in a final assistant message
  (400).

Both can be told to fail: ``server.fail_next(kind, n)`` with ``kind`` one of ``"429"`` (with ``retry-after``),
``"500"``, ``"529"``, ``"hang"``, ``"invalid_json"`` (a 200 whose body is not JSON), ``"echo_key"`` (a 400 that
quotes the API key it was sent), and for the Anthropic
server ``"overloaded_stream"`` (an ``error`` event mid-stream), ``"cut_stream"`` (the stream closes after a few
deltas, without ``message_delta`` / ``message_stop``), ``"invalid_json_stream"`` (an event whose data is not
JSON); for the PRM ``"nan_scores"`` and ``"big_scores"``. ``delay_s`` adds a fixed latency per call
(benchmarks).

The scripted model and the in-process stand-ins (:class:`ScriptedGenerator`, :class:`FakePRMBackend`) are
described in :mod:`~tests._support.servers.common`.
"""

from __future__ import annotations

from typing import Any

from tests._support.servers.anthropic_server import FakeAnthropicServer
from tests._support.servers.common import ScriptedMathModel, count_tokens, prm_scores_of
from tests._support.servers.openai_server import FakeOpenAIServer

__all__ = [
    "FakeAnthropicServer",
    "FakeOpenAIServer",
    "FakePRMBackend",
    "ScriptedGenerator",
    "ScriptedMathModel",
    "count_tokens",
    "prm_scores_of",
]


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
