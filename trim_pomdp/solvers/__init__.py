"""Generic POMDP solvers and formats. Imports nothing from the rest of trim_pomdp except exceptions/_optional."""

from trim_pomdp.solvers.base import AlphaVectorPolicy, SolveInfo, Solver
from trim_pomdp.solvers.tabular import TabularPOMDP, check_tabular

__all__ = ["AlphaVectorPolicy", "SolveInfo", "Solver", "TabularPOMDP", "check_tabular"]
