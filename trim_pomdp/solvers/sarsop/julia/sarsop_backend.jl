# SARSOP.jl backend (APPL's C++ `pomdpsol`, as used by the TRIM paper): loaded by trim_pomdp.solvers.sarsop.julia_bridge with
# `Base.include(Main, <this file>)`, then called from Python as TrimPomdpSARSOP.solve_pomdp(...).
module TrimPomdpSARSOP

using POMDPs
using POMDPTools
using SparseArrays
import SARSOP

include("common.jl")

"""
    solve_pomdp(m, workdir, timeout, precision; kwargs...)

Solve `m` with `SARSOP.SARSOPSolver`, writing the model (`model.pomdpx`), the policy (`policy.out`) and pomdpsol's
console output (`pomdpsol.log`) into `workdir` and nowhere else. `timeout` (seconds) is always passed to pomdpsol;
`kwargs` are further `SARSOPSolver` options (e.g. `trial_improvement_factor`, `randomization`, `memory`).

`verbose = true` is deliberate: with `verbose = false` SARSOP.jl runs pomdpsol through `success`, which ignores a
failed run. Its output goes to the log file instead of the terminal. Bounds are not returned by SARSOP.jl; the
Python side reads them from the log (NaN here).

Returns `(alphas, actions, lower, upper, iterations, seconds, versions)` with `alphas` of size `|S| × K` and
1-based `actions`.
"""
function solve_pomdp(m, workdir::AbstractString, timeout::Real, precision::Real; kwargs...)
    if !hasfield(SARSOP.SARSOPSolver, :policy_filename)
        error("SARSOP.jl $(pkgversion(SARSOP)) is too old (need 0.5.7 or newer); run `trim-pomdp setup-julia`")
    end
    solver = SARSOP.SARSOPSolver(; kwargs...,
                                 precision = Float64(precision),
                                 timeout = Float64(timeout),
                                 verbose = true,
                                 policy_filename = joinpath(workdir, "policy.out"),
                                 pomdp_filename = joinpath(workdir, "model.pomdpx"))
    log_file = joinpath(workdir, "pomdpsol.log")
    t0 = time()
    policy = open(log_file, "w") do io
        redirect_stdout(io) do
            redirect_stderr(io) do
                POMDPs.solve(solver, m)
            end
        end
    end
    seconds = time() - t0
    alphas, actions = policy_arrays(policy)
    return (alphas, actions, NaN, NaN, -1, seconds, package_versions(POMDPs, POMDPTools, SARSOP))
end

end # module
