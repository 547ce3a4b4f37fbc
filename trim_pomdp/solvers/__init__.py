"""Generic POMDP solvers and formats. Imports nothing from the rest of trim_pomdp except exceptions/_optional."""

from .base import AlphaVectorPolicy, SolveInfo, Solver
from .tabular import TabularPOMDP, check_tabular

__all__ = ["AlphaVectorPolicy", "SolveInfo", "Solver", "TabularPOMDP", "check_tabular"]
