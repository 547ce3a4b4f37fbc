"""The generic finite-horizon solver: envelopes, rank-2 factorisation, certified bounds, exactness vs brute
force.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests._support.oracles import expectimax_finite_horizon
from trim_pomdp.exceptions import InvalidParameterError, ModelCheckError, SolverError
from trim_pomdp.solvers.finite_horizon import (
    FiniteHorizonPolicy,
    FiniteHorizonPOMDP,
    FiniteHorizonSolver,
    segment_factorization,
    upper_envelope,
)


def policy_value(policy: FiniteHorizonPolicy, model: FiniteHorizonPOMDP) -> float:
    """Exact value of the greedy policy (its own action choice at every posterior belief)."""
    return expectimax_finite_horizon(model, policy=policy)


def random_rank2_model(rng, Z=3, A=2, H=3, C=3, n_obs=3, discount=1.0) -> FiniteHorizonPOMDP:
    """Transitions mixing two random vertex distributions; random observations, contexts, rewards."""
    V = rng.dirichlet(np.ones(Z), size=2)
    g = rng.uniform(size=(A, Z))
    T = g[..., None] * V[0] + (1 - g[..., None]) * V[1]
    obs = [rng.dirichlet(np.ones(n_obs) * 0.7, size=Z) for _ in range(H)]
    ctx = rng.dirichlet(np.ones(C), size=H)
    term = rng.uniform(size=(H, C)) < 0.3
    reward = rng.normal(size=(H, C, Z, A))
    b0 = rng.dirichlet(np.ones(Z))
    return FiniteHorizonPOMDP(T, obs, ctx, term, reward, b0, discount)


# ---------------------------------------------------------------------------- pieces
def test_upper_envelope_matches_pointwise_max():
    rng = np.random.default_rng(1)
    for _ in range(50):
        n = rng.integers(1, 40)
        at1, at0 = rng.normal(size=n), rng.normal(size=n)
        if rng.uniform() < 0.3:  # duplicated and parallel lines
            at1[: n // 2] = at1[0]
            at0[: n // 2] = at0[0] - np.arange(n // 2) * 0.0
        keep, breaks = upper_envelope(at1, at0)
        assert len(breaks) == len(keep) - 1
        assert np.all(np.diff(breaks) > 0) and (breaks.size == 0 or (breaks[0] > 0 and breaks[-1] < 1))
        g = np.linspace(0, 1, 2001)
        truth = (at0[None, :] + (at1 - at0)[None, :] * g[:, None]).max(axis=1)
        k = np.searchsorted(breaks, g, side="right")
        env = at0[keep][k] + (at1[keep][k] - at0[keep][k]) * g
        np.testing.assert_allclose(env, truth, atol=1e-12)


def test_segment_factorization_trim_and_full_rank():
    p_w, p_s = 0.8, 0.9
    T = np.array(
        [
            [[p_w, 0, 1 - p_w], [0, 1, 0], [0, 1, 0]],
            [[p_s * p_w, 1 - p_s, p_s * (1 - p_w)], [0, 1, 0], [p_s * p_w, 1 - p_s, p_s * (1 - p_w)]],
        ]
    )
    f = segment_factorization(T, anchor=np.array([p_w, 0, 1 - p_w]))
    np.testing.assert_allclose(f.V[0], [p_w, 0, 1 - p_w])
    np.testing.assert_allclose(f.V[1], [0, 1, 0])
    np.testing.assert_allclose(np.einsum("azk,kj->azj", f.M, f.V), T, atol=1e-12)
    np.testing.assert_allclose(f.M[1, 0], [p_s, 1 - p_s])
    rng = np.random.default_rng(0)
    assert segment_factorization(rng.dirichlet(np.ones(3), size=(2, 3))) is None


def test_check_names_offending_index():
    rng = np.random.default_rng(2)
    m = random_rank2_model(rng)
    m.transition[1, 2, 0] += 0.1
    with pytest.raises(ModelCheckError, match=r"transition\[1, 2, :\] sums to"):
        m.check()
    m = random_rank2_model(rng)
    m.context_probs[1, 0] = -0.2
    with pytest.raises(ModelCheckError, match=r"context_probs\[1, 0\]"):
        m.check()
    m = random_rank2_model(rng)
    with pytest.raises(ModelCheckError, match="reward must have shape"):
        FiniteHorizonPOMDP(
            m.transition, m.observation, m.context_probs, m.terminal, m.reward[:, :, :, :1], m.b0
        ).check()


def test_full_rank_dynamics_use_the_simplex_grid_fallback_with_certified_bounds():
    for seed in range(3):
        rng = np.random.default_rng(30 + seed)
        m = random_rank2_model(rng, H=3, C=2, n_obs=3)
        m.transition = rng.dirichlet(np.ones(3), size=(2, 3))
        assert segment_factorization(m.transition) is None
        truth = expectimax_finite_horizon(m)
        solver = FiniteHorizonSolver(precision=1e-3)
        pol = solver.solve(m)
        info = pol.info
        assert info.extra["mode"] == "simplex" and info.converged
        assert info.lower_bound - 1e-12 <= truth <= info.upper_bound + 1e-12
        assert policy_value(pol, m) >= info.lower_bound - 1e-12
        B = rng.dirichlet(np.ones(3), size=20)
        lo = pol.action_values(2, 1, B).max(axis=1)
        hi = pol.action_values(2, 1, B, upper=True).max(axis=1)
        assert np.all(lo <= hi + 1e-12)
        al, _ac = pol.alphas(2, 0)
        np.testing.assert_allclose((B @ al.T).max(axis=1), pol.action_values(2, 0, B).max(axis=1), atol=1e-12)
    with pytest.raises(SolverError, match="point-based"):
        FiniteHorizonSolver(mode="exact").solve(m)


def test_freudenthal_interpolation_is_exact_on_lattice_and_linear_and_overestimates_convex():
    from trim_pomdp.solvers.finite_horizon.general import _Freudenthal

    rng = np.random.default_rng(12)
    for n, r in ((3, 4), (4, 3), (2, 5)):
        fr = _Freudenthal(n, r)
        P = fr.points
        assert np.allclose(P.sum(axis=1), 1) and len(np.unique(P, axis=0)) == len(P)
        idx, w = fr.vertices(P)
        np.testing.assert_allclose(
            fr.interpolate(np.arange(len(P), dtype=float), P), np.arange(len(P)), atol=1e-12
        )
        B = rng.dirichlet(np.ones(n), size=200)
        idx, w = fr.vertices(B)
        assert np.all(w >= -1e-12) and np.allclose(w.sum(axis=1), 1)
        np.testing.assert_allclose((P[idx] * w[:, :, None]).sum(axis=1), B, atol=1e-12)  # barycentric
        lin = rng.normal(size=n)
        np.testing.assert_allclose(fr.interpolate(P @ lin, B), B @ lin, atol=1e-12)
        alph = rng.normal(size=(6, n))
        assert np.all(fr.interpolate((P @ alph.T).max(axis=1), B) >= (B @ alph.T).max(axis=1) - 1e-12)


def test_bad_solver_arguments():
    with pytest.raises(InvalidParameterError):
        FiniteHorizonSolver(precision=-1)
    with pytest.raises(InvalidParameterError):
        FiniteHorizonSolver(mode="fast")
    with pytest.raises(InvalidParameterError):
        FiniteHorizonSolver(time_limit=0)


# ---------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("seed", range(6))
def test_exact_mode_equals_brute_force_on_random_rank2_models(seed):
    rng = np.random.default_rng(100 + seed)
    Z = 3 if seed % 2 == 0 else 4
    m = random_rank2_model(rng, Z=Z, H=3, C=2 + seed % 2, n_obs=3, discount=1.0 if seed < 3 else 0.9)
    truth = expectimax_finite_horizon(m)
    solver = FiniteHorizonSolver(mode="exact")
    pol = solver.solve(m)
    assert pol.info.lower_bound == pytest.approx(truth, abs=1e-9)
    assert pol.info.upper_bound == pytest.approx(truth, abs=1e-9)
    assert policy_value(pol, m) == pytest.approx(truth, abs=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_grid_bounds_bracket_and_policy_achieves_lower_bound(seed):
    rng = np.random.default_rng(200 + seed)
    m = random_rank2_model(rng, H=4, C=2, n_obs=3)
    truth = expectimax_finite_horizon(m)
    solver = FiniteHorizonSolver(mode="grid", grid_size=3)
    pol = solver.solve(m)
    lo, hi = pol.info.lower_bound, pol.info.upper_bound
    assert lo <= truth + 1e-12 <= hi + 2e-12
    assert policy_value(pol, m) >= lo - 1e-12  # the returned policy is worth at least its lower bound
    auto = FiniteHorizonSolver(precision=1e-7)
    auto_policy = auto.solve(m)
    assert auto_policy.info.converged and auto_policy.info.gap <= 1e-7
    assert auto_policy.info.lower_bound <= truth + 1e-12 and truth <= auto_policy.info.upper_bound + 1e-12


def test_upper_action_values_dominate_and_meet_in_exact_mode():
    rng = np.random.default_rng(7)
    m = random_rank2_model(rng, H=3, C=2)
    grid_pol = FiniteHorizonSolver(mode="grid", grid_size=2).solve(m)
    exact_pol = FiniteHorizonSolver(mode="exact").solve(m)
    B = rng.dirichlet(np.ones(3), size=50)
    for t in (1, 2, 3):
        for c in range(2):
            lo = grid_pol.action_values(t, c, B).max(axis=1)
            hi = grid_pol.action_values(t, c, B, upper=True).max(axis=1)
            ex = exact_pol.action_values(t, c, B).max(axis=1)
            ex_hi = exact_pol.action_values(t, c, B, upper=True).max(axis=1)
            assert np.all(lo <= ex + 1e-12) and np.all(ex <= hi + 1e-12)
            np.testing.assert_allclose(ex_hi, ex, atol=1e-9)


def test_time_limit_returns_certified_unconverged_bounds():
    rng = np.random.default_rng(8)
    m = random_rank2_model(rng, H=6, C=3, n_obs=5)
    solver = FiniteHorizonSolver(precision=1e-14, time_limit=1e-4)
    pol = solver.solve(m)
    assert not pol.info.converged
    assert pol.info.lower_bound <= pol.info.upper_bound


def test_horizon_one_is_a_single_exact_backup():
    rng = np.random.default_rng(9)
    m = random_rank2_model(rng, H=1, C=2)
    solver = FiniteHorizonSolver()
    pol = solver.solve(m)
    assert pol.info.gap == pytest.approx(0.0, abs=1e-12)
    assert pol.info.lower_bound == pytest.approx(expectimax_finite_horizon(m), abs=1e-12)


def test_policy_arrays_round_trip():
    rng = np.random.default_rng(10)
    m = random_rank2_model(rng, H=3, C=2)
    pol = FiniteHorizonSolver(mode="grid", grid_size=5).solve(m)
    back = FiniteHorizonPolicy.from_arrays(pol.to_arrays())
    B = rng.dirichlet(np.ones(3), size=20)
    for t in (1, 2, 3):
        np.testing.assert_array_equal(pol.action_values(t, 1, B), back.action_values(t, 1, B))
        np.testing.assert_array_equal(
            pol.action_values(t, 1, B, upper=True), back.action_values(t, 1, B, upper=True)
        )
    al, ac = pol.alphas(2, 0)
    q = B @ al.T
    for a in (0, 1):
        np.testing.assert_allclose(q[:, ac == a].max(axis=1), pol.action_values(2, 0, B)[:, a], atol=1e-12)


# ---------------------------------------------------------------------------- dynamics with K >= 3 vertices
def random_vertex_model(rng, Z=5, K=3, A=2, H=3, C=2, n_obs=3, given=True) -> FiniteHorizonPOMDP:
    """Transition rows mixing K random vertex distributions (K < Z), the vertices themselves among the rows (as
    in the TRIM-POMDP, so that they can be found from the rows); random observations, contexts, rewards."""
    V = rng.dirichlet(np.ones(Z), size=K)
    T = rng.dirichlet(np.ones(K) * 0.5, size=(A, Z)) @ V
    T[0, :K] = V
    obs = [rng.dirichlet(np.ones(n_obs) * 0.7, size=Z) for _ in range(H)]
    ctx = rng.dirichlet(np.ones(C), size=H)
    term = rng.uniform(size=(H, C)) < 0.3
    reward = rng.normal(size=(H, C, Z, A))
    return FiniteHorizonPOMDP(
        T, obs, ctx, term, reward, rng.dirichlet(np.ones(Z)), vertices=V if given else None
    )


def test_vertex_factorization_and_tensor_grid():
    from trim_pomdp.solvers.finite_horizon.vertices import (
        TensorGrid,
        from_stick,
        to_stick,
        vertex_factorization,
    )

    rng = np.random.default_rng(40)
    m = random_vertex_model(rng, Z=6, K=4, given=False)
    f = vertex_factorization(m.transition)
    assert f is not None and f.n_vertices == 4
    np.testing.assert_allclose(np.einsum("azk,kj->azj", f.M, f.V), m.transition, atol=1e-8)
    assert vertex_factorization(m.transition, max_vertices=2) is None
    lam = rng.dirichlet(np.ones(4), size=50)
    np.testing.assert_allclose(from_stick(to_stick(lam)), lam, atol=1e-12)
    grid = TensorGrid([np.array([0, 0.2, 1.0]), np.array([0, 0.5, 0.7, 1.0]), np.array([0, 1.0])])
    x = rng.uniform(size=(200, 3))
    np.testing.assert_allclose(
        grid.interpolate(grid.nodes() @ [1.0, -2.0, 0.5], x), x @ [1.0, -2.0, 0.5], atol=1e-12
    )
    # a function convex in λ is over-estimated by multilinear interpolation in stick-breaking coordinates
    alph = rng.normal(size=(7, 4))
    convex = lambda pts: (from_stick(pts) @ alph.T).max(axis=1)  # noqa: E731
    assert np.all(grid.interpolate(convex(grid.nodes()), x) >= convex(x) - 1e-12)
    with pytest.raises(InvalidParameterError):
        TensorGrid([np.array([0.0, 0.5])])


@pytest.mark.parametrize("seed", range(4))
def test_vertex_solver_is_exact_and_certified_on_random_models(seed):
    rng = np.random.default_rng(300 + seed)
    m = random_vertex_model(rng, K=3 + seed % 2, given=seed < 2)
    truth = expectimax_finite_horizon(m)
    exact = FiniteHorizonSolver(mode="exact").solve(m)
    assert exact.info.sizes["vertices"] == 3 + seed % 2
    assert exact.info.lower_bound == pytest.approx(truth, abs=1e-9)
    assert policy_value(exact, m) == pytest.approx(truth, abs=1e-9)
    auto = FiniteHorizonSolver(precision=1e-3).solve(m)
    assert auto.info.lower_bound - 1e-12 <= truth <= auto.info.upper_bound + 1e-12 and auto.info.converged
    assert policy_value(auto, m) >= auto.info.lower_bound - 1e-12  # the returned policy earns its lower bound
    grid = FiniteHorizonSolver(mode="grid", grid_size=3).solve(m)
    assert grid.info.lower_bound - 1e-12 <= truth <= grid.info.upper_bound + 1e-12
    B = rng.dirichlet(np.ones(m.n_hidden), size=20)
    for t in (1, 2, 3):
        lo = grid.action_values(t, 1, B).max(axis=1)
        assert np.all(lo <= exact.action_values(t, 1, B).max(axis=1) + 1e-12)
        assert np.all(
            exact.action_values(t, 1, B).max(axis=1)
            <= grid.action_values(t, 1, B, upper=True).max(axis=1) + 1e-12
        )


def test_vertex_policy_arrays_round_trip_and_time_limit():
    from trim_pomdp.solvers.finite_horizon.vertex_policy import FiniteHorizonVertexPolicy

    rng = np.random.default_rng(50)
    m = random_vertex_model(rng, H=4)
    for mode in ("grid", "exact"):
        pol = FiniteHorizonSolver(mode=mode).solve(m)
        back = FiniteHorizonVertexPolicy.from_arrays(pol.to_arrays())
        B = rng.dirichlet(np.ones(5), size=20)
        for t in (1, 2, 4):
            for upper in (False, True):
                np.testing.assert_array_equal(
                    pol.action_values(t, 0, B, upper), back.action_values(t, 0, B, upper)
                )
        al, _ac = back.alphas(2, 1)
        np.testing.assert_allclose(
            (B @ al.T).max(axis=1), back.action_values(2, 1, B).max(axis=1), atol=1e-12
        )
    slow = FiniteHorizonSolver(precision=1e-14, time_limit=1e-4).solve(
        random_vertex_model(rng, H=6, C=3, n_obs=5)
    )
    assert not slow.info.converged and slow.info.lower_bound <= slow.info.upper_bound
    with pytest.raises(SolverError, match="not a mixture"):
        bad = random_vertex_model(rng)
        bad.vertices = bad.vertices[:2]
        FiniteHorizonSolver().solve(bad)
