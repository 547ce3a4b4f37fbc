"""One TRIM run over a dataset into a run directory, from plain settings: the library call behind ``trim-pomdp run``.

:class:`RunConfig` holds what the command line takes (dataset, router specification, model specifications,
caps, retries); :func:`run_experiment` resolves the router, loads and shards the problems, builds the models
with :mod:`trim_pomdp.generation.backends.factory` behind one SQLite cache, and runs
:func:`~trim_pomdp.generation.loop.run_loop` with a progress display. Rerunning the same configuration resumes.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trim_pomdp._internal.progress import Progress
from trim_pomdp.datasets.problems import Problem, load_dataset, shard
from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.generation.backends.factory import build_prm, build_strong, build_weak, model_load_errors
from trim_pomdp.generation.cache import Cache, CachedGenerator
from trim_pomdp.generation.loop import LoopConfig, RunSummary, run_loop
from trim_pomdp.generation.scoring import BatchedPRM
from trim_pomdp.routers.spec import RouterSpec, resolve_router

__all__ = ["RunConfig", "run_experiment"]


@dataclass
class RunConfig:
    """The settings of one run (the options of ``trim-pomdp run``, under the same names).

    Attributes
    ----------
    dataset : str
        A named evaluation set (``math500``, ``aime``, ...) or a problems file.
    router : str
        A router specification (:mod:`trim_pomdp.routers.spec`).
    out_dir : path
        The run directory.
    data_dir : path, optional
        Local copies of the evaluation sets.
    weak, weak_model, weak_mode, weak_template, temperature :
        The weak model: specification, name on its server, continuation mode, prompt format, temperature
        (see :func:`~trim_pomdp.generation.backends.factory.build_weak`).
    strong, strong_url, strong_temperature, claude_step_mode, claude_continuation, claude_prompt_cache :
        The strong model (see :func:`~trim_pomdp.generation.backends.factory.build_strong`).
    prm, prm_model, prm_batch_size, device :
        The PRM (see :func:`~trim_pomdp.generation.backends.factory.build_prm`).
    concurrency, limit, shard, cache :
        Problems in flight, the first ``limit`` problems only (after sharding), ``K/N`` shard, the SQLite cache
        file (default ``out_dir/cache.sqlite``).
    max_steps, max_tokens_per_step, max_solution_tokens, timeout, max_retries :
        Step cap, output cap of one step, output cap of one solution, per-call timeout (s), retries of a call.
    """

    dataset: str
    router: str
    out_dir: str | Path
    data_dir: str | Path | None = None
    weak: str | None = None
    weak_model: str | None = None
    weak_mode: str = "completions"
    weak_template: str = "qwen"
    strong: str = "claude-sonnet-4-6"
    strong_url: str | None = None
    claude_step_mode: str = "marker"
    claude_continuation: str = "user"
    claude_prompt_cache: bool = False
    prm: str | None = None
    prm_model: str | None = None
    prm_batch_size: int = 16
    device: str | None = None
    concurrency: int = 64
    limit: int | None = None
    shard: str | None = None
    cache: str | Path | None = None
    max_steps: int = 30
    max_tokens_per_step: int = 512
    max_solution_tokens: int = 4096
    temperature: float = 0.0
    strong_temperature: float | None = None
    timeout: float = 120.0
    max_retries: int = 6

    def check(self, mode: str) -> None:
        """Raise :class:`InvalidParameterError` when a router of loop ``mode`` needs a model that is not given."""
        if mode in ("route", "weak") and not self.weak:
            raise InvalidParameterError(f"--router {self.router} needs --weak URL_OR_MODEL")
        if mode == "route" and not self.prm:
            raise InvalidParameterError(f"--router {self.router} needs --prm MODEL_OR_URL")


@dataclass
class _Parts:
    """What the loop runs with: the cached generators, the batched PRM and the cache they share."""

    cache: Cache
    weak: CachedGenerator | None = None
    strong: CachedGenerator | None = None
    prm: BatchedPRM | None = None

    async def aclose(self) -> None:
        for g in (self.weak, self.strong):
            if g is not None:
                await g.aclose()
        if self.prm is not None and hasattr(self.prm.backend, "aclose"):
            await self.prm.backend.aclose()


def _build_parts(config: RunConfig, mode: str, out: Path) -> _Parts:
    cache = Cache(config.cache or out / "cache.sqlite")
    try:
        return _add_models(_Parts(cache), config, mode)
    except BaseException:
        cache.close()
        raise


def _add_models(parts: _Parts, config: RunConfig, mode: str) -> _Parts:
    common: dict[str, Any] = {
        "max_tokens_per_step": config.max_tokens_per_step,
        "timeout": config.timeout,
        "max_retries": config.max_retries,
    }
    if mode in ("route", "weak"):
        weak = build_weak(
            str(config.weak),
            model_name=config.weak_model,
            mode=config.weak_mode,
            temperature=config.temperature,
            template=config.weak_template,
            **common,
        )
        parts.weak = CachedGenerator(weak, parts.cache)
    if mode in ("route", "strong"):
        strong = build_strong(
            config.strong,
            url=config.strong_url,
            step_mode=config.claude_step_mode,
            continuation=config.claude_continuation,
            prompt_cache=config.claude_prompt_cache,
            temperature=config.strong_temperature,
            **common,
        )
        parts.strong = CachedGenerator(strong, parts.cache)
    if mode == "route":
        backend, name = build_prm(
            str(config.prm),
            model_name=config.prm_model,
            batch_size=config.prm_batch_size,
            device=config.device,
        )
        parts.prm = BatchedPRM(backend, name, cache=parts.cache, max_batch=config.prm_batch_size)
    return parts


def _settings(config: RunConfig, parts: _Parts) -> dict[str, Any]:
    """What ``run.json`` records (a resumed run must match it)."""
    return {
        "dataset": config.dataset,
        "shard": config.shard,
        "router": config.router,
        "weak": parts.weak.model if parts.weak else None,
        "strong": parts.strong.model if parts.strong else None,
        "prm": parts.prm.model if parts.prm else None,
        "weak_params": parts.weak.cache_params() if parts.weak else None,
        "strong_params": parts.strong.cache_params() if parts.strong else None,
    }


def _problems(config: RunConfig) -> list[Problem]:
    problems = shard(load_dataset(config.dataset, config.data_dir), config.shard)
    return problems if config.limit is None else problems[: config.limit]


async def _run(
    problems: list[Problem], spec: RouterSpec, parts: _Parts, config: RunConfig, out: Path, show: bool
) -> RunSummary:
    loop_config = LoopConfig(
        max_steps=config.max_steps,
        max_solution_tokens=config.max_solution_tokens,
        concurrency=config.concurrency,
        mode=spec.mode,
        policy=spec.policy,
        knob=spec.knob,
    )
    label = f"{spec.policy} {'' if spec.knob is None else spec.knob}".strip()
    totals = {"done": 0, "correct": 0, "tokens": 0}
    with Progress(len(problems), label, enabled=show, unit="problems") as bar:

        def on_result(trace: dict[str, Any]) -> None:
            totals["done"] += 1
            totals["correct"] += int(trace["correct"])
            totals["tokens"] += trace["strong_tokens"]
            n = totals["done"]
            note = f"acc {totals['correct'] / n:.3f}  strong tok/q {totals['tokens'] / n:.0f}"
            bar.advance(note=f"{note}  cache hits {parts.cache.hits}")

        def on_error(problem: Problem, exc: BaseException) -> None:
            if show:
                print(f"{problem.id} failed: {exc}", file=sys.stderr, flush=True)

        try:
            summary = await run_loop(
                problems,
                parts.weak,
                parts.strong,
                parts.prm,
                spec.factory,
                loop_config,
                out,
                settings=_settings(config, parts),
                on_result=on_result,
                on_error=on_error,
            )
        finally:
            await parts.aclose()
        bar.set(summary.finished)
    return summary


def run_experiment(config: RunConfig, *, progress: bool = True) -> RunSummary:
    """Run TRIM on ``config.dataset`` into ``config.out_dir``, resuming what a killed run left there.

    Writes ``traces.jsonl``, ``records.jsonl``, ``errors.jsonl`` and ``run.json`` (see
    :mod:`trim_pomdp.generation.runs`) and a cache of every model and PRM call.

    Parameters
    ----------
    config : RunConfig
    progress : bool, default True
        Show a progress bar (plain lines when the output is not a terminal) and failed problems on stderr.

    Returns
    -------
    RunSummary
        What the run did; problems that failed are in ``errors.jsonl`` and are retried by the next run.
    """
    out = Path(config.out_dir)
    with model_load_errors():
        spec = resolve_router(config.router)
        config.check(spec.mode)
        problems = _problems(config)
        out.mkdir(parents=True, exist_ok=True)
        parts = _build_parts(config, spec.mode, out)
    try:
        return asyncio.run(_run(problems, spec, parts, config, out, progress))
    finally:
        parts.cache.close()
