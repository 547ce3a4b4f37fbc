"""The point-based solver for discounted tabular POMDPs (lower alpha vectors, sawtooth/hull upper bound)."""

from trim_pomdp.solvers.pointbased.solver import PointBasedSolver

__all__ = ["PointBasedSolver"]
