# Shared helpers of trim-pomdp's Julia backends. This file is `include`d inside each backend module
# (sarsop_backend.jl, native_backend.jl) after `using POMDPs, POMDPTools, SparseArrays`; it defines no module.
#
# Array conventions on this side of the boundary (all indices 1-based):
#   T[a] :: SparseMatrixCSC, T[a][s, sp] = P(sp | s, a)      (POMDPTools.SparseTabularPOMDP)
#   O[a] :: SparseMatrixCSC, O[a][sp, o] = P(o | sp, a)
#   R    :: Matrix{Float64}, R[s, a]
# Python hands over coordinate (COO) triplets; trim_pomdp.solvers.sarsop.arrays.to_sparse_tabular builds them.

"""
    per_action_sparse(a_idx, rows, cols, vals, n_actions, n_rows, n_cols)

One `SparseMatrixCSC{Float64,Int64}` of size `n_rows × n_cols` per action, from COO triplets whose action,
row and column indices are 1-based. Duplicate coordinates would be summed by `sparse`; the Python side never
produces any.
"""
function per_action_sparse(a_idx, rows, cols, vals, n_actions::Integer, n_rows::Integer, n_cols::Integer)
    a = Vector{Int}(a_idx)
    r = Vector{Int}(rows)
    c = Vector{Int}(cols)
    v = Vector{Float64}(vals)
    if !(length(a) == length(r) == length(c) == length(v))
        error("COO arrays have different lengths: $(length(a)), $(length(r)), $(length(c)), $(length(v))")
    end
    mats = Vector{SparseMatrixCSC{Float64,Int64}}(undef, n_actions)
    for k in 1:n_actions
        sel = a .== k
        mats[k] = sparse(r[sel], c[sel], v[sel], n_rows, n_cols)
    end
    return mats
end

"""
    build_pomdp(n_states, n_actions, n_obs, t_a, t_s, t_sp, t_p, o_a, o_sp, o_o, o_p, R, b0, terminals, discount)

A `POMDPTools.SparseTabularPOMDP` from 1-based COO triplets for `T` and `O`, the dense reward matrix `R[s, a]`,
the initial belief `b0`, the 1-based indices of the terminal (absorbing, zero-reward) states and `discount`.

The struct's fields are matched by name, not position, and `b0` is converted to whatever type the installed
POMDPTools declares for `initial_probs` (a `SparseVector` in recent releases, a dense `Vector` in some older ones).
Releases without an `initial_probs` field cannot carry a custom initial belief and are rejected with a message.
"""
function build_pomdp(n_states::Integer, n_actions::Integer, n_obs::Integer,
                     t_a, t_s, t_sp, t_p, o_a, o_sp, o_o, o_p,
                     R, b0, terminals, discount::Real)
    T = per_action_sparse(t_a, t_s, t_sp, t_p, n_actions, n_states, n_states)
    O = per_action_sparse(o_a, o_sp, o_o, o_p, n_actions, n_states, n_obs)
    Rm = Matrix{Float64}(R)
    if size(Rm) != (n_states, n_actions)
        error("R has size $(size(Rm)), expected ($n_states, $n_actions)")
    end
    b = Vector{Float64}(b0)
    if length(b) != n_states
        error("b0 has length $(length(b)), expected $n_states")
    end
    names = fieldnames(SparseTabularPOMDP)
    if !(:initial_probs in names)
        error("this POMDPTools ($(pkgversion(POMDPTools))) has a SparseTabularPOMDP without an initial " *
              "distribution; update it (run `trim-pomdp setup-julia`)")
    end
    IP = fieldtype(SparseTabularPOMDP, :initial_probs)
    initial = IP <: SparseVector ? sparsevec(b) : convert(IP, b)
    values = Dict{Symbol,Any}(
        :T => T,
        :R => Rm,
        :O => O,
        :initial_probs => initial,
        :terminal_states => Set{Int}(Vector{Int}(terminals)),
        :discount => Float64(discount),
    )
    missing_fields = [n for n in names if !haskey(values, n)]
    if !isempty(missing_fields)
        error("unexpected SparseTabularPOMDP fields $(missing_fields) in POMDPTools $(pkgversion(POMDPTools))")
    end
    return SparseTabularPOMDP((values[n] for n in names)...)
end

"""
    policy_arrays(policy)

The alpha vectors of an `AlphaVectorPolicy` as a `|S| × K` matrix (one column per vector) and the action of each
vector as a `Vector{Int}` of 1-based action indices.
"""
function policy_arrays(policy)
    pairs = collect(alphapairs(policy))
    if isempty(pairs)
        error("the solver returned a policy without alpha vectors")
    end
    n = length(first(first(pairs)))
    alphas = Matrix{Float64}(undef, n, length(pairs))
    actions = Vector{Int}(undef, length(pairs))
    for (k, p) in enumerate(pairs)
        alphas[:, k] = first(p)
        actions[k] = Int(last(p))
    end
    return alphas, actions
end

"""
    package_versions(mods...)

`"julia=1.10.4;POMDPs=1.0.0;..."`, the versions of Julia and of the given modules, for policy cards.
"""
function package_versions(mods::Module...)
    parts = ["julia=$(VERSION)"]
    for m in mods
        push!(parts, "$(nameof(m))=$(something(pkgversion(m), "unknown"))")
    end
    return join(parts, ";")
end
