"""The upstream models of the endpoint, built once at start-up with the backends ``trim-pomdp run`` uses.

Only what the served routers need is built: the weak model for routed and weak-only routers, the strong model
for routed and strong-only ones, the PRM for routed ones. Every call can go through one SQLite cache
(``--cache``); there is none by default, so a long-running server's memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.generation.backends._common import RetryPolicy
from trim_pomdp.generation.backends.factory import build_models, model_load_errors
from trim_pomdp.generation.cache import Cache, CachedGenerator
from trim_pomdp.generation.scoring import BatchedPRM

__all__ = ["Upstreams", "build_upstreams"]


@dataclass
class Upstreams:
    """The weak and strong generators and the batched PRM (``None`` where no served router needs one)."""

    weak: Any = None
    strong: Any = None
    prm: Any = None
    cache: Cache | None = None

    async def aclose(self) -> None:
        """Close the clients and the cache."""
        for g in (self.weak, self.strong):
            if g is not None:
                await g.aclose()
        backend = getattr(self.prm, "backend", None)
        if backend is not None and hasattr(backend, "aclose"):
            await backend.aclose()
        if self.cache is not None:
            self.cache.close()
            self.cache = None


def _needs(modes: Iterable[str]) -> tuple[bool, bool, bool]:
    modes = set(modes)
    return bool(modes & {"route", "weak"}), bool(modes & {"route", "strong"}), "route" in modes


def build_upstreams(config: Any, modes: Iterable[str]) -> Upstreams:
    """Build what routers of loop ``modes`` need from a :class:`~trim_pomdp.serve.config.ServeConfig`.

    Raises
    ------
    InvalidParameterError
        A needed model is not given (``--weak``, ``--prm``), or the strong model is Claude and
        ``ANTHROPIC_API_KEY`` is not set.
    """
    need_weak, need_strong, need_prm = _needs(modes)
    if need_weak and not config.weak:
        raise InvalidParameterError("the routers served need a weak model: pass --weak URL_OR_MODEL")
    if need_prm and not config.prm:
        raise InvalidParameterError("the routers served need a PRM: pass --prm MODEL_OR_URL")
    ups = Upstreams(cache=Cache(config.cache) if config.cache else None)
    try:
        with model_load_errors():
            models = build_models(config, weak=need_weak, strong=need_strong, prm=need_prm)
        ups.weak, ups.strong = models.get("weak"), models.get("strong")
        if need_prm:
            backend, name = models["prm"]
            retry = RetryPolicy(max_retries=config.max_retries, timeout=config.timeout)
            ups.prm = BatchedPRM(backend, name, cache=ups.cache, max_batch=config.prm_batch_size, retry=retry)
    except BaseException:
        if ups.cache is not None:
            ups.cache.close()
        raise
    if ups.cache is not None:
        ups.weak = CachedGenerator(ups.weak, ups.cache) if ups.weak is not None else None
        ups.strong = CachedGenerator(ups.strong, ups.cache) if ups.strong is not None else None
    return ups
