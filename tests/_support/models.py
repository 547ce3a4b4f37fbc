"""Small classic POMDPs shared by the tests."""

from __future__ import annotations

import numpy as np

from trim_pomdp.solvers.tabular import TabularPOMDP

__all__ = ["tiger"]


def tiger(b0: tuple[float, float] = (0.5, 0.5), discount: float = 0.95) -> TabularPOMDP:
    """The classic Tiger problem (listen −1, wrong door −100, right door +10, listening accuracy 0.85)."""
    listen, reset = np.eye(2), np.full((2, 2), 0.5)
    return TabularPOMDP(
        T=np.stack([listen, reset, reset]),
        O=np.stack([np.array([[0.85, 0.15], [0.15, 0.85]]), reset, reset]),
        R=np.array([[-1.0, -100.0, 10.0], [-1.0, 10.0, -100.0]]),
        b0=np.array(b0, dtype=float),
        discount=discount,
        action_names=["listen", "open-left", "open-right"],
    )
