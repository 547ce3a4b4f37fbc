"""TRIM-Agg: a PPO-trained MLP router on ``(r_t, min r_{1:t-1}, c_t, t)`` (paper §4.2, Appendix B, Table 3).

Training uses stable-baselines3 on :class:`~trim_pomdp.routers.rl.env.RoutingEnv` (imported lazily: the router
itself runs in numpy, so loading and using a trained router needs neither torch nor SB3).

Saved layout of a trained router (``AggRouter.save(DIR)``)::

    DIR/agg_policy.npz   actor weights (numpy, no pickle)
    DIR/agg.json         card: λ, R, features, PPO hyperparameters, training source, timesteps, seed, versions
    DIR/ppo.zip          the full SB3 model (actor + critic + optimiser), for continued training
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from trim_pomdp._internal.artifacts import json_default
from trim_pomdp._internal.optional import require
from trim_pomdp.constants import ACTIONS
from trim_pomdp.exceptions import DataFormatError, InvalidParameterError
from trim_pomdp.routers.rl.features import AggFeatures, token_feature
from trim_pomdp.types import BatchObservation, EpisodeBatch, StepObservation

__all__ = ["POLICY_KWARGS", "PPO_HYPERPARAMETERS", "AggRouter", "train_agg"]

FORMAT = "trim-pomdp/agg-router/1"

# : The paper's Table 3 (learning rate, clipping, entropy, unnormalised advantages, undiscounted, GAE 0.95)
# plus the : rollout sizes the paper leaves open (chosen here for CPU training).
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
#: Two hidden layers of 128 tanh units, separate actor and critic heads.
POLICY_KWARGS: dict[str, Any] = {"net_arch": {"pi": [128, 128], "vf": [128, 128]}, "activation_fn": "tanh"}


class AggRouter:
    """The TRIM-Agg router: a deterministic (argmax) MLP actor on TRIM-Agg's features.

    Build it with :func:`train_agg` or :meth:`load`. Inference is plain numpy.

    Parameters
    ----------
    weights : list of (W, b)
        Layers of the actor, ``W`` of shape (in, out); tanh after every layer but the last (the 2 action
        logits).
    horizon : int
        ``H`` used for the ``t/H`` feature (must match training).
    card : dict, optional
        Metadata (λ, training, ...), saved with the router.

    Attributes
    ----------
    last_decision : dict
        ``{"t", "features", "probs", "action"}`` of the last :meth:`decide`.
    ppo : stable_baselines3.PPO or None
        The trained SB3 model when the router was just trained (not restored by :meth:`load`).
    """

    def __init__(
        self, weights: list[tuple[np.ndarray, np.ndarray]], horizon: int, card: dict[str, Any] | None = None
    ):
        if not weights:
            raise InvalidParameterError("AggRouter needs at least one layer of weights")
        self.weights = [
            (np.asarray(W, dtype=np.float32), np.asarray(b, dtype=np.float32)) for W, b in weights
        ]
        self._w32 = self.weights
        if self.weights[0][0].shape[0] != AggFeatures.dim or self.weights[-1][0].shape[1] != 2:
            raise InvalidParameterError(
                f"AggRouter's network must map {AggFeatures.dim} features to 2 logits, got "
                f"{self.weights[0][0].shape[0]} -> {self.weights[-1][0].shape[1]}"
            )
        self.features = AggFeatures(horizon)
        self.horizon = int(horizon)
        self.card = dict(card or {})
        self.ppo = None
        self._last: dict[str, Any] = {}

    @property
    def lam(self) -> float | None:
        return self.card.get("lam")

    def __repr__(self) -> str:
        return f"AggRouter(lam={self.lam!r}, horizon={self.horizon})"

    # -- network -----
    def logits(self, x: np.ndarray) -> np.ndarray:
        """Action logits for feature rows ``x`` of shape (n, 4) (float32, like the torch network)."""
        h = np.asarray(x, dtype=np.float32)
        last = len(self._w32) - 1
        for i, (W, b) in enumerate(self._w32):
            h = h @ W
            h += b
            if i < last:
                np.tanh(h, out=h)
        return h

    # -- Router -----
    def reset(self) -> None:
        self._last = {}

    def decide(self, obs: StepObservation) -> str:
        m = obs.prefix_min
        x = np.array(
            [
                [
                    min(max(obs.score, 0.0), 1.0),
                    1.0 if m is None else min(max(m, 0.0), 1.0),
                    float(token_feature(obs.tokens)),
                    min(obs.t / self.horizon, 1.0),
                ]
            ],
            dtype=np.float32,
        )
        z = self.logits(x)[0].astype(np.float64)
        p = np.exp(z - z.max())
        p /= p.sum()
        a = int(np.argmax(z))
        self._last = {"t": obs.t, "features": x[0].tolist(), "probs": p.tolist(), "action": ACTIONS[a]}
        return ACTIONS[a]

    @property
    def last_decision(self) -> dict[str, Any]:
        return dict(self._last)

    # -- BatchRouter -----
    def reset_batch(self, n: int) -> None:
        """Stateless across steps: nothing to do."""

    def decide_batch(self, obs: BatchObservation) -> np.ndarray:
        """Actions (0 continue, 1 regenerate) for every row; the network runs on the active rows only."""
        out = np.zeros(obs.n, dtype=np.int64)
        rows = np.flatnonzero(np.asarray(obs.active, dtype=bool))
        if rows.size:
            x = self.features(obs)[rows]
            with _single_blas_thread(rows.size >= 512):
                z = self.logits(x)
            out[rows] = z[:, 1] > z[:, 0]
        return out

    # -- persistence -----
    def save(self, directory: str | Path) -> Path:
        """Write ``agg_policy.npz``, ``agg.json`` and, with the SB3 model at hand, ``ppo.zip`` to a folder."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {"format": np.array(FORMAT), "n_layers": np.array(len(self.weights))}
        for i, (W, b) in enumerate(self.weights):
            arrays[f"W{i}"], arrays[f"b{i}"] = W, b
        np.savez_compressed(d / "agg_policy.npz", **arrays)
        card = dict(self.card)
        card.update({"format": FORMAT, "horizon": self.horizon, "features": self.features.card()})
        if self.ppo is not None:
            self.ppo.save(str(d / "ppo.zip"))
            card["sb3_model"] = "ppo.zip"
        (d / "agg.json").write_text(json.dumps(card, indent=2, default=json_default) + "\n")
        return d

    @classmethod
    def load(cls, directory: str | Path) -> AggRouter:
        """Read a router written by :meth:`save` (numpy only; a bad file raises DataFormatError)."""
        d = Path(directory)
        npz, js = d / "agg_policy.npz", d / "agg.json"
        if not npz.exists():
            raise DataFormatError(
                f"{d} holds no TRIM-Agg router: {npz.name} is missing (train one with `trim-pomdp train-agg`)"
            )
        try:
            card = json.loads(js.read_text()) if js.exists() else {}
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"router card {js} is not valid JSON: {exc}") from exc
        try:
            with np.load(npz, allow_pickle=False) as data:
                if str(data["format"]) != FORMAT:
                    raise DataFormatError(f"{npz} is not a TRIM-Agg router (format {str(data['format'])!r})")
                weights = [(data[f"W{i}"], data[f"b{i}"]) for i in range(int(data["n_layers"]))]
        except DataFormatError:
            raise
        except (OSError, ValueError, KeyError) as exc:
            raise DataFormatError(f"cannot read router weights from {npz}: {exc}") from exc
        horizon = card.get("horizon")
        if horizon is None:
            raise DataFormatError(f"router card {js} lacks 'horizon'")
        return cls(weights, int(horizon), card)

    @classmethod
    def from_ppo(cls, model: Any, horizon: int, card: dict[str, Any] | None = None) -> AggRouter:
        """Extract the actor of an SB3 ``PPO`` MlpPolicy model into a numpy router."""
        policy = model.policy
        layers = []
        for module in policy.mlp_extractor.policy_net:
            if hasattr(module, "weight"):
                layers.append((module.weight.detach().cpu().numpy().T, module.bias.detach().cpu().numpy()))
        head = policy.action_net
        layers.append((head.weight.detach().cpu().numpy().T, head.bias.detach().cpu().numpy()))
        router = cls(layers, horizon, card)
        router.ppo = model
        return router


@contextlib.contextmanager
def _single_blas_thread(active: bool) -> Iterator[None]:
    """Run large batched forward passes on one BLAS thread.

    A 128-unit MLP on 10^4 rows is memory-bound; threaded BLAS gains little and, on a busy machine, loses a
    lot to oversubscription (measured 5x). Uses threadpoolctl (a scikit-learn dependency) when available.
    """
    if not active:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn brings it
        yield
        return
    with threadpool_limits(1, user_api="blas"):
        yield


def check_training_args(source: Any, lam: Any, timesteps: Any, n_envs: Any) -> None:
    """Validate the arguments shared by :func:`train_agg` and :func:`~.seq.train_seq`."""
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


def train_agg(
    source: EpisodeBatch | Callable[[], EpisodeBatch],
    lam: float,
    *,
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
) -> AggRouter:
    """Train TRIM-Agg with PPO for one λ.

    Parameters
    ----------
    source : EpisodeBatch or callable returning one
        Episode source. With ``n_envs > 1`` pass a callable (e.g. ``lambda: ModelProcess(model)``) so every
        environment owns its source; an instance is only accepted for ``n_envs = 1``.
    lam : float
        Cost per M_s token in the reward ``R * correct - lam * strong_tokens``.
    timesteps : int, default=300_000
        Total environment steps.
    seed : int, default=0
        Seeds PPO (torch, numpy) and the environments; the same seed on the same machine gives the same
        router.
    n_envs : int, default=8
        Environments stepped together (``DummyVecEnv``).
    hyperparameters : dict, optional
        Overrides of :data:`PPO_HYPERPARAMETERS`.
    progress_bar : bool, default=False
        Show a rich progress bar (steps, speed, time left).
    callback : SB3 callback, optional
    torch_threads : int or None, default=1
        ``torch.set_num_threads`` during training (a 128-unit MLP trains fastest single-threaded).
    checkpoint_dir : path, optional
        Save ``ppo.zip`` + ``checkpoint.json`` there about every ``checkpoint_every`` steps, and resume from
        a checkpoint found there (same λ, reward, seed and ``n_envs``) instead of starting over; the steps
        already done count towards ``timesteps``.

    Returns
    -------
    AggRouter
        With ``router.ppo`` set to the SB3 model and a card describing the run.
    """
    check_training_args(source, lam, timesteps, n_envs)
    torch = require("torch", "rl", "TRIM-Agg training")
    sb3 = require("stable_baselines3", "rl", "TRIM-Agg training")
    from stable_baselines3.common.env_util import make_vec_env

    from trim_pomdp.routers.rl.env import RoutingEnv

    hp = dict(PPO_HYPERPARAMETERS)
    hp.update(hyperparameters or {})
    policy_kwargs = {"net_arch": POLICY_KWARGS["net_arch"], "activation_fn": torch.nn.Tanh}
    old_threads = torch.get_num_threads()
    if torch_threads:
        torch.set_num_threads(int(torch_threads))
    try:

        def env_fn() -> RoutingEnv:
            return RoutingEnv(source, lam, reward=reward, features="agg")

        venv = make_vec_env(env_fn, n_envs=int(n_envs), seed=int(seed))
        horizon = int(venv.get_attr("horizon", [0])[0])
        run_key = {"lam": float(lam), "reward": float(reward), "seed": int(seed), "n_envs": int(n_envs)}
        model, done = None, 0
        ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
        if ckpt is not None and (ckpt / "checkpoint.json").exists() and (ckpt / "ppo.zip").exists():
            try:
                meta = json.loads((ckpt / "checkpoint.json").read_text())
            except json.JSONDecodeError as exc:
                raise DataFormatError(
                    f"checkpoint card {ckpt / 'checkpoint.json'} is not valid JSON: {exc}"
                ) from exc
            if meta.get("run") == run_key:
                model = sb3.PPO.load(str(ckpt / "ppo.zip"), env=venv, device="cpu")
                done = int(model.num_timesteps)
        if model is None:
            model = sb3.PPO(
                "MlpPolicy",
                venv,
                policy_kwargs=policy_kwargs,
                seed=int(seed),
                device="cpu",
                verbose=verbose,
                **hp,
            )
        callbacks = [callback] if callback is not None else []
        if ckpt is not None:
            callbacks.append(_checkpoint_callback(ckpt, int(checkpoint_every), run_key))
        t0 = time.perf_counter()
        remaining = max(int(timesteps) - done, 0)
        if progress_bar and remaining:
            callbacks.append(rich_progress_callback(int(timesteps), done, "TRIM-Agg PPO"))
        if remaining:
            model.learn(total_timesteps=remaining, callback=callbacks or None, reset_num_timesteps=done == 0)
        seconds = time.perf_counter() - t0
    finally:
        torch.set_num_threads(old_threads)
    from trim_pomdp._internal.artifacts import package_versions

    card = {
        "router": "TRIM-Agg",
        "lam": float(lam),
        "reward": float(reward),
        "timesteps": int(timesteps),
        "seed": int(seed),
        "n_envs": int(n_envs),
        "train_seconds": seconds,
        "resumed_from_timesteps": done,
        "ppo": hp,
        "policy": {"net_arch": POLICY_KWARGS["net_arch"], "activation_fn": "tanh", "deterministic": "argmax"},
        "source": source_card or {"type": type(venv.get_attr("source", [0])[0]).__name__},
        "versions": package_versions("stable-baselines3", "gymnasium", "torch"),
    }
    return AggRouter.from_ppo(model, horizon, card)


def rich_progress_callback(total: int, done: int = 0, description: str = "PPO") -> Any:
    """An SB3 callback showing training progress with rich (no tqdm needed)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from stable_baselines3.common.callbacks import BaseCallback

    class RichProgress(BaseCallback):
        def _on_training_start(self) -> None:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("steps"),
                TimeRemainingColumn(),
            )
            self._bar.start()
            self._task = self._bar.add_task(description, total=total, completed=done)

        def _on_step(self) -> bool:
            self._bar.update(self._task, completed=min(int(self.model.num_timesteps), total))
            return True

        def _on_training_end(self) -> None:
            self._bar.update(self._task, completed=min(int(self.model.num_timesteps), total))
            self._bar.stop()

    return RichProgress()


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
            card = {"run": run_key, "num_timesteps": int(self.model.num_timesteps)}
            (directory / "checkpoint.json").write_text(json.dumps(card) + "\n")

        def _on_step(self) -> bool:
            if self.model.num_timesteps - self._last >= every:
                self._last = self.model.num_timesteps
                self._save()
            return True

        def _on_training_end(self) -> None:
            self._save()

    return Checkpoint()
