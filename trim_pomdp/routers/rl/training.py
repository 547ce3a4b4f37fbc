"""Train TRIM-Agg or TRIM-Seq for one λ into a folder: the one call behind ``train-agg`` and the sweeps.

:func:`train_router` trains with the convergence budget by default (until the return on a fixed held-out batch
stops improving, under a step cap), checkpoints into the folder and resumes from it, saves the router, writes the
learning curve (``learning_curve.csv`` / ``.json``) and draws it (``learning_curve.png``, with the ``plots``
extra), and says whether the kept router collapsed to a constant policy (never or always regenerating on the
held-out batch), which callers report rather than keep silently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trim_pomdp.exceptions import BackendUnavailableError, InvalidParameterError
from trim_pomdp.registry import ROUTERS
from trim_pomdp.routers.rl.convergence import Convergence, collapse, plot_curve, write_curve
from trim_pomdp.routers.rl.grids import DEFAULT_CONVERGENCE, DEFAULT_MAX_TIMESTEPS

__all__ = ["RL_ROUTERS", "TrainedRouter", "finished_router", "load_router", "train_router"]

#: The routers trained by PPO, by registry name.
RL_ROUTERS = ("agg", "seq")

_CARD = {"agg": "agg.json", "seq": "seq.json"}


@dataclass
class TrainedRouter:
    """What :func:`train_router` returns.

    Attributes
    ----------
    router : AggRouter or SeqRouter
        The kept router (the best evaluated on the held-out batch).
    collapsed : str or None
        ``"never regenerates"`` / ``"always regenerates"`` when the kept router is constant on the held-out
        batch, else ``None``.
    directory : Path or None
        Where it was saved.
    """

    router: Any
    collapsed: str | None
    directory: Path | None

    @property
    def card(self) -> dict[str, Any]:
        return dict(self.router.card)


def _check_kind(kind: str) -> str:
    if kind not in RL_ROUTERS:
        raise InvalidParameterError(f"router must be one of {', '.join(RL_ROUTERS)}, got {kind!r}")
    return kind


def load_router(kind: str, directory: str | Path) -> Any:
    """The router of ``kind`` saved in ``directory`` (:meth:`AggRouter.load` / :meth:`SeqRouter.load`)."""
    if _check_kind(kind) == "agg":
        from trim_pomdp.routers.rl.agg import AggRouter

        return AggRouter.load(directory)
    from trim_pomdp.routers.rl.seq import SeqRouter

    return SeqRouter.load(directory)


def finished_router(kind: str, directory: str | Path) -> TrainedRouter | None:
    """The router a finished :func:`train_router` saved in ``directory``, or ``None`` when there is none."""
    d = Path(directory)
    if not (d / _CARD[_check_kind(kind)]).is_file():
        return None
    router = load_router(kind, d)
    if "stopped" not in router.card:  # written by an earlier version, or by train_agg without train_router
        return None
    return TrainedRouter(router, router.card.get("collapsed"), d)


def train_router(
    kind: str,
    source: Any,
    lam: float,
    *,
    out: str | Path | None = None,
    convergence: Convergence | None = DEFAULT_CONVERGENCE,
    eval_source: Any = None,
    timesteps: int = DEFAULT_MAX_TIMESTEPS,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    plot: bool = True,
    **options: Any,
) -> TrainedRouter:
    """Train TRIM-Agg (``kind="agg"``) or TRIM-Seq (``"seq"``) for one λ, resuming from ``out``.

    Parameters
    ----------
    kind : {"agg", "seq"}
    source : EpisodeBatch or callable returning one
        Training episodes (see :func:`~trim_pomdp.routers.rl.agg.train_agg`).
    lam : float
        Price of one M_s token.
    out : path, optional
        Folder for the checkpoint, the router, the learning curve and its plot.
    convergence : Convergence or None, default DEFAULT_CONVERGENCE
        The budget: train until the held-out return stops improving (``None``: exactly ``timesteps`` steps).
    eval_source : EpisodeBatch or callable, optional
        The held-out episodes (default: a fresh source from ``source``).
    timesteps : int, default DEFAULT_MAX_TIMESTEPS
        The cap on PPO steps (the budget itself without ``convergence``).
    progress : bool
        Progress lines (a bar on a terminal), with the held-out return of every evaluation.
    log : callable, optional
        Receives one-line messages (where things were written, a collapse, a skipped plot).
    plot : bool, default True
        Draw ``learning_curve.png`` (skipped with a message when matplotlib is missing).
    **options
        Passed on to :func:`~trim_pomdp.routers.rl.agg.train_agg` / :func:`~trim_pomdp.routers.rl.seq.train_seq`
        (``seed``, ``n_envs``, ``reward``, ``hyperparameters``, ``source_card``, ``arch``, ...).
    """
    say = log or (lambda msg: None)
    _check_kind(kind)
    d = Path(out) if out is not None else None
    kw: dict[str, Any] = {
        "timesteps": timesteps,
        "progress_bar": progress,
        "convergence": convergence,
        **options,
    }
    if eval_source is not None:
        kw["eval_source"] = eval_source
    if d is not None:
        kw["checkpoint_dir"] = d
    router: Any
    if kind == "agg":
        from trim_pomdp.routers.rl.agg import train_agg

        router = train_agg(source, lam, **kw)
    else:
        from trim_pomdp.routers.rl.seq import train_seq

        router = train_seq(source, lam, **kw)
    if str(router.card.get("checkpoint", "")).startswith("replaced"):
        say(f"{d}: {router.card['checkpoint']}; trained from scratch")
    elif router.card.get("resumed_from_timesteps"):
        say(f"resumed from the checkpoint in {d} at {router.card['resumed_from_timesteps']} steps")
    conv = router.card.get("convergence") or {}
    best = conv.get("best") or {}
    collapsed = collapse(best.get("regenerate_rate"))
    router.card["collapsed"] = collapsed
    name = ROUTERS[kind].label
    if collapsed:
        say(f"{name} at λ={lam:g} collapsed to a constant policy: it {collapsed} on the held-out batch")
    if d is not None:
        router.save(d)
        if conv.get("curve"):
            meta = {"router": name, "lam": lam, "stopped": router.card.get("stopped"), "collapsed": collapsed}
            write_curve(conv["curve"], d, meta)
            if plot:
                _plot(conv["curve"], d, f"{name}, λ={lam:g}: held-out return while training", say)
    return TrainedRouter(router, collapsed, d)


def _plot(curve: list[dict[str, Any]], d: Path, title: str, say: Callable[[str], None]) -> None:
    try:
        plot_curve(curve, d / "learning_curve.png", title=title)
    except BackendUnavailableError as exc:
        say(f"learning_curve.png skipped (learning_curve.csv has the data): {exc}")
