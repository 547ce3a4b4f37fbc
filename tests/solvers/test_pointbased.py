"""Point-based solver: Tiger, exact finite horizon, bracketing, bound structures, TRIM cross-check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests._support.data import require_shared_data
from tests._support.models import tiger
from tests._support.oracles import expectimax_tabular
from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.solvers import AlphaVectorPolicy, Solver, TabularPOMDP
from trim_pomdp.solvers.pointbased.bounds import AlphaSet, SawtoothUpper
from trim_pomdp.solvers.pointbased.exact import prune
from trim_pomdp.solvers.pointbased.solver import PointBasedSolver


def random_pomdp(seed: int, S=3, A=2, Z=2, discount=0.9) -> TabularPOMDP:
    rng = np.random.default_rng(seed)
    T = rng.dirichlet(np.ones(S) * 0.7, size=(A, S))
    O = rng.dirichlet(np.ones(Z) * 0.7, size=(A, S))
    R = rng.normal(size=(S, A))
    b0 = rng.dirichlet(np.ones(S))
    return TabularPOMDP(T=T, O=O, R=R, b0=b0, discount=discount)


# ------------------------------------------------------------------------------------------------ Tiger
def test_tiger_bounds_bracket_the_sarsop_value():
    solver = PointBasedSolver(precision=1e-3, time_limit=30)
    policy = solver.solve(tiger())
    info = policy.info
    assert isinstance(solver, Solver) and isinstance(policy, AlphaVectorPolicy)
    assert info.converged and info.gap <= 1e-3
    # APPL pomdpsol: V* in [19.3711, 19.3721]
    assert 19.3711 - 1e-3 <= info.lower_bound <= 19.3721 and 19.3711 <= info.upper_bound <= 19.3721 + 1e-3
    assert policy.value(tiger().b0) == pytest.approx(info.lower_bound)
    assert policy.action_names[policy.action(np.array([0.5, 0.5]))] == "listen"
    assert policy.action(np.array([0.02, 0.98])) == 1  # tiger right: open the left door
    assert policy.card["lower_bound"] == info.lower_bound and policy.card["solver"] == "pointbased"


def test_tiger_non_uniform_start():
    solver = PointBasedSolver(precision=1e-3, time_limit=30)
    policy = solver.solve(tiger(), b0=[0.9, 0.1])
    lb, ub = policy.info.lower_bound, policy.info.upper_bound
    assert lb <= 22.5744 + 1e-9 and ub >= 22.5735 - 1e-9 and ub - lb <= 1e-3  # pomdpsol: [22.5735, 22.5744]


# Exact Tiger finite-horizon values and pruned vector counts (exact value iteration).
TIGER_FINITE = {
    1: (-1.0, 3),
    2: (-1.95, 5),
    3: (2.3098, 9),
    4: (1.795544, 7),
    5: (2.763096, 13),
    6: (4.428531, 15),
    7: (4.584266, 19),
    8: (5.324021, 25),
    10: (6.693368, 27),
}


@pytest.mark.parametrize("h", sorted(TIGER_FINITE))
def test_tiger_finite_horizon_exact(h):
    value, n_alpha = TIGER_FINITE[h]
    solver = PointBasedSolver(finite_horizon=h)
    policy = solver.solve(tiger())
    assert policy.info.lower_bound == policy.info.upper_bound
    assert policy.info.lower_bound == pytest.approx(value, abs=5e-7)
    assert len(policy.alphas) == n_alpha


@pytest.mark.parametrize("seed", [0, 1])
def test_finite_horizon_matches_brute_force_with_lp_pruning(seed):
    m = random_pomdp(seed, S=3, A=2, Z=2)
    h = 4
    policy = PointBasedSolver(finite_horizon=h, seed=seed).solve(m)
    rng = np.random.default_rng(seed)
    for b in [m.b0, np.eye(3)[0], *rng.dirichlet(np.ones(3), size=4)]:
        assert float(policy.value(b)) == pytest.approx(expectimax_tabular(m, b, h), abs=1e-9)


def test_prune_keeps_exactly_the_envelope():
    rng = np.random.default_rng(0)
    V = rng.normal(size=(60, 3))
    V = np.vstack([V, V[:5] - 0.5, V[:3]])  # dominated copies and duplicates
    keep = prune(V, rng)
    B = rng.dirichlet(np.ones(3), size=20_000)
    np.testing.assert_allclose((B @ V[keep].T).max(axis=1), (B @ V.T).max(axis=1), atol=1e-12)
    winners = set(np.unique((B @ V.T).argmax(axis=1)).tolist())
    assert len(keep) <= len(set(map(tuple, V[sorted(winners)].round(12)))) + 3  # no dominated leftovers


# ------------------------------------------------------------------------------------------------ bracketing
@pytest.mark.parametrize("seed", [2, 3, 4])
def test_discounted_bounds_bracket_long_finite_horizon_values(seed):
    m = random_pomdp(seed, S=3, A=2, Z=2, discount=0.8)
    solver = PointBasedSolver(precision=1e-4, time_limit=30)
    policy = solver.solve(m)
    lb, ub = policy.info.lower_bound, policy.info.upper_bound
    h = 12
    v_h = float(PointBasedSolver(finite_horizon=h).solve(m).value(m.b0))
    tail = m.discount**h * np.abs(m.R).max() / (1 - m.discount)
    assert lb <= ub
    assert lb <= v_h + tail + 1e-9 and ub >= v_h - tail - 1e-9
    assert policy.info.converged and ub - lb <= 1e-4


def test_time_limit_and_info_fields():
    m = random_pomdp(7, S=40, A=4, Z=6, discount=0.97)
    solver = PointBasedSolver(precision=1e-9, time_limit=1.0)
    policy = solver.solve(m)
    info = policy.info
    assert not info.converged and info.extra["stop_reason"] == "time limit reached"
    assert info.seconds < 5.0 and info.lower_bound <= info.upper_bound
    assert info.sizes["alpha_vectors"] == len(policy.alphas) and info.sizes["states"] == 40
    assert float(policy.value(m.b0)) == pytest.approx(info.lower_bound)


def test_policy_round_trip(tmp_path):
    solver = PointBasedSolver(precision=1e-2)
    policy = solver.solve(tiger())
    policy.save(tmp_path / "policy")
    back = AlphaVectorPolicy.load(tmp_path / "policy")
    np.testing.assert_array_equal(back.alphas, policy.alphas)
    assert back.card["upper_bound"] == pytest.approx(policy.info.upper_bound)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"precision": 0}, "precision"),
        ({"time_limit": -1}, "time_limit"),
        ({"finite_horizon": 0}, "finite_horizon"),
        ({"zeta": 1.5}, "zeta"),
    ],
)
def test_invalid_parameters(kwargs, fragment):
    with pytest.raises(InvalidParameterError, match=fragment):
        PointBasedSolver(**kwargs)


def test_discount_one_needs_finite_horizon():
    with pytest.raises(InvalidParameterError, match="discount < 1"):
        PointBasedSolver().solve(tiger(discount=1.0))
    assert PointBasedSolver(finite_horizon=2).solve(tiger(discount=1.0)).value(np.array([0.5, 0.5])) == -2.0


# ------------------------------------------------------------------------------------------------ bounds
def _sawtooth_reference(fib, points, b):
    """min(F(b), min_i min_{φ in [0, φ_i(b)]} φ v_i + F(b - φ b_i)) by brute force over a fine φ grid."""
    best = (fib @ b).max()
    for pb, v in points:
        supp = pb > 0
        phi_max = 0.0 if np.any(b[supp] == 0) else float(np.min(b[supp] / pb[supp]))
        phis = np.concatenate([np.linspace(0, phi_max, 2001), [phi_max]])
        g = phis * v + (fib @ (b[:, None] - phis[None, :] * pb[:, None])).max(axis=0)
        best = min(best, g.min())
    return best


@pytest.mark.parametrize("dense", [True, False])
def test_sawtooth_matches_reference_and_dropping_is_exact(dense):
    rng = np.random.default_rng(1)
    S = 6
    fib = rng.uniform(5, 10, size=(3, S))
    up = SawtoothUpper(fib, dense=dense, exact=True)
    added = []
    for _ in range(60):
        k = rng.integers(1, S + 1)
        idx = np.sort(rng.choice(S, size=k, replace=False))
        vals = rng.dirichlet(np.ones(k))
        v = up.value(idx, vals) - rng.uniform(0, 2)
        b = np.zeros(S)
        b[idx] = vals
        if up.add(idx, vals, v):
            added.append((b, v))
    assert up.n_dropped > 0  # the dominance drop was exercised
    B = np.vstack([rng.dirichlet(np.ones(S), size=30), rng.dirichlet(np.ones(3), size=10) @ np.eye(S)[:3]])
    got = up.values(np.arange(S), B)
    ref = np.array([_sawtooth_reference(fib, added, b) for b in B])
    # exact minimisation over φ is never above the grid search, and within its resolution of it;
    # dropping dominated points never changed the bound (the reference uses every point ever added)
    assert np.all(got <= ref + 1e-12)
    np.testing.assert_allclose(got, ref, atol=2e-3)
    for b, v in added:
        assert up.value(np.arange(S), b) <= v + 1e-12
    sub = np.array([0, 2, 3])  # evaluation restricted to a support
    Bs = rng.dirichlet(np.ones(3), size=5)
    full = np.zeros((5, S))
    full[:, sub] = Bs
    np.testing.assert_allclose(up.values(sub, Bs), up.values(np.arange(S), full), atol=1e-12)


def test_alpha_set_dominance_and_witness_pruning():
    import scipy.sparse as sp

    al = AlphaSet(3, capacity=2)
    assert al.add(np.array([1.0, 0.0, 0.0]), 0) and al.add(np.array([0.0, 1.0, 0.0]), 1)
    assert not al.add(np.array([0.5, -1.0, 0.0]), 2)  # dominated by the first
    assert al.add(np.array([2.0, 0.0, 0.0]), 2) and al.K == 2  # dominates the first, which is dropped
    al.add(np.array([0.0, 0.0, 1.0]), 0)
    W = sp.csc_matrix(np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]))  # witnesses e_0 and e_2
    assert al.prune_to_witnesses(W) == 1 and sorted(al.actions.tolist()) == [0, 2]


# ------------------------------------------------------------------------------------------------ data files
def test_hallway_bounds_bracket_pomdpsol_quickly():
    from trim_pomdp.solvers.formats import read_pomdp

    m = read_pomdp(require_shared_data("pomdp/Hallway.pomdp"))
    solver = PointBasedSolver(time_limit=4.0)
    policy = solver.solve(m)
    # APPL pomdpsol after 180 s: V* in [0.9954, 1.2052]
    assert policy.info.lower_bound <= 1.2052 and policy.info.upper_bound >= 0.9954
    assert policy.info.lower_bound > 0.8 and policy.info.upper_bound < 1.3


@pytest.mark.parametrize("name", ["cheese.95.POMDP", "1d.POMDP"])
def test_classic_files_solve_to_precision(name):
    from trim_pomdp.solvers.formats import read_pomdp

    m = read_pomdp(require_shared_data(f"pomdp/{name}"))
    solver = PointBasedSolver(precision=1e-3, time_limit=30)
    policy = solver.solve(m)
    assert policy.info.converged and policy.info.gap <= 1e-3


# ------------------------------------------------------------------------------------------------ TRIM
def _small_trim(horizon=4, n_bins=3):
    pytest.importorskip("trim_pomdp.pomdp")
    from trim_pomdp.observation_models.observation import ObservationModel
    from trim_pomdp.pomdp.params import TrimParams
    from trim_pomdp.pomdp.problem import build_trim_pomdp

    first = np.array([[0.1, 0.3, 0.6], [0.4, 0.4, 0.2], [0.6, 0.3, 0.1]])[:, :n_bins]
    m_marg = np.array([[0.1, 0.2, 0.7], [0.6, 0.3, 0.1], [0.2, 0.3, 0.5]])[:, :n_bins]
    pair = np.stack([np.outer(first[z], m_marg[z]) for z in range(3)])
    params = TrimParams(
        p_w=0.8,
        p_s=0.95,
        horizon=horizon,
        bucket_edges=[100.0],
        bucket_probs=np.tile([0.5, 0.5], (horizon, 1)),
        hazard=np.full(horizon, 0.3),
        bucket_mean_tokens=[60.0, 200.0],
        lam=5e-4,
        discount=0.999,
    )
    return build_trim_pomdp(params, ObservationModel.from_probs(pair, first))


def test_flattened_trim_brackets_the_native_solver(tmp_path):
    from trim_pomdp.solvers.finite_horizon import FiniteHorizonSolver
    from trim_pomdp.solvers.formats import read_pomdp, write_pomdp

    tp = _small_trim()
    gamma = tp.params.discount
    native = FiniteHorizonSolver(mode="exact")
    native_policy = native.solve(tp.structured(discount=gamma))
    lo, hi = gamma * native_policy.info.lower_bound, gamma * native_policy.info.upper_bound
    flat = tp.flatten()
    # the flattened model survives both file formats bit-exactly, so SARSOP reads what we solve
    for fmt in ("pomdp", "pomdpx"):
        back = read_pomdp(write_pomdp(flat, tmp_path / f"trim.{fmt}"))
        np.testing.assert_array_equal(back.T, flat.T)
        np.testing.assert_array_equal(back.O, flat.O)
        np.testing.assert_array_equal(back.R, flat.R)
    solver = PointBasedSolver(precision=1e-3, time_limit=30)
    policy = solver.solve(flat)
    info = policy.info
    assert info.converged and info.gap <= 1e-3
    assert info.lower_bound <= hi + 1e-9 and info.upper_bound >= lo - 1e-9


def test_residual_bound_exact_and_cheap_modes():
    from trim_pomdp.solvers.pointbased.bounds import _residual_bound

    rng = np.random.default_rng(5)
    Q, n, A = 7, 9, 5
    FB, Fi = rng.uniform(0, 10, size=(Q, A)), rng.uniform(0, 10, size=(n, A))
    v, phi_max = rng.uniform(0, 8, size=n), rng.uniform(0, 1, size=(Q, n))
    exact = _residual_bound(FB, phi_max, v, Fi, exact=True)
    cheap = _residual_bound(FB, phi_max, v, Fi, exact=False)
    grid = phi_max[..., None] * np.linspace(0, 1, 4001)  # (Q, n, G)
    g = grid * v[None, :, None] + (FB[:, None, None, :] - grid[..., None] * Fi[None, :, None, :]).max(axis=-1)
    np.testing.assert_allclose(exact, np.minimum(g.min(axis=-1), exact), atol=1e-12)
    assert np.all(exact <= g.min(axis=-1) + 1e-12) and np.all(g.min(axis=-1) - exact < 1e-2)
    at_max = phi_max * v + (FB[:, None, :] - phi_max[..., None] * Fi[None]).max(axis=-1)
    assert np.all(cheap >= exact - 1e-12) and np.all(cheap <= at_max + 1e-12)


def test_greedy_policy_achieves_the_lower_bound_in_simulation():
    """Executing the returned alpha-vector policy earns, in expectation, at least the lower bound."""
    m = tiger()
    solver = PointBasedSolver(precision=1e-2, time_limit=30, seed=1)
    policy = solver.solve(m)
    rng = np.random.default_rng(0)
    n, steps = 20_000, 200  # 0.95**200 * 100 / 0.05 < 0.1
    state = rng.choice(2, size=n, p=m.b0)
    belief = np.tile(m.b0, (n, 1))
    ret, disc = np.zeros(n), 1.0
    for _ in range(steps):
        a = policy.action(belief)
        ret += disc * m.R[state, a]
        state = (rng.random(n) > m.T[a, state, 0]).astype(int)
        obs = (rng.random(n) > m.O[a, state, 0]).astype(int)
        pred = np.einsum("ns,nst->nt", belief, m.T[a]) * m.O[a, :, obs]
        belief = pred / pred.sum(axis=1, keepdims=True)
        disc *= m.discount
    se = ret.std() / np.sqrt(n)
    assert ret.mean() >= policy.info.lower_bound - 4 * se - 0.1
    assert ret.mean() <= policy.info.upper_bound + 4 * se + 0.1


# ------------------------------------------------------------------------------------------------ layers
def test_simplex_grid_counts_and_rows():
    from math import comb

    from trim_pomdp._internal.simplex import simplex_grid

    for k, r in [(1, 4), (2, 4), (3, 4), (4, 3)]:
        G = simplex_grid(k, r)
        assert G.shape == (comb(r + k - 1, k - 1), k)
        np.testing.assert_allclose(G.sum(axis=1), 1.0)
        assert len({tuple(row) for row in np.round(G * r).astype(int)}) == len(G)


def test_support_layers_orders_a_layered_model_and_rejects_cycles():
    from trim_pomdp.solvers.pointbased.layers import support_layers
    from trim_pomdp.solvers.pointbased.sparse import SparseModel

    flat = _small_trim().flatten()
    m = SparseModel(flat)
    layers = support_layers(m)
    assert layers and (flat.n_states - 2,) in layers  # the start state's support
    assert all((flat.n_states - 1,) != U for U in layers)  # the absorbing terminal has a self-loop
    pos = {U: i for i, U in enumerate(layers)}
    for U in layers:  # every successor comes first (reverse topological order)
        for a in range(m.A):
            P = np.unique(m.T[a][np.asarray(U)].indices)
            for o in range(m.Z):
                child = tuple(P[flat.O[a, P, o] > 0].tolist())
                if child in pos and child != U:
                    assert pos[child] < pos[U]
    assert support_layers(SparseModel(tiger())) == []  # one support with a self-loop: nothing to seed
    T = np.zeros((3, 3, 3))
    T[:, [0, 1, 2], [1, 2, 0]] = 1.0  # deterministic 3-cycle, fully observed
    obs = np.tile(np.eye(3), (3, 1, 1))
    cyc3 = TabularPOMDP(T=T, O=obs, R=np.zeros((3, 3)), b0=np.eye(3)[0], discount=0.9)
    assert support_layers(SparseModel(cyc3)) is None
    assert support_layers(m, max_supports=3) is None


def test_layer_seeding_keeps_bounds_valid():
    from trim_pomdp.solvers.finite_horizon import FiniteHorizonSolver

    tp = _small_trim()
    gamma = tp.params.discount
    native = FiniteHorizonSolver(mode="exact")
    native_policy = native.solve(tp.structured(discount=gamma))
    lo, hi = gamma * native_policy.info.lower_bound, gamma * native_policy.info.upper_bound
    solver = PointBasedSolver(precision=1e-3, time_limit=30, layer_grid=3, hull_max_support=3)
    policy = solver.solve(tp.flatten())
    info = policy.info
    assert info.extra["layer_seeded_points"] > 0
    assert info.converged and info.lower_bound <= hi + 1e-9 and info.upper_bound >= lo - 1e-9
    with pytest.raises(InvalidParameterError, match="layer_grid"):
        PointBasedSolver(layer_grid=-1)
    with pytest.raises(InvalidParameterError, match="layer_share"):
        PointBasedSolver(layer_share=2.0)
    with pytest.raises(InvalidParameterError, match="hull_max_support"):
        PointBasedSolver(hull_max_support=-1)


# ------------------------------------------------------------------------------------------------ face hulls
def _envelope_lp(P, v, b):
    """Lower convex envelope of the points (rows of P, values v) at b: min Σ λ v s.t. Σ λ P = b, λ >= 0."""
    from scipy.optimize import linprog

    res = linprog(v, A_eq=P.T, b_eq=b, bounds=(0, None), method="highs")
    assert res.status == 0
    return res.fun


@pytest.mark.parametrize("k", [2, 3])
def test_face_hull_is_the_lower_convex_envelope(k):
    from trim_pomdp.solvers.pointbased.hull import FaceHulls

    rng = np.random.default_rng(k)
    S = 7
    U = np.sort(rng.choice(S, size=k, replace=False))
    planes = rng.uniform(0, 1, size=(4, k))  # a convex function on the face: V(b) = max planes . b
    corner = np.full(S, 2.0)
    hulls = FaceHulls(corner, max_support=3)
    P, v = [np.eye(k)], [corner[U]]
    for _ in range(25):
        b = rng.dirichlet(np.ones(k) * 0.7)
        val = (planes @ b).max() + rng.uniform(0, 0.05)
        hulls.add(U, b, val)
        P.append(b[None]), v.append([val])
    P, v = np.vstack(P), np.concatenate(v)
    Q = rng.dirichlet(np.ones(k), size=40)
    full = np.zeros((40, S))
    full[:, U] = Q
    got = hulls.values(np.arange(S), full)
    ref = np.array([_envelope_lp(P, v, q) for q in Q])
    np.testing.assert_allclose(got, ref, atol=1e-9)
    assert np.all(got >= (planes @ Q.T).max(axis=0) - 1e-12)  # a valid upper bound of the convex function
    # an edge of the face with no point on it or on a face of it gets no hull bound (k = 3: only the corners'
    # chord, which never beats the planes the solver takes the minimum with), else the envelope (k = 2);
    # beliefs on larger supports get no hull bound either (inf)
    edge = np.zeros(S)
    edge[U[:2]] = [0.3, 0.7]
    e = hulls.values(np.arange(S), edge[None])[0]
    if k == 3:
        assert np.isinf(e)
    else:
        assert e == pytest.approx(_envelope_lp(P, v, edge[U]), abs=1e-9)
    wide = np.full((1, S), 1.0 / S)
    assert np.isinf(hulls.values(np.arange(S), wide))[0]


def test_sawtooth_with_hulls_is_never_looser_and_stays_valid():
    rng = np.random.default_rng(3)
    S = 5
    fib = rng.uniform(5, 10, size=(2, S))
    plain, hull = SawtoothUpper(fib, dense=False), SawtoothUpper(fib, dense=False, hull_max_support=3)
    U = np.array([1, 3, 4])
    for _ in range(40):
        b = rng.dirichlet(np.ones(3))
        v = min(plain.value(U, b), hull.value(U, b)) - rng.uniform(0, 1)
        plain.add(U, b, v)
        hull.add(U, b, v)
    B = rng.dirichlet(np.ones(3), size=50)
    a, h = plain.values(U, B), hull.values(U, B)
    assert np.all(h <= a + 1e-12) and np.any(h < a - 1e-6)


# ------------------------------------------------------------------------------------------ no state on the solver
def test_one_solver_solves_several_models_also_from_two_threads():
    """The search state lives in a per-solve object: one PointBasedSolver serves several models, concurrently."""
    from concurrent.futures import ThreadPoolExecutor

    from trim_pomdp.solvers.formats import read_pomdp

    models = [tiger(), read_pomdp(Path(__file__).parents[1] / "fixtures" / "pomdp" / "corridor.pomdp")]
    settings = {
        "precision": 1e-2,
        "time_limit": 60.0,
        "sweeps": False,
    }  # no sweeps: no timing-dependent steps
    solver = PointBasedSolver(**settings)
    alone = [PointBasedSolver(**settings).solve(m) for m in models]
    shared = [solver.solve(m) for m in models]
    with ThreadPoolExecutor(max_workers=2) as pool:
        threaded = list(pool.map(solver.solve, models))
    assert vars(solver) == vars(PointBasedSolver(**settings))
    for ref, a, b in zip(alone, shared, threaded, strict=True):
        assert a.n_states == b.n_states == ref.n_states
        for policy in (a, b):
            assert policy.info.converged and policy.info.gap <= 1e-2
            np.testing.assert_array_equal(policy.alphas, ref.alphas)
            assert policy.info.lower_bound == ref.info.lower_bound
