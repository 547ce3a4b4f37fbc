"""The general alpha-vector policy of a tabular POMDP, returned by the point-based and SARSOP solvers.

A policy is a set of alpha vectors with one action each: ``value(b) = max_k alphas[k] @ b`` and ``action(b) =
actions[argmax_k alphas[k] @ b]``. It is saved as an artifact (``PATH.npz`` with the arrays beside ``PATH.json``,
the card; see :mod:`trim_pomdp._internal.artifacts`), never pickled.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trim_pomdp._internal.artifacts import load_artifact, save_artifact
from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.solvers.base import SolveInfo

__all__ = ["ALPHA_POLICY_FORMAT", "AlphaVectorPolicy"]

#: Format tag of saved alpha-vector policies (also the tag of files written before the shared artifact format).
ALPHA_POLICY_FORMAT = "trim-pomdp/alpha-vectors/1"


def _base(path: str | Path) -> Path:
    """``PATH`` of ``PATH.npz`` + ``PATH.json`` for ``path`` given with or without either suffix."""
    base = Path(path)
    return base.with_suffix("") if base.suffix in (".npz", ".json") else base


class AlphaVectorPolicy:
    """A policy given by alpha vectors over the states of a tabular POMDP.

    ``value(b) = max_k alphas[k] @ b`` and ``action(b) = actions[argmax_k alphas[k] @ b]``.

    Parameters
    ----------
    alphas : ndarray of shape (n_vectors, n_states)
        One alpha vector per row.
    actions : ndarray of int, shape (n_vectors,)
        The (0-based) action of each vector.
    action_names : sequence of str, optional
        Names of the actions, for display.
    card : dict, optional
        Metadata stored beside the arrays (solver, bounds, parameters, versions).
    info : SolveInfo, optional
        The report of the solve that produced the policy (restored from the card's ``solve_info`` on load, or
        from ``info`` in cards written before 0.2).
    """

    def __init__(
        self,
        alphas: Any,
        actions: Any,
        action_names: Sequence[str] | None = None,
        card: dict[str, Any] | None = None,
        info: SolveInfo | None = None,
    ):
        alphas = np.atleast_2d(np.asarray(alphas, dtype=float))
        actions = np.asarray(actions, dtype=np.int64).reshape(-1)
        if alphas.shape[0] != actions.shape[0]:
            raise InvalidParameterError(
                f"alphas has {alphas.shape[0]} vectors but actions has {actions.shape[0]} entries"
            )
        if alphas.shape[0] == 0:
            raise InvalidParameterError("an alpha-vector policy needs at least one vector")
        self.alphas = alphas
        self.actions = actions
        self.action_names = tuple(action_names) if action_names is not None else None
        self.card = dict(card or {})
        if info is None:
            report = self.card.get("solve_info") or self.card.get("info")  # "info": cards before 0.2
            if isinstance(report, dict):
                try:
                    info = SolveInfo.from_dict(report)
                except TypeError:
                    info = None
        self.info = info

    @property
    def n_states(self) -> int:
        """Length of the beliefs the policy is queried with."""
        return int(self.alphas.shape[1])

    def _check_belief(self, belief: Any) -> np.ndarray:
        b = np.asarray(belief, dtype=float)
        if b.shape[-1] != self.n_states:
            raise InvalidParameterError(
                f"belief has length {b.shape[-1]}, the policy has {self.n_states} states"
            )
        return b

    def value(self, belief: Any) -> Any:
        """Value of the belief (or of each row of a 2-D array of beliefs)."""
        b = self._check_belief(belief)
        return (b @ self.alphas.T).max(axis=-1)

    def action(self, belief: Any) -> Any:
        """Index of the action of the best alpha vector at the belief (or at each row)."""
        b = self._check_belief(belief)
        return self.actions[(b @ self.alphas.T).argmax(axis=-1)]

    def action_values(self, belief: Any, n_actions: int | None = None) -> np.ndarray:
        """Best alpha value per action at a single belief (``-inf`` for an action with no vector)."""
        b = self._check_belief(belief)
        n_actions = n_actions or int(self.actions.max()) + 1
        vals = self.alphas @ b
        out = np.full(n_actions, -np.inf)
        np.maximum.at(out, self.actions, vals)
        return out

    # -- persistence -------------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> tuple[Path, Path]:
        """Write ``PATH.npz`` (arrays) and ``PATH.json`` (card); ``path`` may end in ``.npz`` or have no suffix.

        Returns
        -------
        (Path, Path)
            The ``.npz`` and ``.json`` files written.
        """
        meta = dict(self.card)
        meta["action_names"] = list(self.action_names) if self.action_names else None
        meta["n_vectors"] = int(self.alphas.shape[0])
        meta["n_states"] = self.n_states
        return save_artifact(
            _base(path).with_suffix(".npz"),
            stem="policy",
            format=ALPHA_POLICY_FORMAT,
            arrays={"alphas": self.alphas, "actions": self.actions},
            card=meta,
        )

    @classmethod
    def load(cls, path: str | Path) -> AlphaVectorPolicy:
        """Read a policy written by :meth:`save` (also by versions before the shared artifact format).

        Raises
        ------
        DataFormatError
            When a file is missing, corrupted or of another format, or the arrays do not match the card.
        """
        art = load_artifact(
            _base(path).with_suffix(".npz"),
            stem="policy",
            formats=(ALPHA_POLICY_FORMAT,),
            what="policy of alpha vectors",
            require_card=False,
        )
        art.require("alphas", "actions")
        return cls(art.arrays["alphas"], art.arrays["actions"], art.card.get("action_names"), art.card)
