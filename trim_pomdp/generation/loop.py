"""The TRIM generation loop (the paper's Figure 1) over many problems at once.

For each problem: M_w proposes a step, the PRM scores the prefix with it, the router decides; on
``regenerate`` M_s writes that step instead (and the PRM scores it); M_w carries on from the accepted steps. A
problem stops at its final answer (EOS or a ``\\boxed{}``, ``stop: "final"``), at the step cap (``step_cap``),
when the solution's token budget has less than ``min_step_tokens`` left (``token_cap``: no model is called with
a budget too small for a step), when the server's context is full (``context_full``), or at a degenerate step
(``repetition``, see :mod:`~trim_pomdp.generation.guards`).

Problems run concurrently (``concurrency`` workers on one event loop), so the model servers see batches and
the PRM batcher sees many prefixes at once. Every finished problem is appended to ``traces.jsonl`` /
``records.jsonl`` at once; model and PRM calls go through the cache, so a killed run resumes: finished
problems are skipped, and the unfinished ones replay their cached calls and continue.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from trim_pomdp._internal.artifacts import to_jsonable
from trim_pomdp._internal.jsonl import JsonlWriter
from trim_pomdp.datasets.answers import ANSWER_FORMATS, answers_match, extract_answer, parse_answer_formats
from trim_pomdp.datasets.problems import Problem
from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.generation.backends._common import ContextFullError, redact
from trim_pomdp.generation.base import MIN_STEP_TOKENS, StepResult
from trim_pomdp.generation.guards import REPETITION_POLICIES, degenerate
from trim_pomdp.generation.runs import (
    ERRORS,
    RECORDS,
    TRACES,
    check_run_settings,
    load_traces,
    lock_run_dir,
    rebuild_records,
    record_from_trace,
)
from trim_pomdp.routers.base import Router
from trim_pomdp.types import StepObservation

__all__ = ["MODES", "LoopConfig", "RunSummary", "run", "run_loop", "solve_problem"]

#: ``route``: the TRIM loop; ``weak``: M_w alone (no PRM, no M_s); ``strong``: M_s writes every step
MODES = ("route", "weak", "strong")


@dataclass
class LoopConfig:
    """Loop settings.

    Attributes
    ----------
    max_steps : int
        Step cap per problem (the paper's horizon, 30).
    max_solution_tokens : int
        Cap on the output tokens (weak + strong, accepted or not) spent on one problem's solution.
    concurrency : int
        Problems in flight.
    mode : str
        One of :data:`MODES`.
    policy, knob :
        What the records call this run (e.g. ``"thr"``, ``0.5``; ``"pomdp"``, λ; ``"weak"``; ``"strong"``).
    fail_fast_after : int
        A problem that fails (retries exhausted, over-long PRM input, ...) is logged to ``errors.jsonl``
        and the run goes on; but when this many problems fail before any succeeds, the error is raised (it
        is a configuration error, e.g. a wrong URL or model name).
    answer_formats : tuple of str
        How the final answer is read (:data:`~trim_pomdp.datasets.answers.ANSWER_FORMATS`, tried in order).
    repetition : {"stop", "off"}
        The repetition guard's policy (:mod:`~trim_pomdp.generation.guards`).
    min_step_tokens : int
        No model is called with a smaller output budget: a solution with less budget left stops
        (``token_cap``), and a regeneration that would get less keeps M_w's proposal (``regenerate_skipped``).
    """

    max_steps: int = 30
    max_solution_tokens: int = 4096
    concurrency: int = 64
    mode: str = "route"
    policy: str = "trim"
    knob: Any = None
    fail_fast_after: int = 5
    answer_formats: tuple[str, ...] = ANSWER_FORMATS
    repetition: str = "stop"
    min_step_tokens: int = MIN_STEP_TOKENS

    def validate(self) -> None:
        self.answer_formats = parse_answer_formats(self.answer_formats)
        if self.repetition not in REPETITION_POLICIES:
            raise InvalidParameterError(
                f"repetition must be one of {REPETITION_POLICIES}, got {self.repetition!r}"
            )
        if self.min_step_tokens < 1:
            raise InvalidParameterError(f"min_step_tokens must be >= 1, got {self.min_step_tokens}")
        if self.max_steps < 1:
            raise InvalidParameterError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.max_solution_tokens < 1:
            raise InvalidParameterError(f"max_solution_tokens must be >= 1, got {self.max_solution_tokens}")
        if self.concurrency < 1:
            raise InvalidParameterError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.fail_fast_after < 1:
            raise InvalidParameterError(f"fail_fast_after must be >= 1, got {self.fail_fast_after}")
        if self.mode not in MODES:
            raise InvalidParameterError(f"mode must be one of {MODES}, got {self.mode!r}")


@dataclass
class RunSummary:
    """What a (possibly resumed) run did."""

    total: int = 0
    done_before: int = 0
    completed: int = 0
    failed: int = 0
    correct: int = 0
    strong_tokens: int = 0
    steps: int = 0
    wall_s: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def finished(self) -> int:
        return self.done_before + self.completed

    @property
    def accuracy(self) -> float:
        return self.correct / self.finished if self.finished else float("nan")

    def add(self, trace: dict[str, Any]) -> None:
        """Count a problem finished in this run."""
        self.completed += 1
        self.correct += int(trace["correct"])
        self.strong_tokens += trace["strong_tokens"]
        self.steps += trace["n_steps"]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["accuracy"] = self.accuracy
        return d


def _step_dict(res: StepResult) -> dict[str, Any]:
    return {
        "text": res.text,
        "model": res.model,
        "tokens": res.tokens,
        "finish": res.finish,
        "final": res.final,
        "latency_s": round(res.latency_s, 6),
        "cached": res.cached,
        "attempts": res.attempts,
        **({"billed_tokens": res.billed_tokens} if res.billed_tokens is not None else {}),
        **({"extra": res.extra} if res.extra else {}),
    }


T = TypeVar("T")


async def _timed(rec: dict[str, Any], key: str, call: Awaitable[T]) -> T:
    """Await ``call`` and store its wall time in ``rec[key]``."""
    t0 = time.perf_counter()
    result = await call
    rec[key] = round(time.perf_counter() - t0, 6)
    return result


@dataclass
class _Solution:
    """A problem's solution while the loop writes it: the accepted steps, their scores, the step trace."""

    steps: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    trace: list[dict[str, Any]] = field(default_factory=list)
    weak_tokens: int = 0
    strong_tokens: int = 0

    @property
    def spent(self) -> int:
        """Output tokens spent on the solution so far (weak and strong, accepted or not)."""
        return self.weak_tokens + self.strong_tokens

    def accept(self, step: StepResult, score: float | None, rec: dict[str, Any]) -> None:
        self.steps.append(step.text)
        if score is not None:
            self.scores.append(score)
        self.trace.append(rec)


async def _route_step(
    problem: Problem,
    t: int,
    proposal: StepResult,
    sol: _Solution,
    rec: dict[str, Any],
    strong: Any,
    prm: Any,
    router: Router,
    remaining: int,
    min_step_tokens: int,
) -> tuple[StepResult, float]:
    """Score M_w's proposal, ask the router, and on ``regenerate`` let M_s write the step (and score it)."""
    r_t = float((await _timed(rec, "prm_s", prm.score(problem.problem, [*sol.steps, proposal.text])))[-1])
    rec["r"] = r_t
    obs = StepObservation(
        t=t, scores=(*sol.scores, r_t), tokens=int(proposal.tokens), final=bool(proposal.final)
    )
    t0 = time.perf_counter()
    action = router.decide(obs)
    rec["router_s"] = round(time.perf_counter() - t0, 6)
    if inspect.isawaitable(action):  # a router that awaits its decision (RL training, generation/episodes.py)
        action = await action
    if action not in ("continue", "regenerate"):
        raise InvalidParameterError(f"router returned {action!r}, expected 'continue' or 'regenerate'")
    rec["action"] = action
    decision = getattr(router, "last_decision", None)
    if decision:
        rec["decision"] = to_jsonable(decision)
    if action == "continue":
        return proposal, r_t
    left = remaining - proposal.tokens
    # -- a router's hard cap on strong tokens (BeliefRouter(max_strong_tokens=N)): M_s never writes more --
    cap, spent = getattr(router, "strong_tokens_left", None), getattr(router, "spent_strong", None)
    left = left if cap is None else min(left, int(cap))
    if left < min_step_tokens:  # no budget for a strong step: keep the proposal rather than ask for a stub
        rec["regenerate_skipped"] = f"budget: {max(0, left)} tokens left"
        if callable(spent):
            spent(0)
        return proposal, r_t
    s = await strong.generate_step(problem.problem, sol.steps, max_tokens=left)
    sol.strong_tokens += s.tokens
    if callable(spent):
        spent(s.tokens)
    # -- end of the cap --
    rec["strong"] = _step_dict(s)
    score = float((await _timed(rec, "prm_strong_s", prm.score(problem.problem, [*sol.steps, s.text])))[-1])
    rec["r_strong"] = score
    return s, score


async def _next_step(
    problem: Problem,
    t: int,
    sol: _Solution,
    weak: Any,
    strong: Any,
    prm: Any,
    router: Router | None,
    config: LoopConfig,
) -> tuple[StepResult, float | None, dict[str, Any]]:
    """The step accepted at ``t``, its PRM score (``None`` without a PRM) and its trace entry."""
    remaining = config.max_solution_tokens - sol.spent
    rec: dict[str, Any] = {"t": t}
    if config.mode == "strong":
        s = await strong.generate_step(problem.problem, sol.steps, max_tokens=remaining)
        sol.strong_tokens += s.tokens
        rec.update(action="strong_only", strong=_step_dict(s))
        return s, None, rec
    w = await weak.generate_step(problem.problem, sol.steps, max_tokens=remaining)
    sol.weak_tokens += w.tokens
    rec["weak"] = _step_dict(w)
    if config.mode == "weak":
        rec["action"] = "weak_only"
        return w, None, rec
    assert router is not None  # run_loop checks that mode "route" has a router
    chosen, score = await _route_step(
        problem, t, w, sol, rec, strong, prm, router, remaining, config.min_step_tokens
    )
    return chosen, score, rec


async def solve_problem(
    problem: Problem,
    weak: Any,
    strong: Any,
    prm: Any,
    router: Router | None,
    config: LoopConfig,
    *,
    on_step: Callable[[StepResult, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the loop on one problem and return its trace (see :mod:`trim_pomdp.generation.runs`).

    ``on_step(step, entry)``, when given, is called after each step is accepted with the accepted
    :class:`~trim_pomdp.generation.base.StepResult` and its trace entry (what ``trim-pomdp serve`` streams).
    """
    t_start = time.perf_counter()
    sol = _Solution()
    stop = "step_cap"
    if router is not None:
        router.reset()
    for t in range(1, config.max_steps + 1):
        if config.max_solution_tokens - sol.spent < config.min_step_tokens:
            stop = "token_cap"
            break
        try:
            chosen, score, rec = await _next_step(problem, t, sol, weak, strong, prm, router, config)
        except ContextFullError as exc:
            sol.trace.append({"t": t, "context_full": str(exc)})
            stop = "context_full"
            break
        why = degenerate(chosen.text, sol.steps[-1] if sol.steps else None)
        if why and config.repetition == "stop":
            rec["rejected"] = why
            sol.trace.append(rec)
            stop = "repetition"
            break
        sol.accept(chosen, score, rec)
        if on_step is not None:
            on_step(chosen, rec)
        if chosen.final:
            stop = "final"
            break
    return _trace(problem, config, sol, stop, time.perf_counter() - t_start)


def _trace(problem: Problem, config: LoopConfig, sol: _Solution, stop: str, wall_s: float) -> dict[str, Any]:
    """A finished problem's trace: the answer, its check, the counts and every step."""
    answer, answer_format = extract_answer("\n\n".join(sol.steps), tuple(config.answer_formats))
    accepted = [e for e in sol.trace if "action" in e and "rejected" not in e]
    return {
        "query_id": problem.id,
        "policy": config.policy,
        "knob": config.knob,
        "correct": bool(answer is not None and answers_match(answer, str(problem.answer))),
        "strong_tokens": int(sol.strong_tokens),
        "weak_tokens": int(sol.weak_tokens),
        "answer": answer,
        "answer_format": answer_format,
        "reference": problem.answer,
        "n_steps": len(sol.steps),
        "n_regenerated": sum(1 for s in accepted if s.get("action") in ("regenerate", "strong_only")),
        "n_truncated": sum(1 for s in accepted if _accepted_finish(s) == "length"),
        "stop": stop,
        "scores": sol.scores,
        "wall_s": round(wall_s, 6),
        "steps": sol.trace,
    }


def _accepted_finish(entry: dict[str, Any]) -> str | None:
    """How the accepted step of a trace entry ended (``length``: cut at the token cap, maybe mid-sentence)."""
    chosen = (
        entry.get("strong") if entry.get("action") in ("regenerate", "strong_only") else entry.get("weak")
    )
    return chosen.get("finish") if isinstance(chosen, dict) else None


def _check_inputs(
    problems: list[Problem], config: LoopConfig, weak: Any, strong: Any, prm: Any, router_factory: Any
) -> None:
    config.validate()
    if len({p.id for p in problems}) != len(problems):
        raise InvalidParameterError("problem ids must be unique")
    if config.mode == "route" and (prm is None or router_factory is None or strong is None or weak is None):
        raise InvalidParameterError("mode 'route' needs a weak and a strong generator, a PRM and a router")
    if config.mode == "weak" and weak is None:
        raise InvalidParameterError("mode 'weak' needs a weak generator")
    if config.mode == "strong" and strong is None:
        raise InvalidParameterError("mode 'strong' needs a strong generator")


class _RunFiles:
    """The appending writers of a run directory: traces, records and errors."""

    def __init__(self, out: Path) -> None:
        self.traces, self.records, self.errors = (
            JsonlWriter(out / name) for name in (TRACES, RECORDS, ERRORS)
        )

    def finished(self, trace: dict[str, Any]) -> None:
        self.traces.write(trace)
        self.records.write(record_from_trace(trace))

    def failed(self, problem: Problem, exc: BaseException) -> None:
        self.errors.write(
            {"query_id": problem.id, "error": redact(f"{type(exc).__name__}: {exc}"), "time": time.time()}
        )

    def close(self) -> None:
        for w in (self.traces, self.records, self.errors):
            w.close()


def _resume(
    out: Path, problems: list[Problem], config: LoopConfig, settings: dict[str, Any], summary: RunSummary
) -> list[Problem]:
    """Check the run directory's settings, count its finished problems into ``summary``; the rest to do."""
    check_run_settings(
        out,
        {
            **settings,
            "policy": config.policy,
            "knob": config.knob,
            "mode": config.mode,
            "max_steps": config.max_steps,
            "max_solution_tokens": config.max_solution_tokens,
        },
    )
    rebuild_records(out)
    done = load_traces(out)
    wanted = {p.id for p in problems}
    for qid, tr in done.items():
        if qid in wanted:
            summary.done_before += 1
            summary.correct += int(bool(tr["correct"]))
            summary.strong_tokens += int(tr["strong_tokens"])
    return [p for p in problems if p.id not in done]


async def run_loop(
    problems: list[Problem],
    weak: Any,
    strong: Any,
    prm: Any,
    router_factory: Callable[[], Router] | None,
    config: LoopConfig | None = None,
    out_dir: str | Path | None = None,
    *,
    settings: dict[str, Any] | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    on_error: Callable[[Problem, BaseException], None] | None = None,
) -> RunSummary:
    """Run the loop on ``problems``; with ``out_dir``, write traces/records incrementally and resume.

    Parameters
    ----------
    problems : list of Problem
        Their ids must be unique.
    weak, strong : StepGenerator or None
        The step generators (``None`` where the mode does not use them).
    prm : StepScorer or None
        ``await prm.score(problem, steps)``; ``None`` unless ``mode="route"``.
    router_factory : callable or None
        Returns a fresh :class:`~trim_pomdp.routers.base.Router`; called once per worker (each router is reset
        per problem). ``None`` unless ``mode="route"``.
    config : LoopConfig, optional
    out_dir : path, optional
        Run directory; finished problems found there are skipped.
    settings : dict, optional
        Stored in ``run.json``; a resumed run must have the same settings.
    on_result, on_error : callable, optional
        Called per finished / failed problem (e.g. for a progress display).

    Returns
    -------
    RunSummary
    """
    config = config or LoopConfig()
    _check_inputs(problems, config, weak, strong, prm, router_factory)
    with contextlib.ExitStack() as held:
        if out_dir is not None:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            held.enter_context(lock_run_dir(out_dir))  # one process per run directory
        return await _run_all(
            problems, weak, strong, prm, router_factory, config, out_dir, settings, on_result, on_error
        )


async def _run_all(
    problems: list[Problem],
    weak: Any,
    strong: Any,
    prm: Any,
    router_factory: Callable[[], Router] | None,
    config: LoopConfig,
    out_dir: str | Path | None,
    settings: dict[str, Any] | None,
    on_result: Callable[[dict[str, Any]], None] | None,
    on_error: Callable[[Problem, BaseException], None] | None,
) -> RunSummary:
    """:func:`run_loop` once its inputs are checked and its directory is held."""
    summary = RunSummary(total=len(problems))
    t0 = time.perf_counter()
    files: _RunFiles | None = None
    todo = list(problems)
    if out_dir is not None:
        todo = _resume(Path(out_dir), problems, config, settings or {}, summary)
        files = _RunFiles(Path(out_dir))
    pending = iter(todo)  # shared by the workers: each takes the next problem when it is free

    async def worker() -> None:
        router = router_factory() if (router_factory is not None and config.mode == "route") else None
        for p in pending:
            try:
                trace = await solve_problem(p, weak, strong, prm, router, config)
            except Exception as exc:
                if summary.completed == 0 and summary.failed + 1 >= config.fail_fast_after:
                    raise  # nothing has worked yet: a configuration error, not a flaky problem
                summary.failed += 1
                summary.errors.append(redact(f"{p.id}: {exc}"))
                if files is not None:
                    files.failed(p, exc)
                if on_error is not None:
                    on_error(p, exc)
                continue
            if files is not None:
                files.finished(trace)
            summary.add(trace)
            if on_result is not None:
                on_result(trace)

    try:
        n_workers = min(config.concurrency, max(1, len(todo)))
        await asyncio.gather(*(worker() for _ in range(n_workers)))
    finally:
        if files is not None:
            files.close()
    summary.wall_s = time.perf_counter() - t0
    return summary


def run(*args: Any, **kwargs: Any) -> RunSummary:
    """Synchronous wrapper of :func:`run_loop` (``asyncio.run``)."""
    return asyncio.run(run_loop(*args, **kwargs))
