"""PPO training shared by TRIM-Agg and TRIM-Seq (stable-baselines3 on :class:`~.vec.EpisodeVecEnv`).

:func:`train_ppo` owns what both routers train the same way: the checks of the arguments, the vectorised
environment (every episode in flight in one source), torch's thread count, the PPO model, the training budget
(a fixed number of steps, or :class:`~.convergence.Convergence`: until the return on a fixed held-out batch stops
improving), checkpoints and resume (plain arrays, :mod:`~.checkpoint`; nothing is ever unpickled), progress and
the common part of the router's card. The routers differ only in the features the environment computes, the
policy network (``policy_kwargs``) and how a router is read off the trained model (``make_router``).

stable-baselines3 is given a logger of its own that writes nowhere (or to stdout with ``verbose``), so training
leaves no ``SB3-<date>`` folder in the temporary directory.

Needs torch, gymnasium and stable-baselines3 (``pip install 'trim-pomdp[rl]'``).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trim_pomdp._internal.artifacts import package_versions, to_jsonable
from trim_pomdp._internal.optional import require
from trim_pomdp._internal.progress import Progress
from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.routers.rl.convergence import Convergence, ConvergenceTracker
from trim_pomdp.types import EpisodeBatch

__all__ = ["NET_ARCH", "PPO_HYPERPARAMETERS", "PPORun", "check_training_args", "quiet_logger", "train_ppo"]

#: The paper's Table 3 (learning rate, clipping, entropy, unnormalised advantages, undiscounted, GAE 0.95) plus
#: the rollout sizes the paper leaves open, chosen here for CPU training: 64 steps × 32 episodes in flight = 2048
#: transitions per update (as 256 × 8 did; one batched source call per step then serves 32 episodes, which is
#: faster), minibatches of 256, 10 epochs.
PPO_HYPERPARAMETERS: dict[str, Any] = {
    "learning_rate": 1e-4,
    "clip_range": 0.2,
    "ent_coef": 0.01,
    "normalize_advantage": False,
    "gamma": 1.0,
    "gae_lambda": 0.95,
    "n_steps": 64,
    "batch_size": 256,
    "n_epochs": 10,
    "vf_coef": 0.5,
    "max_grad_norm": 0.5,
}
#: Two hidden layers of 128 tanh units, separate actor and critic heads (both routers).
NET_ARCH: dict[str, list[int]] = {"pi": [128, 128], "vf": [128, 128]}


@dataclass
class PPORun:
    """What :func:`train_ppo` returns: the SB3 model (holding the kept policy), the horizon and the run's card."""

    model: Any
    horizon: int
    card: dict[str, Any]


def check_training_args(source: Any, lam: Any, timesteps: Any, n_envs: Any) -> None:
    """Validate the arguments shared by :func:`~.agg.train_agg` and :func:`~.seq.train_seq`."""
    if not (isinstance(lam, (int, float, np.floating)) and math.isfinite(lam) and lam >= 0):
        raise InvalidParameterError(f"lam must be a finite float >= 0, got {lam!r}")
    if int(timesteps) < 1:
        raise InvalidParameterError(f"timesteps must be >= 1, got {timesteps!r}")
    if int(n_envs) < 1:
        raise InvalidParameterError(f"n_envs must be >= 1, got {n_envs!r}")
    from trim_pomdp.routers.rl.env import is_source_factory
    from trim_pomdp.routers.rl.vec import restarts_rows

    if not is_source_factory(source) and not restarts_rows(source) and n_envs > 1:
        raise InvalidParameterError(
            "with n_envs > 1 pass a callable that builds a fresh episode source per environment "
            "(e.g. lambda: ModelProcess(model)), not a single source instance"
        )


def quiet_logger(verbose: int = 0) -> Any:
    """An SB3 logger that creates no folder: silent, or SB3's table on stdout with ``verbose > 0``."""
    from stable_baselines3.common.logger import HumanOutputFormat, Logger

    return Logger(folder=None, output_formats=[HumanOutputFormat(sys.stdout)] if verbose else [])


def _single_source(source: Any) -> Callable[[], Any]:
    """A factory for one source instance: it serves one cohort at a time (``n_envs = 1``)."""
    used = [False]

    def factory() -> Any:
        if used[0]:
            raise InvalidParameterError(
                "a single episode source instance cannot serve two episodes at once; pass a callable that "
                "builds a fresh source (e.g. lambda: ModelProcess(model))"
            )
        used[0] = True
        return source

    return factory


def train_ppo(
    source: EpisodeBatch | Callable[[], EpisodeBatch],
    lam: float,
    *,
    features: str,
    policy_kwargs: Callable[[], dict[str, Any]],
    description: str,
    make_router: Callable[[Any, int], Any],
    timesteps: int = 300_000,
    seed: int = 0,
    n_envs: int = 32,
    reward: float = 1.0,
    hyperparameters: dict[str, Any] | None = None,
    progress_bar: bool = False,
    callback: Any = None,
    torch_threads: int | None = 1,
    source_card: dict[str, Any] | None = None,
    verbose: int = 0,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 50_000,
    convergence: Convergence | None = None,
    eval_source: Any = None,
    run_extra: dict[str, Any] | None = None,
) -> PPORun:
    """Train a PPO router for one λ; the parameters are those of :func:`~.agg.train_agg`.

    ``features`` names the environment's observation (``"agg"`` or ``"seq"``), ``policy_kwargs`` builds the
    network's SB3 ``policy_kwargs`` (called once torch is loaded), ``description`` labels the progress,
    ``make_router(model, horizon)`` reads the router off the model (for the held-out evaluations) and
    ``run_extra`` adds what else a checkpoint must match to be resumed (e.g. TRIM-Seq's architecture); the
    settings, the hyperparameters and ``source_card`` must match too.
    """
    check_training_args(source, lam, timesteps, n_envs)
    torch = require("torch", "rl", f"{description} training")
    sb3 = require("stable_baselines3", "rl", f"{description} training")
    from trim_pomdp.routers.rl.env import is_source_factory
    from trim_pomdp.routers.rl.vec import EpisodeVecEnv, restarts_rows

    hp = dict(PPO_HYPERPARAMETERS)
    hp.update(hyperparameters or {})
    if "batch_size" not in (hyperparameters or {}):  # a minibatch is never larger than one rollout
        hp["batch_size"] = min(int(hp["batch_size"]), int(hp["n_steps"]) * int(n_envs))
    run_key = {
        "router": description,
        "lam": float(lam),
        "reward": float(reward),
        "seed": int(seed),
        "n_envs": int(n_envs),
        "features": features,
        "ppo": hp,
        "source": source_card,
        **(run_extra or {}),
    }
    run_key = to_jsonable(run_key)  # as the checkpoint's card stores it
    env_source = source if is_source_factory(source) or restarts_rows(source) else _single_source(source)
    eval_src = _eval_source(source, eval_source) if convergence is not None else None
    old_threads = torch.get_num_threads()
    if torch_threads:
        torch.set_num_threads(int(torch_threads))
    try:
        venv = EpisodeVecEnv(env_source, int(n_envs), lam, reward=reward, features=features, seed=int(seed))
        kw = {"policy_kwargs": policy_kwargs(), "seed": int(seed), "verbose": verbose, **hp}
        model = sb3.PPO("MlpPolicy", venv, device="cpu", **kw)
        model.set_logger(quiet_logger(verbose))
        ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
        art, best, ckpt_status = _resume(model, ckpt, run_key)
        done = int(model.num_timesteps)
        tracker = None
        if convergence is not None:
            tracker = ConvergenceTracker.from_state(convergence, art.card.get("convergence") if art else None)
        trainer = _Trainer(
            model, venv.horizon, lam, reward, description, int(timesteps), done, make_router, run_key,
            ckpt, int(checkpoint_every), tracker, eval_src, best, progress_bar,
        )  # fmt: skip
        remaining = 0 if (tracker is not None and tracker.stopped) else max(int(timesteps) - done, 0)
        t0 = time.perf_counter()
        callbacks = [trainer.callback(), *([callback] if callback is not None else [])]
        if remaining:
            model.learn(total_timesteps=remaining, callback=callbacks, reset_num_timesteps=done == 0)
        elif tracker is not None and not tracker.curve:
            trainer.evaluate()
        seconds = time.perf_counter() - t0
        trainer.finish()
    finally:
        torch.set_num_threads(old_threads)
    card = {
        **_run_card(description, lam, reward, timesteps, seed, n_envs, hp),
        "timesteps_trained": int(model.num_timesteps),
        "train_seconds": seconds,
        "steps_per_second": (int(model.num_timesteps) - done) / seconds if seconds > 0 else None,
        "resumed_from_timesteps": done,
        "checkpoint": ckpt_status,
        "stopped": trainer.stop_reason(),
        "source": source_card or {"type": getattr(venv.source, "kind", type(venv.source).__name__)},
        "versions": package_versions("stable-baselines3", "gymnasium", "torch"),
    }
    if tracker is not None:
        card["convergence"] = tracker.summary()
    return PPORun(model, venv.horizon, card)


def _eval_source(source: Any, eval_source: Any) -> Any:
    """The held-out episode source: ``eval_source`` (or what it builds), else a fresh one from ``source``."""
    from trim_pomdp.routers.rl.env import is_source_factory

    if eval_source is not None:
        return eval_source() if is_source_factory(eval_source) else eval_source
    if is_source_factory(source):
        return source()
    raise InvalidParameterError(
        "a convergence criterion needs held-out episodes: pass eval_source=..., or pass the training source "
        "as a callable that builds fresh sources"
    )


class _Trainer:
    """What happens during ``learn``: progress, held-out evaluations, the kept policy, checkpoints."""

    def __init__(
        self,
        model: Any,
        horizon: int,
        lam: float,
        reward: float,
        description: str,
        total: int,
        done: int,
        make_router: Callable[[Any, int], Any],
        run_key: dict[str, Any],
        ckpt: Path | None,
        every: int,
        tracker: ConvergenceTracker | None,
        eval_src: Any,
        best: dict[str, np.ndarray] | None,
        progress: bool,
    ) -> None:
        self.model, self.horizon, self.lam, self.reward = model, horizon, lam, reward
        self.make_router, self.run_key, self.ckpt, self.every = make_router, run_key, ckpt, max(1, every)
        self.tracker, self.eval_src, self.best = tracker, eval_src, best
        self.total, self.done = total, done
        self.bar = Progress(total, f"{description} PPO (λ={lam:g})", enabled=progress, unit="steps")
        self.bar.set(done)
        self._last_save = done
        self._t0 = time.perf_counter()

    def callback(self) -> Any:
        from stable_baselines3.common.callbacks import BaseCallback

        trainer = self

        class _Callback(BaseCallback):
            def _on_training_start(self) -> None:
                if trainer.tracker is not None and trainer.tracker.due(int(self.model.num_timesteps)):
                    trainer.evaluate()

            def _on_step(self) -> bool:
                return trainer.on_step()

        return _Callback()

    def on_step(self) -> bool:
        t = int(self.model.num_timesteps)
        self.bar.set(min(t, self.total))
        if self.tracker is not None and self.tracker.due(t):
            self.evaluate()
            if self.tracker.stopped:
                return False
        elif self.ckpt is not None and t - self._last_save >= self.every:
            self.save()
        return True

    def evaluate(self) -> None:
        """Run the current router on the held-out batch, keep it if it is the best so far, checkpoint."""
        from trim_pomdp.routers.rl.checkpoint import state_arrays
        from trim_pomdp.routers.rollout import rollout

        assert self.tracker is not None
        crit = self.tracker.criterion
        router = self.make_router(self.model, self.horizon)
        res = rollout(
            router, self.eval_src, crit.eval_episodes, lam=self.lam, reward=self.reward, seed=crit.seed
        )
        t = int(self.model.num_timesteps)
        if self.tracker.record(t, res, time.perf_counter() - self._t0):
            self.best = state_arrays(self.model.policy, "")
        b = self.tracker.best or {}
        self.bar.set(min(t, self.total), note=(
            f"held-out return {res.ret:.4f} (best {b.get('ret', float('nan')):.4f} at {b.get('timesteps')}), "
            f"regenerate rate {res.regenerate_rate:.3f}"
        ))  # fmt: skip
        if self.ckpt is not None:
            self.save()

    def save(self) -> None:
        from trim_pomdp.routers.rl.checkpoint import save_checkpoint

        assert self.ckpt is not None
        extra = {"convergence": self.tracker.state()} if self.tracker is not None else {}
        save_checkpoint(self.ckpt, self.model, self.run_key, best=self.best, extra=extra)
        self._last_save = int(self.model.num_timesteps)

    def stop_reason(self) -> str:
        if self.tracker is not None and self.tracker.stopped:
            return self.tracker.stopped
        return "budget"

    def finish(self) -> None:
        """Evaluate the last policy, checkpoint, and load the kept (best) policy into the model."""
        from trim_pomdp.routers.rl.checkpoint import load_state_arrays

        t = int(self.model.num_timesteps)
        if self.tracker is not None and not self.tracker.stopped and self.tracker.last_timesteps != t:
            self.evaluate()
        elif self.ckpt is not None and (self._last_save != t or not (self.ckpt / "checkpoint.npz").exists()):
            self.save()
        self.bar.close()
        if self.tracker is not None and self.best is not None:
            load_state_arrays(self.model.policy, self.best, "", Path("<best policy>"))


def _resume(model: Any, ckpt: Path | None, run_key: dict[str, Any]) -> tuple[Any, Any, str]:
    """``(checkpoint, best router state, status)``: the checkpoint in ``ckpt`` restored into ``model`` when it is
    of this run (``run_key``); one of another run is reported as replaced and not used."""
    from trim_pomdp.routers.rl.checkpoint import read_checkpoint, restore_checkpoint

    art = read_checkpoint(ckpt) if ckpt is not None else None
    if art is None:
        return None, None, "none"
    if art.card.get("run") == run_key:
        return art, restore_checkpoint(model, art), "resumed"
    return (
        None,
        None,
        "replaced: the checkpoint found was of another run (λ, seed, settings or source differ)",
    )


def _run_card(
    description: str, lam: float, reward: float, timesteps: int, seed: int, n_envs: int, hp: dict[str, Any]
) -> dict[str, Any]:
    """The settings part of a training's card (in the card's key order)."""
    return {
        "router": description,
        "lam": float(lam),
        "reward": float(reward),
        "timesteps": int(timesteps),
        "seed": int(seed),
        "n_envs": int(n_envs),
        "ppo": hp,
    }
