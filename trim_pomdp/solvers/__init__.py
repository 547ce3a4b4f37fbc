"""Generic POMDP solvers, the tabular model and its file formats.

One subpackage per solver family: :mod:`~trim_pomdp.solvers.finite_horizon` (certified backward induction on
the TRIM-POMDP's structured form), :mod:`~trim_pomdp.solvers.pointbased` (point-based value iteration on any
discounted tabular POMDP) and :mod:`~trim_pomdp.solvers.sarsop` (SARSOP through Julia). This package imports
nothing from the rest of trim_pomdp except the base layer (``_internal``, ``registry``, ``exceptions``, ...).
"""

from trim_pomdp.solvers.base import SolveInfo, Solver
from trim_pomdp.solvers.policy import AlphaVectorPolicy
from trim_pomdp.solvers.tabular import TabularPOMDP, check_tabular

__all__ = ["AlphaVectorPolicy", "SolveInfo", "Solver", "TabularPOMDP", "check_tabular"]
