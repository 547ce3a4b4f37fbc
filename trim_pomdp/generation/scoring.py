"""PRM scoring for the loop: batched across in-flight problems, cached.

A PRM *backend* is anything with ``score_batch(list[(problem, steps)]) -> list[list[float]]`` (synchronous,
e.g. :class:`trim_pomdp.prm.transformers_backend.TransformersPRM`) or ``async ascore_batch(...)`` (e.g.
:class:`trim_pomdp.prm.vllm_backend.VLLMPoolingPRM`). :class:`BatchedPRM` turns concurrent ``score`` calls
from many problems into batches for it and caches every prefix's scores.
"""

from __future__ import annotations

import time
from typing import Any, Protocol, runtime_checkable

from trim_pomdp.generation.backends._common import MicroBatcher
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
    ) -> None:
        if hasattr(backend, "ascore_batch"):
            fn = backend.ascore_batch
            inflight = max_inflight or 16
        elif hasattr(backend, "score_batch"):
            fn = backend.score_batch
            inflight = max_inflight or 1
        else:
            raise TypeError("a PRM backend needs a score_batch(items) or async ascore_batch(items) method")
        self.backend = backend
        self.model = model
        self.cache = cache
        self._batcher = MicroBatcher(fn, max_batch=max_batch, max_wait_s=max_wait_s, max_inflight=inflight)
        self.calls = 0
        self.wait_s = 0.0

    @property
    def batcher(self) -> MicroBatcher:
        return self._batcher

    async def score(self, problem: str, steps: list[str]) -> list[float]:
        cache = self.cache
        key = cache_key("prm", self.model, {}, problem, list(steps)) if cache is not None else ""
        if cache is not None:
            hit = cache.get(key)
            if hit is not None:
                return [float(x) for x in hit]
        t0 = time.perf_counter()
        scores = await self._batcher.submit((problem, list(steps)))
        self.wait_s += time.perf_counter() - t0
        self.calls += 1
        scores = [float(x) for x in scores]
        if len(scores) != len(steps):
            raise RuntimeError(f"PRM {self.model} returned {len(scores)} scores for {len(steps)} steps")
        if cache is not None:
            cache.put(key, scores, kind="prm", model=self.model)
        return scores
