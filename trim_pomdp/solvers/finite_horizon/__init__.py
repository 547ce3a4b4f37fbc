"""Finite-horizon POMDPs with an observed exogenous context, and a certified solver for rank-2 dynamics.

* :mod:`~.problem`: the model, :class:`FiniteHorizonPOMDP` (epochs, hidden state, observed context per epoch).
* :mod:`~.segments`: rank-2 dynamics (every transition row on one segment of the simplex) and the upper
  envelopes of lines that represent one-dimensional value functions.
* :mod:`~.solver`: :class:`FiniteHorizonSolver`, backward induction on per-epoch grids of the segment parameter
  with certified lower and upper bounds (or exact values in ``mode="exact"``).
* :mod:`~.policy`: :class:`FiniteHorizonPolicy`, the solution (lower-bound lines and upper-bound grid values).
* :mod:`~.general`: the simplex-grid fallback for models without rank-2 dynamics and at most 4 hidden states
  (:class:`FiniteHorizonAlphaPolicy`). Beyond that, :class:`~trim_pomdp.exceptions.SolverError` names the
  alternative: the point-based solver on the flattened tabular model.
"""

from trim_pomdp.solvers.finite_horizon.general import FiniteHorizonAlphaPolicy
from trim_pomdp.solvers.finite_horizon.policy import FiniteHorizonPolicy
from trim_pomdp.solvers.finite_horizon.problem import FiniteHorizonPOMDP
from trim_pomdp.solvers.finite_horizon.segments import (
    SegmentFactorization,
    segment_factorization,
    upper_envelope,
)
from trim_pomdp.solvers.finite_horizon.solver import FiniteHorizonSolver

__all__ = [
    "FiniteHorizonAlphaPolicy",
    "FiniteHorizonPOMDP",
    "FiniteHorizonPolicy",
    "FiniteHorizonSolver",
    "SegmentFactorization",
    "segment_factorization",
    "upper_envelope",
]
