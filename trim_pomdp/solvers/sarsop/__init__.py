"""SARSOP through POMDPs.jl (juliacall), run in a child process; Julia is touched only in ``julia_bridge``.

* :mod:`~.solver`: :class:`SarsopSolver`, the solver (backends ``"sarsop.jl"`` and ``"nativesarsop.jl"``).
* :mod:`~.arrays`: what crosses to Julia (1-based sparse triplets, the backend's answer, the request/result files).
* :mod:`~.process` and :mod:`~.worker`: the child process, from the parent's side and from its own.
* :mod:`~.setup`: whether Julia is usable here, and ``trim-pomdp setup-julia``.
* :mod:`~.julia_bridge`: the juliacall calls; :mod:`~.log`: pomdpsol's console log.
"""

from trim_pomdp.solvers.sarsop.log import parse_pomdpsol_log
from trim_pomdp.solvers.sarsop.solver import SarsopSolver

__all__ = ["SarsopSolver", "parse_pomdpsol_log"]
