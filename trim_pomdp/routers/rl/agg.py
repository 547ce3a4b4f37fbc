"""TRIM-Agg: a PPO-trained MLP router on ``(r_t, min r_{1:t-1}, c_t, t)`` (paper §4.2, Appendix B, Table 3).

Training uses stable-baselines3 on :class:`~trim_pomdp.routers.rl.env.RoutingEnv` (imported lazily: the router
itself runs in numpy, so loading and using a trained router needs neither torch nor SB3).

Saved layout of a trained router (``AggRouter.save(DIR)``, through the shared artifact helpers)::

    DIR/agg_policy.npz   actor weights (numpy, no pickle)
    DIR/agg.json         card: λ, R, features, PPO hyperparameters, training source, timesteps, seed, versions,
                         the convergence curve, and a digest of the weights and of the fields they depend on (λ,
                         horizon, features)

Continued training reads the checkpoint that training writes beside it (``checkpoint.npz``: actor, critic and
optimiser as plain arrays, :mod:`~trim_pomdp.routers.rl.checkpoint`). Earlier versions also wrote SB3's pickled
``ppo.zip``; it is never read.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from trim_pomdp._internal.artifacts import load_artifact, save_artifact
from trim_pomdp._internal.optional import require
from trim_pomdp.constants import ACTIONS
from trim_pomdp.exceptions import DataFormatError, InvalidParameterError
from trim_pomdp.routers.rl.features import AggFeatures, token_feature
from trim_pomdp.routers.rl.ppo import NET_ARCH, PPO_HYPERPARAMETERS, train_ppo
from trim_pomdp.types import BatchObservation, EpisodeBatch, StepObservation

__all__ = ["POLICY_KWARGS", "PPO_HYPERPARAMETERS", "AggRouter", "train_agg"]

FORMAT = "trim-pomdp/agg-router/1"

#: Two hidden layers of 128 tanh units, separate actor and critic heads.
POLICY_KWARGS: dict[str, Any] = {"net_arch": NET_ARCH, "activation_fn": "tanh"}


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
        The trained SB3 model when the router was just trained (not restored by :meth:`load`; training
        resumes from a checkpoint instead).
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
        """Write ``agg_policy.npz`` and ``agg.json`` to a folder (plain arrays and JSON: nothing pickled)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {"n_layers": np.array(len(self.weights))}
        for i, (W, b) in enumerate(self.weights):
            arrays[f"W{i}"], arrays[f"b{i}"] = W, b
        card = dict(self.card)
        card.pop("sb3_model", None)
        card.update({"horizon": self.horizon, "features": self.features.card()})
        save_artifact(
            d / "agg_policy.npz",
            stem="agg_policy",
            card_stem="agg",
            format=FORMAT,
            arrays=arrays,
            card=card,
            signed=("lam", "horizon", "features"),
        )
        return d

    @classmethod
    def load(cls, directory: str | Path) -> AggRouter:
        """Read a router written by :meth:`save` (numpy only; a bad file raises DataFormatError)."""
        d = Path(directory)
        npz = d / "agg_policy.npz"
        if not npz.exists():
            raise DataFormatError(
                f"{d} holds no TRIM-Agg router: {npz.name} is missing (train one with `trim-pomdp train-agg`)"
            )
        art = load_artifact(
            npz,
            stem="agg_policy",
            card_stem="agg",
            formats=(FORMAT,),
            what="TRIM-Agg router",
            require_card=False,
        )
        art.require("n_layers")
        n_layers = int(art.arrays["n_layers"])
        art.require(*(f"{x}{i}" for i in range(n_layers) for x in "Wb"))
        weights = [(art.arrays[f"W{i}"], art.arrays[f"b{i}"]) for i in range(n_layers)]
        horizon = art.card.get("horizon")
        if horizon is None:
            raise DataFormatError(f"router card {art.json} lacks 'horizon'")
        return cls(weights, int(horizon), art.card)

    @classmethod
    def from_ppo(cls, model: Any, horizon: int, card: dict[str, Any] | None = None) -> AggRouter:
        """Extract the actor of an SB3 ``PPO`` MlpPolicy model into a numpy router (``router.ppo`` is the model)."""
        router = cls.from_policy(model.policy, horizon, card)
        router.ppo = model
        return router

    @classmethod
    def from_policy(cls, policy: Any, horizon: int, card: dict[str, Any] | None = None) -> AggRouter:
        """A numpy copy of the actor of an SB3 ``ActorCriticPolicy`` with TRIM-Agg's network."""
        layers = []
        for module in policy.mlp_extractor.policy_net:
            if hasattr(module, "weight"):
                layers.append((module.weight.detach().cpu().numpy().T, module.bias.detach().cpu().numpy()))
        head = policy.action_net
        layers.append((head.weight.detach().cpu().numpy().T, head.bias.detach().cpu().numpy()))
        return cls(layers, horizon, card)


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


def train_agg(source: EpisodeBatch | Callable[[], EpisodeBatch], lam: float, **options: Any) -> AggRouter:
    """Train TRIM-Agg with PPO for one λ.

    The keyword arguments go to :func:`~trim_pomdp.routers.rl.ppo.train_ppo`, the training TRIM-Seq shares.

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
    n_envs : int, default=32
        Episodes in flight, stepped together in one source (:class:`~trim_pomdp.routers.rl.vec.EpisodeVecEnv`).
    reward : float, default=1.0
        ``R``, the reward of a correct final answer.
    hyperparameters : dict, optional
        Overrides of :data:`PPO_HYPERPARAMETERS`.
    progress_bar : bool, default=False
        Report progress (steps, speed, time left): a bar on a terminal, plain lines otherwise.
    callback : SB3 callback, optional
    torch_threads : int or None, default=1
        ``torch.set_num_threads`` during training (a 128-unit MLP trains fastest single-threaded).
    source_card : dict, optional
        What the source is, for the router's card (default: its class name).
    verbose : int, default=0
        SB3's verbosity.
    checkpoint_dir : path, optional
        Save ``checkpoint.npz`` + ``checkpoint.json`` (plain arrays, :mod:`~trim_pomdp.routers.rl.checkpoint`)
        there about every ``checkpoint_every`` (default 50 000) steps and at every held-out evaluation, and
        resume from a checkpoint found there (same λ, reward, seed, ``n_envs``, hyperparameters) instead of
        starting over; the steps already done count towards ``timesteps``. A folder holding a pickled
        ``ppo.zip`` of an earlier version is refused (:class:`DataFormatError`), never unpickled.
    convergence : Convergence, optional
        Stop once the return on a fixed held-out batch stops improving (``timesteps`` is then the cap) and keep
        the best router evaluated; the curve goes into the card (``card["convergence"]``).
    eval_source : EpisodeBatch or callable, optional
        The held-out episodes for ``convergence`` (default: a fresh source built by ``source``).

    Returns
    -------
    AggRouter
        With ``router.ppo`` set to the SB3 model and a card describing the run.
    """

    def policy_kwargs() -> dict[str, Any]:
        return {"net_arch": NET_ARCH, "activation_fn": require("torch", "rl", "TRIM-Agg training").nn.Tanh}

    run = train_ppo(
        source, lam, features="agg", policy_kwargs=policy_kwargs, description="TRIM-Agg",
        make_router=lambda model, horizon: AggRouter.from_policy(model.policy, horizon), **options,
    )  # fmt: skip
    card = dict(run.card)
    card["policy"] = {"net_arch": NET_ARCH, "activation_fn": "tanh", "deterministic": "argmax"}
    return AggRouter.from_ppo(run.model, run.horizon, card)
