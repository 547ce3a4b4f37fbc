"""Episodes of real problems for training the RL routers: the generation loop, one decision at a time.

:class:`LiveEpisodes` is an :class:`~trim_pomdp.types.EpisodeBatch` whose episodes are problems solved by the real
models: each row runs :func:`~trim_pomdp.generation.loop.solve_problem` (the one loop of ``trim-pomdp run``) with
a router that hands every observation out and waits for the action (the loop awaits a router decision that is
awaitable). ``reset(n)`` starts ``n`` problems, ``step(actions)`` answers every waiting row and runs the event
loop until each row asks its next question or ends, so every row's model and PRM calls are in flight together:
the servers and the PRM batcher see batches. ``reset_rows`` restarts finished rows with the next problems, which
is what lets :class:`~trim_pomdp.routers.rl.vec.EpisodeVecEnv` keep ``n`` episodes in flight.

Every generation and every PRM score goes through the run's SQLite cache, so an episode that repeats a prefix
(the same problem with the same decisions so far, a second λ, TRIM-Seq trained after TRIM-Agg, a resumed run)
costs a lookup, not a model call. :class:`LiveModels` holds the models, the cache and the event loop they share;
:meth:`LiveModels.cache_stats` counts hits and misses.

A row whose problem fails (its calls failed after their retries) ends with ``failed`` set: the training
environment truncates that episode instead of scoring it. When the first problems all fail, the error is raised
(a wrong URL or model name, not a flaky problem).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from trim_pomdp.constants import ACTIONS
from trim_pomdp.datasets.answers import parse_answer_formats
from trim_pomdp.datasets.problems import Problem
from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.generation.backends._common import redact
from trim_pomdp.generation.loop import LoopConfig, solve_problem
from trim_pomdp.types import BatchObservation, StepObservation

__all__ = ["LiveEpisodes", "LiveModels", "loop_config", "split_problems", "train_live"]

T = TypeVar("T")


def loop_config(run: Any, *, policy: str = "train", knob: Any = None) -> LoopConfig:
    """The :class:`LoopConfig` of a :class:`~trim_pomdp.generation.experiment.RunConfig` (caps, answers, guard)."""
    return LoopConfig(
        max_steps=run.max_steps,
        max_solution_tokens=run.max_solution_tokens,
        concurrency=run.concurrency,
        mode="route",
        policy=policy,
        knob=knob,
        answer_formats=parse_answer_formats(run.answer_format),
        repetition=run.repetition,
    )


class LiveModels:
    """The weak and strong generators, the batched PRM, their cache and the event loop they run on.

    Parameters
    ----------
    weak, strong : StepGenerator
        Usually :class:`~trim_pomdp.generation.cache.CachedGenerator` objects.
    prm : StepScorer
        Usually a :class:`~trim_pomdp.generation.scoring.BatchedPRM` with the same cache.
    config : LoopConfig
        Caps and answer formats of every episode (``mode`` is ``route``).
    cache : Cache, optional
        The cache behind the models (for :meth:`cache_stats`; closed by :meth:`close`).
    closers : list, optional
        Objects with ``async aclose()`` to release on :meth:`close` (the generators, the PRM backend).
    """

    def __init__(
        self,
        weak: Any,
        strong: Any,
        prm: Any,
        config: LoopConfig,
        *,
        cache: Any = None,
        closers: list[Any] | None = None,
    ) -> None:
        config.validate()
        if config.mode != "route":
            raise InvalidParameterError(
                f"live episodes route every step: LoopConfig.mode must be 'route', not {config.mode!r}"
            )
        self.weak, self.strong, self.prm, self.config, self.cache = weak, strong, prm, config, cache
        self._closers = list(closers or [])
        self.loop = asyncio.new_event_loop()
        self._base = self._counts()

    @classmethod
    def from_run_config(cls, run: Any, out: str | Path, *, knob: Any = None) -> LiveModels:
        """Build the models of a :class:`~trim_pomdp.generation.experiment.RunConfig` exactly as ``trim-pomdp run``
        does (same backends, retries, PRM checks and cache; the cache defaults to ``out/cache.sqlite``)."""
        from trim_pomdp.generation import experiment
        from trim_pomdp.generation.backends.factory import model_load_errors

        with model_load_errors():
            run.check("route")
            run.require_extras("route")
            models = experiment._build_models(run, "route")
        Path(out).mkdir(parents=True, exist_ok=True)
        parts = experiment._with_cache(models, run, Path(out))
        closers = [g for g in (parts.weak, parts.strong) if g is not None]
        if parts.prm is not None and hasattr(parts.prm.backend, "aclose"):
            closers.append(parts.prm.backend)
        return cls(
            parts.weak,
            parts.strong,
            parts.prm,
            loop_config(run, knob=knob),
            cache=parts.cache,
            closers=closers,
        )

    @property
    def horizon(self) -> int:
        return int(self.config.max_steps)

    def run(self, coro: Awaitable[T]) -> T:
        """Run ``coro`` to completion on the models' event loop (not from inside a running loop)."""
        return self.loop.run_until_complete(coro)

    def episodes(self, problems: list[Problem]) -> LiveEpisodes:
        """An episode source over ``problems`` (see :class:`LiveEpisodes`)."""
        return LiveEpisodes(self, problems)

    def _counts(self) -> tuple[int, int]:
        return (int(getattr(self.cache, "hits", 0)), int(getattr(self.cache, "misses", 0)))

    def cache_stats(self, since: tuple[int, int] | None = None) -> dict[str, Any]:
        """Cache hits and misses (of this session, or since a :meth:`mark`), the hit rate and stored entries."""
        h0, m0 = since if since is not None else self._base
        h, m = self._counts()
        hits, misses = h - h0, m - m0
        out: dict[str, Any] = {"hits": hits, "misses": misses}
        out["hit_rate"] = hits / (hits + misses) if hits + misses else None
        if self.cache is not None:
            out["entries"] = len(self.cache)
            out["path"] = str(getattr(self.cache, "path", ""))
        return out

    def mark(self) -> tuple[int, int]:
        """The cache counters now, to pass to :meth:`cache_stats` later."""
        return self._counts()

    def close(self) -> None:
        """Cancel what still runs, release the clients, close the event loop and the cache."""
        if self.loop.is_closed():
            return
        pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            self.run(asyncio.gather(*pending, return_exceptions=True))
        for c in self._closers:
            with contextlib.suppress(Exception):
                self.run(c.aclose())
        self.loop.close()
        if self.cache is not None:
            self.cache.close()

    def __enter__(self) -> LiveModels:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class _Row:
    """One episode in flight: its problem, the loop's task, and the decision it waits for."""

    problem: Problem
    task: asyncio.Task | None = None
    ready: asyncio.Future | None = None  # resolved when the row needs a decision or has ended
    decision: asyncio.Future | None = None  # the action the loop awaits
    obs: StepObservation | None = None
    strong: int = 0
    trace: dict[str, Any] | None = None
    error: BaseException | None = None
    steps: int = field(default=0)


class _Asks:
    """The router the loop sees: ``decide`` hands the observation to the row and returns a future action."""

    def __init__(self, row: _Row, loop: asyncio.AbstractEventLoop) -> None:
        self.row, self.loop = row, loop

    def reset(self) -> None:
        pass

    @property
    def last_decision(self) -> dict[str, Any]:
        return {}

    def decide(self, obs: StepObservation) -> asyncio.Future:
        row = self.row
        row.obs = obs
        row.decision = self.loop.create_future()
        if row.ready is not None and not row.ready.done():
            row.ready.set_result(None)
        return row.decision


class LiveEpisodes:
    """Problems solved by the real models as an :class:`~trim_pomdp.types.EpisodeBatch` (with ``reset_rows``).

    Problems are taken in a shuffled order (seeded by ``reset``), cycling through all of them before any repeats,
    so ``reset(len(problems), seed)`` runs every problem exactly once: a fixed held-out batch.

    Parameters
    ----------
    models : LiveModels
    problems : list of Problem
    """

    def __init__(self, models: LiveModels, problems: list[Problem]) -> None:
        if not problems:
            raise InvalidParameterError("live episodes need at least one problem")
        self.models = models
        self.problems = list(problems)
        self.horizon = models.horizon
        self._rng = np.random.default_rng(0)
        self._order: list[int] = []
        self._rows: list[_Row] = []
        self.episodes = self.failures = self.successes = self.decisions = 0
        self.errors: list[str] = []

    @property
    def n_problems(self) -> int:
        return len(self.problems)

    # -- EpisodeBatch -----
    def reset(self, n: int, seed: int | None = None) -> BatchObservation:
        if int(n) < 1:
            raise InvalidParameterError(f"n must be >= 1, got {n!r}")
        self._cancel(self._rows)
        self._rng = np.random.default_rng(seed)
        self._order = []
        self._rows = [self._new_row() for _ in range(int(n))]
        self._advance(self._rows, start=True)
        return self._obs()

    def reset_rows(self, rows: np.ndarray, seed: int | None = None) -> BatchObservation:
        """Start the next problems in ``rows`` (an unfinished row there is cancelled first)."""
        idx = [int(i) for i in np.asarray(rows, dtype=np.int64)]
        self._cancel([self._rows[i] for i in idx])
        fresh = []
        for i in idx:
            self._rows[i] = self._new_row()
            fresh.append(self._rows[i])
        self._advance(fresh, start=True)
        return self._obs()

    def step(self, actions: np.ndarray) -> BatchObservation:
        a = np.asarray(actions, dtype=np.int64).reshape(len(self._rows))
        waiting = [r for r in self._rows if r.decision is not None and not r.decision.done()]
        for r in waiting:
            i = self._rows.index(r)
            r.ready = self.models.loop.create_future()
            assert r.decision is not None
            r.decision.set_result(ACTIONS[int(a[i] != 0)])
            r.steps += 1
        self.decisions += len(waiting)
        self._advance(waiting, start=False)
        return self._obs()

    @property
    def correct(self) -> np.ndarray:
        return np.array([bool(r.trace["correct"]) if r.trace else False for r in self._rows], dtype=bool)

    @property
    def strong_tokens(self) -> np.ndarray:
        return np.array(
            [float(r.trace["strong_tokens"]) if r.trace else float(r.strong) for r in self._rows], dtype=float
        )

    @property
    def failed(self) -> np.ndarray:
        """Rows whose problem failed (no outcome: the training environment truncates them)."""
        return np.array([r.error is not None for r in self._rows], dtype=bool)

    @property
    def traces(self) -> list[dict[str, Any] | None]:
        """The loop's trace of each row's finished problem (``None`` while it runs or when it failed)."""
        return [r.trace for r in self._rows]

    def stats(self) -> dict[str, Any]:
        """Episodes started, finished, failed, and decisions answered."""
        return {
            "episodes": self.episodes,
            "finished": self.successes,
            "failed": self.failures,
            "decisions": self.decisions,
            "errors": self.errors[-5:],
        }

    # -- the rows -----
    def _new_row(self) -> _Row:
        if not self._order:
            self._order = [int(i) for i in self._rng.permutation(len(self.problems))][::-1]
        self.episodes += 1
        return _Row(self.problems[self._order.pop()])

    async def _solve(self, row: _Row) -> None:
        m = self.models

        def on_step(step: Any, rec: dict[str, Any]) -> None:
            if rec.get("action") == "regenerate" and isinstance(rec.get("strong"), dict):
                row.strong += int(rec["strong"].get("tokens", 0))

        asks: Any = _Asks(row, m.loop)  # a Router whose decide returns an awaitable (the loop awaits it)
        try:
            row.trace = await solve_problem(
                row.problem,
                m.weak,
                m.strong,
                m.prm,
                asks,
                m.config,
                on_step=on_step,
            )
        except Exception as exc:  # a failed problem ends its episode (fail-fast in _count_ends)
            row.error = exc
        finally:
            if row.ready is not None and not row.ready.done():
                row.ready.set_result(None)

    def _advance(self, rows: list[_Row], *, start: bool) -> None:
        """Run the loop until every row of ``rows`` waits for a decision or has ended."""
        loop = self.models.loop
        for r in rows:
            if start:
                r.ready = loop.create_future()
                r.task = loop.create_task(self._solve(r))
        futures = [r.ready for r in rows if r.ready is not None]
        if futures:
            self.models.run(asyncio.gather(*futures))
        self._count_ends(rows)

    def _count_ends(self, rows: list[_Row]) -> None:
        for r in rows:
            if r.task is None or not r.task.done():
                continue
            if r.error is not None:
                self.failures += 1
                self.errors.append(redact(f"{r.problem.id}: {type(r.error).__name__}: {r.error}"))
                if self.successes == 0 and self.failures >= self.models.config.fail_fast_after:
                    raise r.error
            else:
                self.successes += 1

    def _cancel(self, rows: list[_Row]) -> None:
        running = [r.task for r in rows if r.task is not None and not r.task.done()]
        for t in running:
            t.cancel()
        if running:
            self.models.run(asyncio.gather(*running, return_exceptions=True))

    def _obs(self) -> BatchObservation:
        n, H = len(self._rows), self.horizon
        t = np.ones(n, dtype=np.int64)
        scores = np.full((n, H), np.nan)
        tokens = np.zeros(n, dtype=np.int64)
        final = np.zeros(n, dtype=bool)
        active = np.zeros(n, dtype=bool)
        for i, r in enumerate(self._rows):
            waiting = r.decision is not None and not r.decision.done() and r.obs is not None
            if waiting and r.obs is not None:
                o = r.obs
                t[i], tokens[i], final[i], active[i] = o.t, o.tokens, o.final, True
                k = min(len(o.scores), H)
                scores[i, :k] = o.scores[:k]
        return BatchObservation(t, scores, tokens, final, active)


def split_problems(
    problems: list[Problem], holdout: float | int, seed: int
) -> tuple[list[Problem], list[Problem]]:
    """``(train, held_out)``: a seeded shuffle, ``holdout`` problems (a count, or a fraction below 1) held out.

    The split depends only on the problems and the seed, so every λ and both routers use the same held-out batch.
    """
    n = len(problems)
    k = int(holdout) if holdout >= 1 else round(float(holdout) * n)
    if n < 2 or not (1 <= k < n):
        raise InvalidParameterError(
            f"cannot hold out {holdout!r} of {n} problems: training needs at least one problem and the "
            "held-out batch at least one (pass --holdout N or a fraction, and enough problems)"
        )
    order = np.random.default_rng(seed).permutation(n)
    return [problems[i] for i in order[k:]], [problems[i] for i in order[:k]]


def train_live(
    run: Any,
    lam: float,
    out: str | Path,
    *,
    router: str = "agg",
    holdout: float | int = 0.2,
    timesteps: int | None = None,
    convergence: Any = "default",
    seed: int = 0,
    n_envs: int = 16,
    progress: bool = True,
    log: Any = None,
    **options: Any,
) -> dict[str, Any]:
    """Train TRIM-Agg or TRIM-Seq for one λ on live generations (``trim-pomdp train-agg --source live``).

    Parameters
    ----------
    run : RunConfig
        The dataset, the models and the caps, as for ``trim-pomdp run`` (``router`` and ``out_dir`` unused).
        Every call goes through the cache ``run.cache`` (default ``out/cache.sqlite``): share one file between
        λ values and routers so that they reuse each other's generations.
    lam : float
        Price of one M_s token.
    out : path
        Folder for the router, its checkpoint, the learning curve and ``training.json``.
    router : {"agg", "seq"}
    holdout : float or int, default 0.2
        Problems held out for the convergence criterion (a fraction, or a count); the same ones every call.
    timesteps : int, optional
        The cap on PPO steps (default :data:`~trim_pomdp.routers.rl.grids.DEFAULT_MAX_TIMESTEPS`).
    convergence : Convergence or None, optional
        The criterion (default: :data:`~trim_pomdp.routers.rl.grids.DEFAULT_CONVERGENCE`); its
        ``eval_episodes`` becomes the number of held-out problems. ``None``: train exactly ``timesteps``.
    seed, n_envs, progress, log, options :
        As for :func:`~trim_pomdp.routers.rl.training.train_router` (``n_envs`` problems in flight).

    Returns
    -------
    dict
        What ``out/training.json`` holds: the run, the kept router's held-out evaluation, the training speed,
        the episodes and the cache hits and misses of this call.
    """
    import dataclasses
    import time

    from trim_pomdp._internal.artifacts import write_json
    from trim_pomdp.datasets.problems import load_dataset
    from trim_pomdp.routers.rl.grids import DEFAULT_CONVERGENCE, DEFAULT_MAX_TIMESTEPS
    from trim_pomdp.routers.rl.training import train_router

    if not run.weak or not run.prm:
        raise InvalidParameterError(
            "--source live needs --weak URL_OR_MODEL, --strong ... and --prm MODEL_OR_URL"
        )
    out = Path(out)
    problems = load_dataset(run.dataset, run.data_dir)
    problems = problems if run.limit is None else problems[: run.limit]
    train, held = split_problems(problems, holdout, seed)
    conv = DEFAULT_CONVERGENCE if convergence == "default" else convergence
    if conv is not None:
        conv = dataclasses.replace(conv, eval_episodes=len(held))
    t0 = time.perf_counter()
    with LiveModels.from_run_config(run, out, knob=lam) as models:
        mark = models.mark()
        card = {
            "type": "LiveEpisodes", "dataset": run.dataset, "weak": getattr(models.weak, "model", None),
            "strong": getattr(models.strong, "model", None), "prm": getattr(models.prm, "model", None),
            "weak_params": models.weak.cache_params(), "strong_params": models.strong.cache_params(),
            "max_steps": run.max_steps, "max_solution_tokens": run.max_solution_tokens,
            "train_problems": len(train), "heldout_problems": len(held), "split_seed": seed, "simulated": False,
        }  # fmt: skip
        train_src, held_src = models.episodes(train), models.episodes(held)
        trained = train_router(
            router, train_src, lam, out=out, eval_source=held_src, convergence=conv, n_envs=n_envs, seed=seed,
            timesteps=timesteps or DEFAULT_MAX_TIMESTEPS, progress=progress, log=log, source_card=card, **options,
        )  # fmt: skip
        rc = trained.card
        results = {
            "router": router,
            "lam": lam,
            "source": card,
            "heldout_ids": [p.id for p in held],
            "stopped": rc.get("stopped"),
            "collapsed": trained.collapsed,
            "timesteps_trained": rc.get("timesteps_trained"),
            "resumed_from_timesteps": rc.get("resumed_from_timesteps"),
            "train_seconds": rc.get("train_seconds"),
            "steps_per_second": rc.get("steps_per_second"),
            "heldout_best": (rc.get("convergence") or {}).get("best"),
            "training_episodes": train_src.stats(),
            "heldout_episodes": held_src.stats(),
            "cache": models.cache_stats(since=mark),
            "wall_seconds": time.perf_counter() - t0,
        }
    write_json(out / "training.json", results)
    return results
