"""The TRIM generation loop (the paper's Figure 1) over many problems at once.

For each problem: M_w proposes a step, the PRM scores the prefix with it, the router decides; on
``regenerate`` M_s writes that step instead (and the PRM scores it); M_w carries on from the accepted steps. A
problem stops at its final answer (EOS or a ``\\boxed{}``), at the step cap, or at the solution's token cap.

Problems run concurrently (``concurrency`` workers on one event loop), so the model servers see batches and
the PRM batcher sees many prefixes at once. Every finished problem is appended to ``traces.jsonl`` /
``records.jsonl`` at once; model and PRM calls go through the cache, so a killed run resumes: finished
problems are skipped, and the unfinished ones replay their cached calls and continue.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trim_pomdp.datasets.answers import check_answer
from trim_pomdp.datasets.problems import Problem
from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.generation.base import StepResult
from trim_pomdp.generation.runs import (
    ERRORS,
    RECORDS,
    RUN_JSON,
    TRACES,
    JsonlWriter,
    load_traces,
    rebuild_records,
    record_from_trace,
    to_jsonable,
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
    """

    max_steps: int = 30
    max_solution_tokens: int = 4096
    concurrency: int = 64
    mode: str = "route"
    policy: str = "trim"
    knob: Any = None
    fail_fast_after: int = 5

    def validate(self) -> None:
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


async def solve_problem(
    problem: Problem,
    weak: Any,
    strong: Any,
    prm: Any,
    router: Router | None,
    config: LoopConfig,
) -> dict[str, Any]:
    """Run the loop on one problem and return its trace (see :mod:`trim_pomdp.generation.runs`)."""
    t_start = time.perf_counter()
    steps: list[str] = []
    scores: list[float] = []
    trace_steps: list[dict[str, Any]] = []
    strong_tokens = weak_tokens = spent = 0
    stop = "step_cap"
    if router is not None:
        router.reset()
    for t in range(1, config.max_steps + 1):
        remaining = config.max_solution_tokens - spent
        if remaining <= 0:
            stop = "token_cap"
            break
        rec: dict[str, Any] = {"t": t}
        if config.mode == "strong":
            s = await strong.generate_step(problem.problem, steps, max_tokens=remaining)
            strong_tokens += s.tokens
            spent += s.tokens
            rec.update(action="strong_only", strong=_step_dict(s))
            chosen, score = s, None
        else:
            w = await weak.generate_step(problem.problem, steps, max_tokens=remaining)
            weak_tokens += w.tokens
            spent += w.tokens
            rec["weak"] = _step_dict(w)
            chosen, score = w, None
            if config.mode == "route":
                t0 = time.perf_counter()
                r = await prm.score(problem.problem, steps + [w.text])
                rec["prm_s"] = round(time.perf_counter() - t0, 6)
                r_t = float(r[-1])
                rec["r"] = r_t
                obs = StepObservation(
                    t=t, scores=tuple(scores) + (r_t,), tokens=int(w.tokens), final=bool(w.final)
                )
                t0 = time.perf_counter()
                action = router.decide(obs)
                rec["router_s"] = round(time.perf_counter() - t0, 6)
                if action not in ("continue", "regenerate"):
                    raise InvalidParameterError(
                        f"router returned {action!r}, expected 'continue' or 'regenerate'"
                    )
                rec["action"] = action
                decision = getattr(router, "last_decision", None)
                if decision:
                    rec["decision"] = to_jsonable(decision)
                score = r_t
                if action == "regenerate":
                    s = await strong.generate_step(
                        problem.problem, steps, max_tokens=max(1, remaining - w.tokens)
                    )
                    strong_tokens += s.tokens
                    spent += s.tokens
                    rec["strong"] = _step_dict(s)
                    t0 = time.perf_counter()
                    rs = await prm.score(problem.problem, steps + [s.text])
                    rec["prm_strong_s"] = round(time.perf_counter() - t0, 6)
                    score = float(rs[-1])
                    rec["r_strong"] = score
                    chosen = s
            else:
                rec["action"] = "weak_only"
        steps.append(chosen.text)
        if score is not None:
            scores.append(score)
        trace_steps.append(rec)
        if chosen.final:
            stop = "final"
            break
    solution = "\n\n".join(steps)
    answer, correct = check_answer(solution, problem.answer)
    return {
        "query_id": problem.id,
        "policy": config.policy,
        "knob": config.knob,
        "correct": bool(correct),
        "strong_tokens": int(strong_tokens),
        "weak_tokens": int(weak_tokens),
        "answer": answer,
        "reference": problem.answer,
        "n_steps": len(steps),
        "n_regenerated": sum(1 for s in trace_steps if s.get("action") in ("regenerate", "strong_only")),
        "stop": stop,
        "scores": scores,
        "wall_s": round(time.perf_counter() - t_start, 6),
        "steps": trace_steps,
    }


def _check_run_json(out: Path, settings: dict[str, Any]) -> None:
    path = out / RUN_JSON
    settings = to_jsonable(settings)
    if path.exists():
        old = json.loads(path.read_text())
        keys = (
            "dataset",
            "policy",
            "knob",
            "mode",
            "weak",
            "strong",
            "prm",
            "router",
            "shard",
            "max_steps",
            "max_solution_tokens",
        )
        diff = [k for k in keys if k in old and k in settings and old[k] != settings[k]]
        if diff:
            raise InvalidParameterError(
                f"{out} holds a run with different settings ("
                + ", ".join(f"{k}: {old[k]!r} -> {settings[k]!r}" for k in diff)
                + "); "
                "resume with the same settings or choose a new --out directory"
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=2))


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
    weak, strong : step generators (``None`` where the mode does not use them)
    prm : PRM scorer (``await prm.score(problem, steps)``), ``None`` unless ``mode="route"``
    router_factory : callable returning a fresh :class:`~trim_pomdp.routers.base.Router`; called once per
    worker
        (each router is reset per problem); ``None`` unless ``mode="route"``
    config : LoopConfig
    out_dir : path, optional
        Run directory; finished problems found there are skipped.
    settings : dict, optional
        Stored in ``run.json``; a resumed run must have the same settings.
    on_result, on_error : callbacks per finished / failed problem (progress display).
    """
    config = config or LoopConfig()
    config.validate()
    if config.mode == "route" and (prm is None or router_factory is None or strong is None or weak is None):
        raise InvalidParameterError("mode 'route' needs a weak and a strong generator, a PRM and a router")
    if config.mode == "weak" and weak is None:
        raise InvalidParameterError("mode 'weak' needs a weak generator")
    if config.mode == "strong" and strong is None:
        raise InvalidParameterError("mode 'strong' needs a strong generator")
    ids = [p.id for p in problems]
    if len(set(ids)) != len(ids):
        raise InvalidParameterError("problem ids must be unique")
    summary = RunSummary(total=len(problems))
    t0 = time.perf_counter()
    writers: tuple[JsonlWriter, JsonlWriter, JsonlWriter] | None = None
    todo = list(problems)
    if out_dir is not None:
        out = Path(out_dir)
        _check_run_json(
            out,
            {
                **(settings or {}),
                "policy": config.policy,
                "knob": config.knob,
                "mode": config.mode,
                "max_steps": config.max_steps,
                "max_solution_tokens": config.max_solution_tokens,
            },
        )
        rebuild_records(out)
        done = load_traces(out)
        wanted = set(ids)
        for qid, tr in done.items():
            if qid in wanted:
                summary.done_before += 1
                summary.correct += int(bool(tr["correct"]))
                summary.strong_tokens += int(tr["strong_tokens"])
        todo = [p for p in problems if p.id not in done]
        writers = (JsonlWriter(out / TRACES), JsonlWriter(out / RECORDS), JsonlWriter(out / ERRORS))

    queue: asyncio.Queue[Problem] = asyncio.Queue()
    for p in todo:
        queue.put_nowait(p)

    async def worker() -> None:
        router = router_factory() if (router_factory is not None and config.mode == "route") else None
        while True:
            try:
                p = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                trace = await solve_problem(p, weak, strong, prm, router, config)
            except Exception as exc:
                if summary.completed == 0 and summary.failed + 1 >= config.fail_fast_after:
                    raise  # nothing has worked yet: a configuration error, not a flaky problem
                summary.failed += 1
                summary.errors.append(f"{p.id}: {exc}")
                if writers is not None:
                    writers[2].write(
                        {"query_id": p.id, "error": f"{type(exc).__name__}: {exc}", "time": time.time()}
                    )
                if on_error is not None:
                    on_error(p, exc)
                continue
            if writers is not None:
                writers[0].write(trace)
                writers[1].write(record_from_trace(trace))
            summary.completed += 1
            summary.correct += int(trace["correct"])
            summary.strong_tokens += trace["strong_tokens"]
            summary.steps += trace["n_steps"]
            if on_result is not None:
                on_result(trace)

    try:
        n_workers = min(config.concurrency, max(1, len(todo)))
        await asyncio.gather(*(worker() for _ in range(n_workers)))
    finally:
        if writers is not None:
            for w in writers:
                w.close()
    summary.wall_s = time.perf_counter() - t0
    return summary


def run(*args: Any, **kwargs: Any) -> RunSummary:
    """Synchronous wrapper of :func:`run_loop` (``asyncio.run``)."""
    return asyncio.run(run_loop(*args, **kwargs))
