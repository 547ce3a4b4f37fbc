"""SARSOP through POMDPs.jl (juliacall), run in a child process; Julia is touched only in ``julia_bridge``."""

from trim_pomdp.solvers.sarsop.solver import SarsopSolver, parse_pomdpsol_log

__all__ = ["SarsopSolver", "parse_pomdpsol_log"]
