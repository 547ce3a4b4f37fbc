"""TRIM-Seq: a small transformer over ((r_1, c_1) … (r_t, c_t)) trained by TRIM-Agg's PPO (paper §4.2).

The observation is TRIM-Seq's padded sequence (:class:`~trim_pomdp.routers.rl.features.SeqFeatures`, shape ``(H,
3)``: score, token feature, validity). A custom SB3 features extractor embeds each step, adds a learned
position embedding, runs a pre-norm transformer encoder with the padding masked out and returns the output at
the newest step; the same two 128-unit tanh layers as TRIM-Agg then form the separate actor and critic heads.

Needs torch and stable-baselines3 (``pip install 'trim-pomdp[rl]'``) for training *and* inference.

Saved layout (``SeqRouter.save(DIR)``, through the shared artifact helpers): ``DIR/seq_policy.npz`` (the policy's
parameters as plain arrays) and ``DIR/seq.json`` (card: λ, horizon, features, the transformer's sizes, training,
and a digest of both files). Loading rebuilds the network from code and loads the arrays into it, so a router
someone hands you never runs code. Routers of trim-pomdp 0.1 were a pickled SB3 ``ppo.zip``; they are refused
with a message, never unpickled.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from trim_pomdp._internal.artifacts import load_artifact, save_artifact
from trim_pomdp._internal.optional import require
from trim_pomdp.constants import ACTIONS
from trim_pomdp.exceptions import DataFormatError, InvalidParameterError
from trim_pomdp.routers.rl.features import SeqFeatures
from trim_pomdp.routers.rl.ppo import NET_ARCH, train_ppo
from trim_pomdp.types import BatchObservation, EpisodeBatch, StepObservation

__all__ = ["SEQ_ARCH", "SeqRouter", "build_policy", "train_seq"]

FORMAT = "trim-pomdp/seq-router/2"
#: The format of trim-pomdp 0.1 (a card beside a pickled ``ppo.zip``), refused.
LEGACY_FORMAT = "trim-pomdp/seq-router/1"

#: transformer size (small: the inputs are 3 numbers per step)
SEQ_ARCH: dict[str, int] = {"d_model": 32, "n_heads": 4, "n_layers": 2, "d_ff": 64}


def _extractor_class():
    torch = require("torch", "rl", "TRIM-Seq")
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

    nn = torch.nn

    class SeqTransformerExtractor(BaseFeaturesExtractor):
        """Transformer encoder over the padded (score, tokens, valid) sequence; output at the newest step."""

        def __init__(
            self, observation_space, d_model: int = 32, n_heads: int = 4, n_layers: int = 2, d_ff: int = 64
        ):
            super().__init__(observation_space, features_dim=d_model)
            horizon = observation_space.shape[0]
            self.embed = nn.Linear(2, d_model)
            self.pos = nn.Parameter(torch.zeros(horizon, d_model))
            nn.init.normal_(self.pos, std=0.02)
            layer = nn.TransformerEncoderLayer(
                d_model, n_heads, dim_feedforward=d_ff, dropout=0.0, batch_first=True, norm_first=True
            )
            self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(d_model)

        def forward(self, obs):
            valid = obs[..., 2] > 0.5
            valid = valid.clone()
            valid[:, 0] = True  # never an all-masked row
            # cut after the longest valid prefix of the batch: with the causal mask the outputs at valid
            # positions do not depend on later ones (exact, and much cheaper early in episodes)
            L = int(valid.sum(dim=1).max())
            obs, valid = obs[:, :L], valid[:, :L]
            h = self.embed(obs[..., :2]) + self.pos[:L]
            causal = torch.triu(torch.ones(L, L, dtype=torch.bool, device=obs.device), diagonal=1)
            h = self.encoder(h, mask=causal, src_key_padding_mask=~valid)
            last = valid.long().sum(dim=1) - 1
            out = h[torch.arange(h.shape[0], device=obs.device), last]
            return self.norm(out)

    return SeqTransformerExtractor


def _policy_kwargs(arch: dict[str, int]) -> dict[str, Any]:
    torch = require("torch", "rl", "TRIM-Seq")
    return {
        "features_extractor_class": _extractor_class(),
        "features_extractor_kwargs": dict(arch),
        "net_arch": NET_ARCH,
        "activation_fn": torch.nn.Tanh,
    }


def build_policy(horizon: int, arch: dict[str, int] | None = None) -> Any:
    """TRIM-Seq's actor-critic network for horizon ``horizon``, built from code (untrained, inference mode)."""
    require("torch", "rl", "TRIM-Seq")
    gym = require("gymnasium", "rl", "TRIM-Seq")
    from stable_baselines3.common.policies import ActorCriticPolicy

    feats = SeqFeatures(horizon)
    space = gym.spaces.Box(feats.low, feats.high, dtype=np.float32)
    kwargs = _policy_kwargs(dict(SEQ_ARCH, **(arch or {})))
    policy = ActorCriticPolicy(space, gym.spaces.Discrete(2), lambda _: 0.0, **kwargs)
    policy.set_training_mode(False)
    return policy


class SeqRouter:
    """The TRIM-Seq router: the deterministic (argmax) action of a PPO transformer policy.

    Build with :func:`train_seq` or :meth:`load`.

    Parameters
    ----------
    policy : stable_baselines3 ActorCriticPolicy, or a PPO model (its ``policy`` is used)
    horizon : int
    card : dict, optional

    Attributes
    ----------
    policy : ActorCriticPolicy
    ppo : stable_baselines3.PPO or None
        The trained SB3 model when the router was just trained (``None`` after :meth:`load`).
    last_decision : dict
        ``{"t", "probs", "action"}`` of the last :meth:`decide`.
    """

    def __init__(self, policy: Any, horizon: int, card: dict[str, Any] | None = None) -> None:
        self.ppo = policy if hasattr(policy, "policy") else None
        self.policy = policy.policy if hasattr(policy, "policy") else policy
        self.horizon = int(horizon)
        space = getattr(self.policy, "observation_space", None)
        if space is not None and tuple(space.shape) != (self.horizon, 3):
            raise InvalidParameterError(
                f"the PPO model observes sequences of shape {tuple(space.shape)}, not ({self.horizon}, 3): "
                "pass the horizon it was trained with"
            )
        self.card = dict(card or {})
        self.features = SeqFeatures(self.horizon)
        self._single = SeqFeatures(self.horizon)
        self._last: dict[str, Any] = {}

    @property
    def lam(self) -> float | None:
        return self.card.get("lam")

    def __repr__(self) -> str:
        return f"SeqRouter(lam={self.lam!r}, horizon={self.horizon})"

    def _probs(self, x: np.ndarray) -> np.ndarray:
        torch = require("torch", "rl", "TRIM-Seq")
        with torch.no_grad():
            obs = torch.as_tensor(x, dtype=torch.float32)
            dist = self.policy.get_distribution(obs)
            return dist.distribution.probs.cpu().numpy()

    def reset(self) -> None:
        self._single.reset(1)
        self._last = {}

    def decide(self, obs: StepObservation) -> str:
        if obs.t > self.horizon:
            raise InvalidParameterError(f"t = {obs.t} exceeds the router's horizon {self.horizon}")
        batch = BatchObservation(
            t=np.array([obs.t]),
            scores=np.array([obs.scores], dtype=float),
            tokens=np.array([obs.tokens]),
            final=np.array([obs.final]),
            active=np.array([True]),
        )
        if self._single._tok.shape[0] != 1:
            self._single.reset(1)
        p = self._probs(self._single(batch))[0]
        a = int(np.argmax(p))
        self._last = {"t": obs.t, "probs": p.tolist(), "action": ACTIONS[a]}
        return ACTIONS[a]

    @property
    def last_decision(self) -> dict[str, Any]:
        return dict(self._last)

    def reset_batch(self, n: int) -> None:
        self.features.reset(n)

    def decide_batch(self, obs: BatchObservation) -> np.ndarray:
        """Actions for every row; the network runs on the active rows only, in chunks of 4096."""
        x = self.features(obs)  # always: the tracker records this step's tokens
        out = np.zeros(obs.n, dtype=np.int64)
        rows = np.flatnonzero(np.asarray(obs.active, dtype=bool))
        if rows.size:
            length = int(min(max(np.asarray(obs.t)[rows].max(), 1), self.horizon))
            x = x[:, :length]  # padding after the longest prefix is never attended to
        for lo in range(0, rows.size, 4096):
            r = rows[lo : lo + 4096]
            p = self._probs(x[r])
            out[r] = p[:, 1] > p[:, 0]
        return out

    def save(self, directory: str | Path) -> Path:
        """Write ``seq_policy.npz`` (the network's parameters) and ``seq.json`` (the card) to a folder."""
        from trim_pomdp.routers.rl.checkpoint import state_arrays

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        card = dict(self.card)
        card.pop("sb3_model", None)
        card.update({"horizon": self.horizon, "features": self.features.card(), "arch": self.arch})
        save_artifact(
            d / "seq_policy.npz",
            stem="seq_policy",
            card_stem="seq",
            format=FORMAT,
            arrays=state_arrays(self.policy, "policy."),
            card=card,
            signed=("lam", "horizon", "features", "arch"),
        )
        return d

    @property
    def arch(self) -> dict[str, int]:
        """The transformer's sizes (:data:`SEQ_ARCH` unless the card says otherwise)."""
        return dict(SEQ_ARCH, **self.card.get("arch", {}))

    @classmethod
    def load(cls, directory: str | Path) -> SeqRouter:
        """Read a router written by :meth:`save`: the network is built from code and given the saved arrays.

        Raises
        ------
        DataFormatError
            When the folder holds no TRIM-Seq router, a corrupted one, or one of trim-pomdp 0.1 (a pickled
            ``ppo.zip``, which is never unpickled).
        """
        from trim_pomdp.routers.rl.checkpoint import load_state_arrays, refuse_pickled_zip

        d = Path(directory)
        if not (d / "seq_policy.npz").is_file():
            refuse_pickled_zip(
                d, "This TRIM-Seq router cannot be used;", "retrain it with this version of trim-pomdp."
            )
            raise DataFormatError(f"{d} holds no TRIM-Seq router (seq_policy.npz and seq.json are needed)")
        art = load_artifact(d / "seq_policy.npz", stem="seq_policy", card_stem="seq", formats=(FORMAT,),
                            what="TRIM-Seq router")  # fmt: skip
        horizon = art.card.get("horizon")
        if not isinstance(horizon, int) or horizon < 1:
            raise DataFormatError(f"router card {art.json} lacks a valid 'horizon'")
        arch = art.card.get("arch", SEQ_ARCH)
        if not isinstance(arch, dict) or not all(isinstance(v, int) and v > 0 for v in arch.values()):
            raise DataFormatError(f"router card {art.json} has an invalid 'arch' {arch!r}")
        policy = build_policy(horizon, arch)
        load_state_arrays(policy, art.arrays, "policy.", art.npz)
        return cls(policy, horizon, art.card)


def train_seq(
    source: EpisodeBatch | Callable[[], EpisodeBatch],
    lam: float,
    *,
    arch: dict[str, int] | None = None,
    **options: Any,
) -> SeqRouter:
    """Train TRIM-Seq with PPO for one λ (same objective and hyperparameters as :func:`~.agg.train_agg`).

    ``arch`` overrides :data:`SEQ_ARCH` (the transformer's sizes); ``options`` are those of
    :func:`~.agg.train_agg` (checkpoints, the convergence criterion, ...).
    """
    arch = dict(SEQ_ARCH, **(arch or {}))
    run = train_ppo(
        source,
        lam,
        features="seq",
        policy_kwargs=lambda: _policy_kwargs(arch),
        description="TRIM-Seq",
        make_router=lambda model, horizon: SeqRouter(model.policy, horizon, {"arch": arch}),
        run_extra={"arch": arch},
        **options,
    )
    card = dict(run.card)
    card["arch"] = arch
    card["policy"] = {"net_arch": NET_ARCH, "activation_fn": "tanh", "deterministic": "argmax"}
    return SeqRouter(run.model, run.horizon, card)
