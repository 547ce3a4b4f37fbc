# NativeSARSOP.jl backend (pure-Julia SARSOP): loaded by trim_pomdp.solvers.sarsop.julia_bridge with
# `Base.include(Main, <this file>)`, then called from Python as TrimPomdpNativeSARSOP.solve_pomdp(...).
# NativeSARSOP exports a `SARSOPSolver` just like SARSOP.jl, so both are `import`ed, never `using`-ed.
module TrimPomdpNativeSARSOP

using POMDPs
using POMDPTools
using SparseArrays
import NativeSARSOP

include("common.jl")

"""
    solve_pomdp(m, workdir, timeout, precision; kwargs...)

Solve `m` with `NativeSARSOP.SARSOPSolver(max_time = timeout, precision = precision, kwargs...)` through
`POMDPTools.solve_info`, which NativeSARSOP extends to return its belief tree; the bounds at the initial belief
are the tree's root values `V_lower[1]` and `V_upper[1]` (NaN if this NativeSARSOP returns no tree). Nothing is
written to `workdir`.

Returns `(alphas, actions, lower, upper, iterations, seconds, versions)` with `alphas` of size `|S| × K` and
1-based `actions`.
"""
function solve_pomdp(m, workdir::AbstractString, timeout::Real, precision::Real; kwargs...)
    solver = NativeSARSOP.SARSOPSolver(; verbose = false, kwargs...,
                                       precision = Float64(precision),
                                       max_time = Float64(timeout))
    t0 = time()
    policy, info = solve_info(solver, m)
    seconds = time() - t0
    lower, upper, iterations = NaN, NaN, -1
    if info isa NamedTuple
        if hasproperty(info, :tree)
            tree = info.tree
            if hasproperty(tree, :V_lower) && hasproperty(tree, :V_upper)
                lower = Float64(tree.V_lower[1])
                upper = Float64(tree.V_upper[1])
            end
        end
        if hasproperty(info, :iter)
            iterations = Int(info.iter)
        end
    end
    alphas, actions = policy_arrays(policy)
    return (alphas, actions, lower, upper, iterations, seconds,
            package_versions(POMDPs, POMDPTools, NativeSARSOP))
end

end # module
