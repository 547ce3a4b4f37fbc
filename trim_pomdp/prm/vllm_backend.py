"""Qwen2.5-Math-PRM scoring through a vLLM pooling server (``vllm serve Qwen/Qwen2.5-Math-PRM-7B``).

Recent vLLM serves process reward models on ``POST /pooling``: the request carries the rendered PRM input(s)
and the response holds, per input, one ``[P(negative), P(positive)]`` pair per ``<extra_0>`` step separator
(vLLM's STEP pooler with softmax; ``--task reward`` on vLLM <= 0.9, auto-detected pooling runner later). The
score of a step is its positive-class probability. The input text is the model card's chat format
(:func:`trim_pomdp.prm.qwen.format_prm_input`), written without a tokenizer, or rendered by the PRM's own
tokenizer when one is given (for a byte-exact template).

The HTTP call uses the ``openai`` SDK's generic ``post`` (connection pooling, timeouts); retries with backoff
on 429/5xx/connection errors.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any

from trim_pomdp._internal.optional import require
from trim_pomdp.exceptions import DataFormatError
from trim_pomdp.prm.qwen import POSITIVE_LABEL, SYSTEM_PROMPT, format_prm_input

__all__ = ["VLLMPoolingPRM"]


class VLLMPoolingPRM:
    """PRM backend for a vLLM pooling server (a :class:`~trim_pomdp.prm.base.PRMBackend`, plus ``ascore_batch``).

    Parameters
    ----------
    base_url : str
        Server root, e.g. ``http://localhost:8001`` (a trailing ``/v1`` is removed: ``/pooling`` sits at the
        root).
    model : str
        Served model name.
    api_key : str, optional
        Sent as a bearer token (``--api-key`` of ``vllm serve``); default ``"EMPTY"``.
    timeout : float
        Per-request timeout (s).
    max_retries : int
    tokenizer : optional
        The PRM's tokenizer, to render the chat template exactly.
    positive_label : int
        Index of the "step is correct" class in each returned pair.
    system_prompt : str or None
        System message of the prompt (Qwen2.5-Math-PRM's by default; ``None`` leaves it out).
    """

    def __init__(
        self,
        base_url: str,
        model: str = "Qwen/Qwen2.5-Math-PRM-7B",
        *,
        api_key: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 5,
        tokenizer: Any = None,
        positive_label: int = POSITIVE_LABEL,
        system_prompt: str | None = SYSTEM_PROMPT,
    ) -> None:
        url = base_url.rstrip("/")
        if url.endswith("/v1"):
            url = url[:-3]
        self.base_url = url
        self.model = model
        self.timeout = timeout
        self.max_retries = max_retries
        self.tokenizer = tokenizer
        self.positive_label = positive_label
        self.system_prompt = system_prompt
        self._api_key = api_key or "EMPTY"
        self._client: Any = None

    def __repr__(self) -> str:
        return f"VLLMPoolingPRM(base_url={self.base_url!r}, model={self.model!r})"

    @property
    def client(self) -> Any:
        """The ``openai.AsyncOpenAI`` client, made on first use."""
        if self._client is None:
            openai = require("openai", "vllm", "the vLLM pooling PRM backend")
            self._client = openai.AsyncOpenAI(
                base_url=self.base_url, api_key=self._api_key, max_retries=0, timeout=self.timeout
            )
        return self._client

    def _parse(self, body: Any, n_steps: list[int]) -> list[list[float]]:
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or len(data) != len(n_steps):
            raise DataFormatError(
                f"vLLM /pooling answered {type(body).__name__} without one 'data' entry per input "
                f"({len(n_steps)} expected); is {self.base_url} serving a PRM (pooling runner)?"
            )
        data = sorted(data, key=lambda d: d.get("index", 0))
        out: list[list[float]] = []
        for entry, n in zip(data, n_steps, strict=True):
            pairs = entry.get("data")
            if not isinstance(pairs, list) or len(pairs) != n:
                raise DataFormatError(
                    f"vLLM /pooling returned {len(pairs) if isinstance(pairs, list) else pairs!r} "
                    f"step scores for {n} steps"
                )
            out.append([float(p[self.positive_label]) if isinstance(p, list) else float(p) for p in pairs])
        return out

    async def ascore_batch(self, solutions: Sequence[tuple[str, Sequence[str]]]) -> list[list[float]]:
        """Score many solutions in one ``/pooling`` request."""
        openai = require("openai", "vllm", "the vLLM pooling PRM backend")
        texts = [format_prm_input(p, s, self.tokenizer, system=self.system_prompt) for p, s in solutions]
        body = {"model": self.model, "input": texts}
        for attempt in range(self.max_retries + 1):
            try:
                resp = await asyncio.wait_for(
                    self.client.post("/pooling", body=body, cast_to=object), self.timeout
                )
                return self._parse(resp, [len(s) for _, s in solutions])
            except (openai.APIConnectionError, openai.APIStatusError, asyncio.TimeoutError) as exc:
                status = getattr(exc, "status_code", None)
                retryable = status is None or status in (408, 429) or status >= 500
                if not retryable or attempt == self.max_retries:
                    raise
                await asyncio.sleep(random.uniform(0, min(30.0, 0.5 * 2**attempt)))
        raise AssertionError("unreachable")

    def score_batch(self, solutions: Sequence[tuple[str, Sequence[str]]]) -> list[list[float]]:
        """Synchronous form of :meth:`ascore_batch` (not from inside a running event loop)."""
        return asyncio.run(self.ascore_batch(solutions))

    def score(self, problem: str, steps: Sequence[str]) -> list[float]:
        """P(step correct) for every step of one solution."""
        return self.score_batch([(problem, steps)])[0]

    async def aclose(self) -> None:
        """Close the HTTP client."""
        if self._client is not None:
            await self._client.close()
            self._client = None
