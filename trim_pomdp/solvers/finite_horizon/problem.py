"""The finite-horizon POMDP with an observed exogenous context (:class:`FiniteHorizonPOMDP`).

Epochs ``t = 1 … H``. A hidden state ``z`` (``n_hidden`` values) evolves between epochs; at epoch ``t``

1. an observed *context* ``c ~ context_probs[t-1]`` is drawn independently of ``z`` (e.g. a token bucket and an
   end-of-solution flag),
2. an observation ``o ~ observation[t-1][z, :]`` is drawn,
3. the agent picks action ``a`` and receives ``reward[t-1, c, z, a]`` (expected immediate reward),
4. if ``terminal[t-1, c]`` or ``t = H`` the episode ends; otherwise ``z' ~ transition[a, z, :]`` and the future is
   discounted by ``discount``.

``b0`` is the belief over ``z`` at epoch 1 *before* its observation. Beliefs *after* an observation ("posterior"
beliefs) are what policies are queried with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from trim_pomdp._internal.simplex import check_stochastic
from trim_pomdp.exceptions import ModelCheckError

__all__ = ["FiniteHorizonPOMDP"]


@dataclass
class FiniteHorizonPOMDP:
    """A finite-horizon POMDP with an observed, exogenous per-epoch context.

    Parameters
    ----------
    transition : ndarray, shape (n_actions, n_hidden, n_hidden)
        ``transition[a, z, z'] = P(z' | z, a)`` between non-terminal epochs.
    observation : sequence of H ndarrays, each of shape (n_hidden, n_obs_t)
        ``observation[t-1][z, o] = P(o | z)`` at epoch ``t`` (the number of observations may differ per epoch,
        e.g. a first-step observation without history). The same array object may be repeated.
    context_probs : ndarray, shape (H, n_contexts)
        ``P(context | t)``, independent of the hidden state.
    terminal : ndarray of bool, shape (H, n_contexts)
        Whether the episode ends after the action at this context (row ``H-1`` is treated as all ``True``).
    reward : ndarray, shape (H, n_contexts, n_hidden, n_actions)
        Expected immediate reward, including any terminal reward.
    b0 : ndarray, shape (n_hidden,)
        Belief over the hidden state at epoch 1 before its observation.
    discount : float, default 1.0
        Discount of the future per epoch, in (0, 1].
    hidden_names, action_names : sequence of str, optional
        Names for display.
    meta : dict, optional
        Free-form description of where the model came from.
    vertices : ndarray, shape (K, n_hidden), optional
        Vertex distributions of the dynamics, when every transition row is a mixture of these ``K`` rows (see
        :mod:`~.vertices`); their order fixes the solver's grid coordinates. Default: found by the solver.
    """

    transition: np.ndarray
    observation: Sequence[np.ndarray]
    context_probs: np.ndarray
    terminal: np.ndarray
    reward: np.ndarray
    b0: np.ndarray
    discount: float = 1.0
    hidden_names: Sequence[str] | None = None
    action_names: Sequence[str] | None = None
    meta: dict = field(default_factory=dict)
    vertices: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.transition = np.asarray(self.transition, dtype=float)
        self.observation = [np.asarray(o, dtype=float) for o in self.observation]
        self.context_probs = np.asarray(self.context_probs, dtype=float)
        self.terminal = np.asarray(self.terminal, dtype=bool).copy()
        self.reward = np.asarray(self.reward, dtype=float)
        self.b0 = np.asarray(self.b0, dtype=float)
        if self.vertices is not None:
            self.vertices = np.asarray(self.vertices, dtype=float)
        if self.terminal.ndim == 2 and self.terminal.shape[0] >= 1:
            self.terminal[-1, :] = True

    @property
    def horizon(self) -> int:
        """Number of epochs ``H``."""
        return int(self.context_probs.shape[0])

    @property
    def n_hidden(self) -> int:
        """Number of hidden states."""
        return int(self.transition.shape[1])

    @property
    def n_actions(self) -> int:
        """Number of actions."""
        return int(self.transition.shape[0])

    @property
    def n_contexts(self) -> int:
        """Number of observed contexts per epoch."""
        return int(self.context_probs.shape[1])

    def check(self, atol: float = 1e-8) -> FiniteHorizonPOMDP:
        """Raise :class:`ModelCheckError` naming the offending index if the arrays are inconsistent."""
        T = self.transition
        if T.ndim != 3 or T.shape[1] != T.shape[2]:
            raise ModelCheckError(
                f"transition must have shape (n_actions, n_hidden, n_hidden), got {T.shape}"
            )
        A, Z, _ = T.shape
        if self.context_probs.ndim != 2 or self.context_probs.shape[0] < 1:
            raise ModelCheckError(
                f"context_probs must have shape (H >= 1, n_contexts), got {self.context_probs.shape}"
            )
        H, C = self.context_probs.shape
        if len(self.observation) != H:
            raise ModelCheckError(
                f"observation must hold one array per epoch ({H}), got {len(self.observation)}"
            )
        if self.terminal.shape != (H, C):
            raise ModelCheckError(f"terminal must have shape ({H}, {C}), got {self.terminal.shape}")
        if self.reward.shape != (H, C, Z, A):
            raise ModelCheckError(f"reward must have shape ({H}, {C}, {Z}, {A}), got {self.reward.shape}")
        if self.b0.shape != (Z,):
            raise ModelCheckError(f"b0 must have shape ({Z},), got {self.b0.shape}")
        if not (0.0 < float(self.discount) <= 1.0):
            raise ModelCheckError(f"discount must lie in (0, 1], got {self.discount}")
        for i, o in enumerate(self.observation):
            if o.ndim != 2 or o.shape[0] != Z:
                raise ModelCheckError(f"observation[{i}] must have shape ({Z}, n_obs), got {o.shape}")
        arrays = [("transition", T), ("context_probs", self.context_probs), ("b0", self.b0)]
        arrays += [(f"observation[{i}]", o) for i, o in enumerate(self.observation)]
        for name, arr in arrays:
            check_stochastic(name, arr, error=ModelCheckError, atol=atol)
        if not np.all(np.isfinite(self.reward)):
            idx = tuple(int(i) for i in np.argwhere(~np.isfinite(self.reward))[0])
            raise ModelCheckError(f"reward{list(idx)} is not finite")
        return self
