"""TRIM-Seq: a small transformer over ((r_1, c_1) … (r_t, c_t)) trained by TRIM-Agg's PPO (paper §4.2).

The observation is TRIM-Seq's padded sequence (:class:`~trim_pomdp.routers.rl.features.SeqFeatures`, shape ``(H,
3)``: score, token feature, validity). A custom SB3 features extractor embeds each step, adds a learned
position embedding, runs a pre-norm transformer encoder with the padding masked out and returns the output at
the newest step; the same two 128-unit tanh layers as TRIM-Agg then form the separate actor and critic heads.

Needs torch and stable-baselines3 (``pip install 'trim-pomdp[rl]'``) for training *and* inference.

Saved layout (``SeqRouter.save(DIR)``): ``DIR/ppo.zip`` (SB3) and ``DIR/seq.json`` (card).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from trim_pomdp._internal.artifacts import write_json
from trim_pomdp._internal.optional import require
from trim_pomdp.constants import ACTIONS
from trim_pomdp.exceptions import DataFormatError, InvalidParameterError
from trim_pomdp.routers.rl.features import SeqFeatures
from trim_pomdp.routers.rl.ppo import NET_ARCH, train_ppo
from trim_pomdp.types import BatchObservation, EpisodeBatch, StepObservation

__all__ = ["SEQ_ARCH", "SeqRouter", "train_seq"]

FORMAT = "trim-pomdp/seq-router/1"

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


class SeqRouter:
    """The TRIM-Seq router: the deterministic (argmax) action of a PPO transformer policy.

    Build with :func:`train_seq` or :meth:`load`.

    Attributes
    ----------
    ppo : stable_baselines3.PPO
    last_decision : dict
        ``{"t", "probs", "action"}`` of the last :meth:`decide`.
    """

    def __init__(self, ppo: Any, horizon: int, card: dict[str, Any] | None = None) -> None:
        self.ppo = ppo
        self.horizon = int(horizon)
        space = getattr(ppo, "observation_space", None)
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
            dist = self.ppo.policy.get_distribution(obs)
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
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.ppo.save(str(d / "ppo.zip"))
        card = dict(self.card)
        card.update(
            {
                "format": FORMAT,
                "horizon": self.horizon,
                "features": self.features.card(),
                "sb3_model": "ppo.zip",
            }
        )
        write_json(d / "seq.json", card)
        return d

    @classmethod
    def load(cls, directory: str | Path) -> SeqRouter:
        d = Path(directory)
        js, zp = d / "seq.json", d / "ppo.zip"
        if not js.exists() or not zp.exists():
            raise DataFormatError(f"{d} holds no TRIM-Seq router (seq.json and ppo.zip are needed)")
        try:
            card = json.loads(js.read_text())
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"router card {js} is not valid JSON: {exc}") from exc
        if card.get("format") != FORMAT:
            raise DataFormatError(f"{js} is not a TRIM-Seq router card (format {card.get('format')!r})")
        sb3 = require("stable_baselines3", "rl", "TRIM-Seq")
        arch = card.get("arch", SEQ_ARCH)
        # rebuild the policy from code rather than from the pickled class reference in the zip
        ppo = sb3.PPO.load(str(zp), device="cpu", custom_objects={"policy_kwargs": _policy_kwargs(arch)})
        return cls(ppo, int(card["horizon"]), card)


def train_seq(
    source: EpisodeBatch | Callable[[], EpisodeBatch],
    lam: float,
    *,
    arch: dict[str, int] | None = None,
    **options: Any,
) -> SeqRouter:
    """Train TRIM-Seq with PPO for one λ (same objective and hyperparameters as :func:`~.agg.train_agg`).

    ``arch`` overrides :data:`SEQ_ARCH` (the transformer's sizes); ``options`` are those of
    :func:`~.agg.train_agg` except the checkpoints (a TRIM-Seq checkpoint could only be read back by
    unpickling it).
    """
    if "checkpoint_dir" in options or "checkpoint_every" in options:
        raise InvalidParameterError(
            "train_seq does not write checkpoints; drop checkpoint_dir/checkpoint_every"
        )
    arch = dict(SEQ_ARCH, **(arch or {}))
    run = train_ppo(
        source,
        lam,
        features="seq",
        policy_kwargs=lambda: _policy_kwargs(arch),
        description="TRIM-Seq",
        **options,
    )
    card = dict(run.card)
    card["arch"] = arch
    card["policy"] = {"net_arch": NET_ARCH, "activation_fn": "tanh", "deterministic": "argmax"}
    return SeqRouter(run.model, run.horizon, card)
