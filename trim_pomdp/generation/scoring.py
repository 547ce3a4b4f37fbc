"""PRM scoring for the loop: batched across in-flight problems, cached.

A PRM *backend* is anything with ``score_batch(list[(problem, steps)]) -> list[list[float]]`` (synchronous,
e.g. :class:`trim_pomdp.prm.transformers_backend.TransformersPRM`) or ``async ascore_batch(...)`` (e.g.
:class:`trim_pomdp.prm.vllm_backend.VLLMPoolingPRM`). :class:`BatchedPRM` turns concurrent ``score`` calls
from many problems into batches for it and caches every prefix's scores.
"""

from __future__ import annotations

import math
import time
from typing import Any, Protocol, runtime_checkable

from trim_pomdp.exceptions import DataFormatError
from trim_pomdp.generation.backends._common import MicroBatcher, RetryPolicy, call_with_retries
from trim_pomdp.generation.cache import Cache, cache_key

__all__ = ["BatchedPRM", "StepScorer"]


@runtime_checkable
class StepScorer(Protocol):
    """What the generation loop asks for the PRM: ``await score(problem, steps)`` → one score in [0, 1] per step.

    :class:`BatchedPRM` implements it over any :class:`~trim_pomdp.prm.base.PRMBackend` (a synchronous
    ``score_batch``) or asynchronous ``ascore_batch`` backend.
    """

    model: str

    async def score(self, problem: str, steps: list[str]) -> list[float]: ...


class BatchedPRM:
    """Batches and caches PRM calls.

    Parameters
    ----------
    backend : object
        Has ``score_batch`` (sync, run in a worker thread) or ``ascore_batch`` (async).
    model : str
        Name of the PRM (cache key, records).
    cache : Cache, optional
    max_batch : int
        Largest batch sent to the backend.
    max_wait_s : float
        How long a partial batch waits for more requests.
    max_inflight : int, optional
        Batches in flight at once. Default: 1 for a synchronous (local) backend, 16 for an async (server)
        backend, whose server batches requests itself.
    retry : RetryPolicy, optional
        For an async (server) backend: the per-call timeout and the retries of a batch that failed in
        transit (connection, timeout, 429/5xx, a body that is not JSON or not one score per step). Default
        ``RetryPolicy()``.

    Notes
    -----
    Every score must be a finite probability in [0, 1]; a prefix whose scores are not fails its problem (the
    error names the PRM) and is never cached. The cache key holds the PRM's name and, for a server, its
    endpoint and served model, so a shared cache never replays another server's scores.
    """

    def __init__(
        self,
        backend: Any,
        model: str = "prm",
        *,
        cache: Cache | None = None,
        max_batch: int = 16,
        max_wait_s: float = 0.002,
        max_inflight: int | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.retry = retry or RetryPolicy()
        if hasattr(backend, "ascore_batch"):
            fn = self._ascore_with_retries
            inflight = max_inflight or 16
        elif hasattr(backend, "score_batch"):
            fn = backend.score_batch
            inflight = max_inflight or 1
        else:
            raise TypeError("a PRM backend needs a score_batch(items) or async ascore_batch(items) method")
        self.backend = backend
        self.model = model
        self.cache = cache
        #: what, besides the name, tells this PRM's scores apart in the cache (a server's endpoint and model)
        self.identity = {
            k: getattr(backend, a)
            for k, a in (("endpoint", "base_url"), ("served_model", "model"))
            if isinstance(getattr(backend, a, None), str)
        }
        self._batcher = MicroBatcher(fn, max_batch=max_batch, max_wait_s=max_wait_s, max_inflight=inflight)
        self.calls = 0
        self.wait_s = 0.0

    @property
    def batcher(self) -> MicroBatcher:
        return self._batcher

    async def _ascore_with_retries(self, items: list[Any]) -> list[list[float]]:
        from trim_pomdp.generation.backends.weak_openai import openai_retryable

        def retryable(exc: BaseException) -> bool:
            return isinstance(exc, DataFormatError) or openai_retryable(exc)

        out, _ = await call_with_retries(
            lambda: self.backend.ascore_batch(items), self.retry, retryable, f"PRM {self.model}"
        )
        return list(out)

    async def score(self, problem: str, steps: list[str]) -> list[float]:
        cache = self.cache
        key = cache_key("prm", self.model, self.identity, problem, list(steps)) if cache is not None else ""
        if cache is not None:
            hit = cache.get(key)
            if hit is not None:
                return [float(x) for x in hit]
        t0 = time.perf_counter()
        scores = await self._batcher.submit((problem, list(steps)))
        self.wait_s += time.perf_counter() - t0
        self.calls += 1
        scores = _checked(self.model, scores, len(steps))
        if cache is not None:
            cache.put(key, scores, kind="prm", model=self.model)
        return scores


def _checked(model: str, scores: Any, n_steps: int) -> list[float]:
    """``scores`` as floats, if they are one finite probability per step; else a :class:`DataFormatError`."""
    try:
        values = [float(x) for x in scores]
    except (TypeError, ValueError):
        raise DataFormatError(f"PRM {model} returned {scores!r}, not a list of scores") from None
    if len(values) != n_steps:
        raise DataFormatError(f"PRM {model} returned {len(values)} scores for {n_steps} steps")
    bad = [(i, v) for i, v in enumerate(values) if not (math.isfinite(v) and 0.0 <= v <= 1.0)]
    if bad:
        i, v = bad[0]
        raise DataFormatError(
            f"PRM {model} scored step {i + 1} {v!r}: scores must be probabilities in [0, 1] "
            "(is the server serving a process reward model with a softmax over two classes?)"
        )
    return values
