"""PPO training shared by TRIM-Agg and TRIM-Seq (stable-baselines3 on :class:`~.env.RoutingEnv`).

:func:`train_ppo` owns what both routers train the same way: the checks of the arguments, one
:class:`~trim_pomdp.routers.rl.env.RoutingEnv` per vectorised environment, torch's thread count, the PPO
model, checkpoints and resume, progress and the common part of the router's card. The routers differ only in
the features the environment computes and the policy network (``policy_kwargs``).

Needs torch, gymnasium and stable-baselines3 (``pip install 'trim-pomdp[rl]'``).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trim_pomdp._internal.artifacts import package_versions, write_json
from trim_pomdp._internal.optional import require
from trim_pomdp._internal.progress import Progress
from trim_pomdp.exceptions import DataFormatError, InvalidParameterError
from trim_pomdp.types import EpisodeBatch

__all__ = ["NET_ARCH", "PPO_HYPERPARAMETERS", "PPORun", "check_training_args", "train_ppo"]

#: The paper's Table 3 (learning rate, clipping, entropy, unnormalised advantages, undiscounted, GAE 0.95) plus
#: the rollout sizes the paper leaves open (chosen here for CPU training).
PPO_HYPERPARAMETERS: dict[str, Any] = {
    "learning_rate": 1e-4,
    "clip_range": 0.2,
    "ent_coef": 0.01,
    "normalize_advantage": False,
    "gamma": 1.0,
    "gae_lambda": 0.95,
    "n_steps": 256,
    "batch_size": 256,
    "n_epochs": 10,
    "vf_coef": 0.5,
    "max_grad_norm": 0.5,
}
#: Two hidden layers of 128 tanh units, separate actor and critic heads (both routers).
NET_ARCH: dict[str, list[int]] = {"pi": [128, 128], "vf": [128, 128]}


@dataclass
class PPORun:
    """What :func:`train_ppo` returns: the SB3 model, the sources' horizon and the card of the run."""

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

    if not is_source_factory(source) and n_envs > 1:
        raise InvalidParameterError(
            "with n_envs > 1 pass a callable that builds a fresh episode source per environment "
            "(e.g. lambda: ModelProcess(model)), not a single source instance"
        )


def train_ppo(
    source: EpisodeBatch | Callable[[], EpisodeBatch],
    lam: float,
    *,
    features: str,
    policy_kwargs: Callable[[], dict[str, Any]],
    description: str,
    timesteps: int = 300_000,
    seed: int = 0,
    n_envs: int = 8,
    reward: float = 1.0,
    hyperparameters: dict[str, Any] | None = None,
    progress_bar: bool = False,
    callback: Any = None,
    torch_threads: int | None = 1,
    source_card: dict[str, Any] | None = None,
    verbose: int = 0,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 50_000,
) -> PPORun:
    """Train a PPO router for one λ; the parameters are those of :func:`~.agg.train_agg`.

    ``features`` names the environment's observation (``"agg"`` or ``"seq"``), ``policy_kwargs`` builds the
    network's SB3 ``policy_kwargs`` (called once torch is loaded) and ``description`` labels the progress.
    """
    check_training_args(source, lam, timesteps, n_envs)
    torch = require("torch", "rl", f"{description} training")
    sb3 = require("stable_baselines3", "rl", f"{description} training")
    from stable_baselines3.common.env_util import make_vec_env

    from trim_pomdp.routers.rl.env import RoutingEnv

    hp = dict(PPO_HYPERPARAMETERS)
    hp.update(hyperparameters or {})
    old_threads = torch.get_num_threads()
    if torch_threads:
        torch.set_num_threads(int(torch_threads))
    try:

        def env_fn() -> RoutingEnv:
            return RoutingEnv(source, lam, reward=reward, features=features)

        venv = make_vec_env(env_fn, n_envs=int(n_envs), seed=int(seed))
        horizon = int(venv.get_attr("horizon", [0])[0])
        run_key = {"lam": float(lam), "reward": float(reward), "seed": int(seed), "n_envs": int(n_envs)}
        ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
        model = _resume(sb3, ckpt, run_key, venv) if ckpt is not None else None
        done = int(model.num_timesteps) if model is not None else 0
        if model is None:
            kw = {"policy_kwargs": policy_kwargs(), "seed": int(seed), "verbose": verbose, **hp}
            model = sb3.PPO("MlpPolicy", venv, device="cpu", **kw)
        callbacks = [callback] if callback is not None else []
        if ckpt is not None:
            callbacks.append(_checkpoint_callback(ckpt, int(checkpoint_every), run_key))
        t0 = time.perf_counter()
        remaining = max(int(timesteps) - done, 0)
        if progress_bar and remaining:
            callbacks.append(progress_callback(int(timesteps), done, f"{description} PPO"))
        if remaining:
            model.learn(total_timesteps=remaining, callback=callbacks or None, reset_num_timesteps=done == 0)
        seconds = time.perf_counter() - t0
    finally:
        torch.set_num_threads(old_threads)
    card = {
        "router": description,
        "lam": float(lam),
        "reward": float(reward),
        "timesteps": int(timesteps),
        "seed": int(seed),
        "n_envs": int(n_envs),
        "train_seconds": seconds,
        "resumed_from_timesteps": done,
        "ppo": hp,
        "source": source_card or {"type": type(venv.get_attr("source", [0])[0]).__name__},
        "versions": package_versions("stable-baselines3", "gymnasium", "torch"),
    }
    return PPORun(model, horizon, card)


def _resume(sb3: Any, ckpt: Path, run_key: dict[str, Any], venv: Any) -> Any:
    """The checkpointed model of the same run (λ, reward, seed, n_envs) in ``ckpt``, or ``None``."""
    card, zip_path = ckpt / "checkpoint.json", ckpt / "ppo.zip"
    if not (card.exists() and zip_path.exists()):
        return None
    try:
        meta = json.loads(card.read_text())
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"checkpoint card {card} is not valid JSON: {exc}") from exc
    if meta.get("run") != run_key:
        return None
    return sb3.PPO.load(str(zip_path), env=venv, device="cpu")


def progress_callback(total: int, done: int = 0, description: str = "PPO") -> Any:
    """An SB3 callback reporting training steps through :class:`~trim_pomdp._internal.progress.Progress`.

    A bar on a terminal, plain periodic lines otherwise (CI logs, ``nohup``).
    """
    from stable_baselines3.common.callbacks import BaseCallback

    class _Progress(BaseCallback):
        def _on_training_start(self) -> None:
            self._bar = Progress(total, description, unit="steps")
            self._bar.set(done)

        def _on_step(self) -> bool:
            self._bar.set(min(int(self.model.num_timesteps), total))
            return True

        def _on_training_end(self) -> None:
            self._bar.set(min(int(self.model.num_timesteps), total))
            self._bar.close()

    return _Progress()


def _checkpoint_callback(directory: Path, every: int, run_key: dict[str, Any]) -> Any:
    """An SB3 callback that saves the model and a small card about every ``every`` steps (atomically)."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Checkpoint(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self._last = 0

        def _save(self) -> None:
            directory.mkdir(parents=True, exist_ok=True)
            tmp = directory / "ppo.partial.zip"
            self.model.save(str(tmp))
            tmp.replace(directory / "ppo.zip")
            write_json(
                directory / "checkpoint.json",
                {"run": run_key, "num_timesteps": int(self.model.num_timesteps)},
            )

        def _on_step(self) -> bool:
            if self.model.num_timesteps - self._last >= every:
                self._last = self.model.num_timesteps
                self._save()
            return True

        def _on_training_end(self) -> None:
            self._save()

    return Checkpoint()
