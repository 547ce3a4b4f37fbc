"""One TRIM run over a dataset into a run directory, from plain settings: the library call behind ``trim-pomdp run``.

:class:`RunConfig` holds what the command line takes (dataset, router specification, model specifications,
caps, retries); :func:`run_experiment` checks the settings and that the extras they need are installed, resolves
the router, loads and shards the problems, builds the models with
:mod:`trim_pomdp.generation.backends.factory` behind one SQLite cache, and runs
:func:`~trim_pomdp.generation.loop.run_loop` with a progress display. Rerunning the same configuration resumes.
Nothing is written before every check has passed and every model is built, and a run that fails before finishing
a single problem removes the directory it created.
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trim_pomdp._internal.optional import require
from trim_pomdp._internal.progress import Progress
from trim_pomdp.datasets.answers import parse_answer_formats
from trim_pomdp.datasets.problems import Problem, load_dataset, local_dataset_file, shard
from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.generation.backends._common import RetryPolicy, redact
from trim_pomdp.generation.backends.factory import (
    ModelSettings,
    build_models,
    is_url,
    model_load_errors,
)
from trim_pomdp.generation.backends.stop_detection import STEP_DETECTIONS
from trim_pomdp.generation.backends.strong_anthropic import MissingAPIKeyError
from trim_pomdp.generation.cache import Cache, CachedGenerator
from trim_pomdp.generation.guards import REPETITION_POLICIES
from trim_pomdp.generation.loop import LoopConfig, RunSummary, run_loop
from trim_pomdp.generation.runs import RUN_JSON, RUN_LOCK, TRACES
from trim_pomdp.generation.scoring import BatchedPRM
from trim_pomdp.routers.spec import RouterSpec, resolve_router

__all__ = ["RunConfig", "run_experiment"]

#: Seconds between plain progress lines when the output is not a terminal (also while no problem finishes).
PROGRESS_INTERVAL_S = 10.0


async def _heartbeat(bar: Progress) -> None:
    """Keep a plain progress line coming while problems are slow to finish (a terminal's bar updates itself)."""
    while True:
        await asyncio.sleep(PROGRESS_INTERVAL_S)
        bar.set(bar.completed)


@dataclass
class RunConfig(ModelSettings):
    """The settings of one run (the options of ``trim-pomdp run``, under the same names).

    The models are the fields of :class:`~trim_pomdp.generation.backends.factory.ModelSettings` (keyword
    arguments); the others follow.

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
    concurrency, limit, shard, cache :
        Problems in flight, the first ``limit`` problems only (after sharding), ``K/N`` shard, the SQLite cache
        file (default ``out_dir/cache.sqlite``).
    max_steps, max_solution_tokens :
        Step cap and output cap of one solution.
    answer_format : str, optional
        How final answers are read: a comma list of :data:`~trim_pomdp.datasets.answers.ANSWER_FORMATS`
        (default all, in that order).
    repetition : {"stop", "off"}
        The repetition guard (:mod:`~trim_pomdp.generation.guards`).
    """

    dataset: str
    router: str
    out_dir: str | Path
    data_dir: str | Path | None = None
    concurrency: int = 64
    limit: int | None = None
    shard: str | None = None
    cache: str | Path | None = None
    max_steps: int = 30
    max_solution_tokens: int = 4096
    answer_format: str | None = None
    repetition: str = "stop"

    def check(self, mode: str) -> None:
        """Raise :class:`InvalidParameterError` for a setting out of its range, or when a router of loop
        ``mode`` needs a model that is not given."""
        if mode in ("route", "weak") and not self.weak:
            raise InvalidParameterError(f"--router {self.router} needs --weak URL_OR_MODEL")
        if mode == "route" and not self.prm:
            raise InvalidParameterError(f"--router {self.router} needs --prm MODEL_OR_URL")
        if not (isinstance(self.timeout, (int, float)) and math.isfinite(self.timeout) and self.timeout > 0):
            raise InvalidParameterError(
                f"timeout must be a finite number of seconds > 0, got {self.timeout!r}"
            )
        counts = {
            "max_retries": (self.max_retries, 0),
            "max_tokens_per_step": (self.max_tokens_per_step, 1),
            "max_solution_tokens": (self.max_solution_tokens, 1),
            "max_steps": (self.max_steps, 1),
            "prm_batch_size": (self.prm_batch_size, 1),
            "concurrency": (self.concurrency, 1),
            "limit": (1 if self.limit is None else self.limit, 1),
        }
        for name, (value, low) in counts.items():
            if not isinstance(value, int) or value < low:
                raise InvalidParameterError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.step_detection not in STEP_DETECTIONS:
            raise InvalidParameterError(
                f"step detection must be one of {STEP_DETECTIONS}, got {self.step_detection!r}"
            )
        if self.repetition not in REPETITION_POLICIES:
            raise InvalidParameterError(
                f"repetition must be one of {REPETITION_POLICIES}, got {self.repetition!r}"
            )
        parse_answer_formats(self.answer_format)

    def require_extras(self, mode: str) -> None:
        """Check, before anything is loaded, that the packages the models and the dataset need are installed
        (:class:`~trim_pomdp.exceptions.BackendUnavailableError` names the extra), and that Claude has a key."""
        needs: list[tuple[str, str, str]] = []
        if mode in ("route", "weak"):
            if is_url(str(self.weak)):
                needs.append(("openai", "openai", "a weak model server"))
                if self.weak_template == "auto":
                    needs.append(("transformers", "hf", "--weak-template auto"))
            else:
                needs += [("torch", "hf", "a local weak model"), ("transformers", "hf", "a local weak model")]
        if mode in ("route", "strong"):
            if self.strong_url:
                needs.append(("openai", "openai", "an OpenAI-compatible strong model"))
            else:
                needs.append(("anthropic", "anthropic", "Claude as the strong model"))
                if not os.environ.get("ANTHROPIC_API_KEY"):
                    raise MissingAPIKeyError(
                        "the strong model is Claude but ANTHROPIC_API_KEY is not set: export "
                        "ANTHROPIC_API_KEY=... (or use --strong-url URL for an OpenAI-compatible strong model)"
                    )
        if mode == "route":
            if is_url(str(self.prm)):
                needs.append(("openai", "openai", "a PRM server"))
            else:
                needs += [("torch", "hf", "a local PRM"), ("transformers", "hf", "a local PRM")]
        if local_dataset_file(self.dataset, self.data_dir) is None:
            needs.append(("datasets", "data", f"loading {self.dataset!r} from the Hugging Face hub"))
        for module, extra, feature in dict.fromkeys(needs):
            require(module, extra, feature)


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


def _build_models(config: RunConfig, mode: str) -> dict[str, Any]:
    """The weak and strong generators and the PRM backend (with its name) that a run of ``mode`` needs."""
    return build_models(
        config, weak=mode in ("route", "weak"), strong=mode in ("route", "strong"), prm=mode == "route"
    )


def _with_cache(models: dict[str, Any], config: RunConfig, out: Path) -> _Parts:
    """The models behind one SQLite cache (``config.cache``, default ``out/cache.sqlite``)."""
    cache = Cache(config.cache or out / "cache.sqlite")
    parts = _Parts(cache)
    if "weak" in models:
        parts.weak = CachedGenerator(models["weak"], cache)
    if "strong" in models:
        parts.strong = CachedGenerator(models["strong"], cache)
    if "prm" in models:
        backend, name = models["prm"]
        retry = RetryPolicy(max_retries=config.max_retries, timeout=config.timeout)
        parts.prm = BatchedPRM(backend, name, cache=cache, max_batch=config.prm_batch_size, retry=retry)
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
        answer_formats=parse_answer_formats(config.answer_format),
        repetition=config.repetition,
    )
    label = f"{spec.policy} {'' if spec.knob is None else spec.knob}".strip()
    totals = {"done": 0, "correct": 0, "tokens": 0}
    with Progress(len(problems), label, enabled=show, unit="problems", interval=PROGRESS_INTERVAL_S) as bar:

        def on_result(trace: dict[str, Any]) -> None:
            totals["done"] += 1
            totals["correct"] += int(trace["correct"])
            totals["tokens"] += trace["strong_tokens"]
            n = totals["done"]
            note = f"acc {totals['correct'] / n:.3f}  strong tok/q {totals['tokens'] / n:.0f}"
            bar.advance(note=f"{note}  cache hits {parts.cache.hits}")

        def on_error(problem: Problem, exc: BaseException) -> None:
            if show:
                print(redact(f"{problem.id} failed: {exc}"), file=sys.stderr, flush=True)

        beat = asyncio.get_running_loop().create_task(_heartbeat(bar))
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
            beat.cancel()
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
        config.require_extras(spec.mode)
        problems = _problems(config)
        models = _build_models(config, spec.mode)
    created = not out.exists()
    parts: _Parts | None = None
    try:
        out.mkdir(parents=True, exist_ok=True)
        parts = _with_cache(models, config, out)
        return asyncio.run(_run(problems, spec, parts, config, out, progress))
    except BaseException:  # (the models' clients open on first use: unused ones hold nothing)
        if created:
            _remove_if_unused(out, parts)
        raise
    finally:
        if parts is not None:
            parts.cache.close()


def _remove_if_unused(out: Path, parts: _Parts | None) -> None:
    """Remove a run directory this call created if no problem finished and its cache holds nothing."""
    if (out / TRACES).exists() and (out / TRACES).stat().st_size > 0:
        return
    cache_here = parts is None or Path(parts.cache.path).parent == out
    if parts is not None and cache_here and len(parts.cache) > 0:
        return  # paid-for calls: keep them for the next run
    if parts is not None:
        parts.cache.close()
    names = {RUN_JSON, RUN_LOCK, TRACES, "records.jsonl", "errors.jsonl"}
    names |= {"cache.sqlite", "cache.sqlite-wal", "cache.sqlite-shm"} if cache_here else set()
    if all(p.name in names for p in out.iterdir()):
        shutil.rmtree(out, ignore_errors=True)
