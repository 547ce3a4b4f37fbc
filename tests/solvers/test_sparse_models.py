"""Sparse tabular models end to end: the sparse form, the sparse solver paths, and their certified bounds."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from tests._support.models import tiger
from tests._support.oracles import expectimax_tabular
from trim_pomdp.exceptions import ModelCheckError, ResourceLimitError
from trim_pomdp.solvers import TabularPOMDP
from trim_pomdp.solvers.pointbased import sparse as sparse_module
from trim_pomdp.solvers.pointbased.initial import blind_lower_bound, fast_informed_bound, mdp_upper_bound
from trim_pomdp.solvers.pointbased.solver import PointBasedSolver
from trim_pomdp.solvers.pointbased.sparse import SparseModel
from trim_pomdp.solvers.tabular import choose_representation


def sparse_random(seed: int, S=7, A=3, Z=3, discount=0.9, k=2) -> TabularPOMDP:
    """A random model with ``k`` successors per row and ``k`` observations per state, in the sparse form."""
    rng = np.random.default_rng(seed)
    T, O = [], []
    for _ in range(A):
        t = np.zeros((S, S))
        o = np.zeros((S, Z))
        for s in range(S):
            t[s, rng.choice(S, size=k, replace=False)] = rng.dirichlet(np.ones(k))
            o[s, rng.choice(Z, size=min(k, Z), replace=False)] = rng.dirichlet(np.ones(min(k, Z)))
        T.append(sp.csr_matrix(t))
        O.append(sp.csr_matrix(o))
    R = rng.normal(size=(S, A))
    b0 = np.zeros(S)
    b0[: S // 2] = rng.dirichlet(np.ones(S // 2))
    return TabularPOMDP(T=T, O=O, R=R, b0=b0, discount=discount)


def test_sparse_form_sizes_conversion_and_check():
    m = sparse_random(0)
    assert m.is_sparse and isinstance(m.T, tuple) and all(sp.isspmatrix_csr(t) for t in m.T)
    assert (m.n_states, m.n_actions, m.n_observations) == (7, 3, 3)
    d = m.to_dense()
    assert not d.is_sparse and d.T.shape == (3, 7, 7) and d.O.shape == (3, 7, 3)
    back = d.to_sparse()
    for a in range(3):
        assert (back.transition(a) != m.transition(a)).nnz == 0
        np.testing.assert_array_equal(d.transition(a).toarray(), d.T[a])
        np.testing.assert_array_equal(m.observation(a).toarray(), d.O[a])
    assert m.nnz == d.nnz == sum(t.nnz for t in m.T) + sum(o.nnz for o in m.O)
    m.check()
    bad = sparse_random(0)
    T = [t.copy() for t in bad.T]
    T[1] = T[1].tolil()
    T[1][4, :] = 0.0
    T[1][4, 2] = 0.6
    with pytest.raises(ModelCheckError, match=r"T\[1\]\[4, :\] sums to 0\.6"):
        TabularPOMDP(T=[t.tocsr() for t in T], O=bad.O, R=bad.R, b0=bad.b0, discount=0.9).check()
    with pytest.raises(ResourceLimitError, match="memory limit"):
        m.to_dense(memory_limit=100)


def test_representation_is_chosen_by_size_and_density():
    assert choose_representation(60, 5, 21, 6_000) == "dense"  # Hallway-sized: dense is tiny
    assert choose_representation(12_800, 13, 100, 431_104) == "sparse"  # RockSample_7_8
    assert choose_representation(2_000, 2, 10, 0.5 * 2 * 2_000 * 2_010) == "dense"  # large but dense


def _expansions(m: TabularPOMDP, dense: bool, monkeypatch) -> SparseModel:
    monkeypatch.setattr(sparse_module, "DENSE_CELLS", 1 << 22 if dense else 0)
    sm = SparseModel(m)
    assert sm.dense == dense
    return sm


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sparse_and_dense_expansions_agree(seed, monkeypatch):
    m = sparse_random(seed)
    dense, sparse = _expansions(m, True, monkeypatch), _expansions(m, False, monkeypatch)
    rng = np.random.default_rng(seed)
    for _ in range(5):
        idx = np.sort(rng.choice(m.n_states, size=3, replace=False))
        vals = rng.dirichlet(np.ones(3))
        e1, e2 = dense.expand(idx, vals), sparse.expand(idx, vals)
        np.testing.assert_allclose(e1.r, e2.r)
        assert list(zip(e1.act, e1.obs, strict=True)) == list(zip(e2.act, e2.obs, strict=True))
        np.testing.assert_allclose(e1.p, e2.p)
        full1 = np.zeros((len(e1.p), m.n_states))
        full1[:, e1.union] = e1.B
        full2 = np.zeros((len(e2.p), m.n_states))
        full2[:, e2.union] = e2.B
        np.testing.assert_allclose(full1, full2, atol=1e-15)


def test_initial_bounds_on_sparse_matrices_bracket_the_value():
    m = sparse_random(3)
    sm = SparseModel(m)
    lo = blind_lower_bound(sm)
    q = mdp_upper_bound(sm)
    fib, _ = fast_informed_bound(sm, q)
    depth = 5  # (A·Z)^depth beliefs: 59k here
    exact = expectimax_tabular(m.to_dense(), m.b0, depth)
    tail = 0.9**depth * np.abs(m.R).max() / 0.1
    assert (lo @ m.b0).max() <= exact + tail
    assert (fib @ m.b0).max() >= exact - tail
    assert np.all(fib <= q + 1e-12)  # FIB only tightens the MDP bound
    # stopped at once, each bound is still valid: the constant floor, and the residual-lifted MDP bound
    floor = blind_lower_bound(sm, deadline=0.0)
    np.testing.assert_allclose(floor, m.R.min() / 0.1)
    lifted = mdp_upper_bound(sm, deadline=0.0)
    assert np.all(lifted >= q - 1e-9)
    assert np.all(lifted <= m.R.T + 0.9 * m.R.max() / 0.1 + 1e-9)  # capped by the bound no policy exceeds
    # stopped after the first evaluation (of the myopic policy): a valid bound, never above the cap
    one = mdp_upper_bound(sm, max_iter=1)
    assert np.all(one >= q - 1e-9) and np.all(one <= m.R.T + 0.9 * m.R.max() / 0.1 + 1e-9)


@pytest.mark.parametrize("dense", [True, False])
@pytest.mark.parametrize("seed", [0, 4])
def test_point_based_bounds_on_sparse_paths_bracket_expectimax(seed, dense, monkeypatch):
    # seed 4 needs ~5 s to reach a gap of 1e-2 (its beliefs fill the 7-state simplex, where the sawtooth upper
    # bound closes slowly): stopped by the time limit, the bounds must still bracket the value
    m = sparse_random(seed, discount=0.8)
    monkeypatch.setattr(sparse_module, "DENSE_CELLS", 1 << 22 if dense else 0)
    policy = PointBasedSolver(precision=1e-3, time_limit=1.0, seed=seed).solve(m)
    info = policy.info
    assert info.gap < 0.2  # the initial bounds are 5.1 (seed 0) and 0.40 (seed 4) apart
    depth = 5  # (A·Z)^depth beliefs: 59k here
    tail = 0.8**depth * np.abs(m.R).max() / 0.2
    v = expectimax_tabular(m.to_dense(), m.b0, depth)
    assert info.lower_bound <= v + tail + 1e-9 and info.upper_bound >= v - tail - 1e-9
    assert float(policy.value(m.b0)) == pytest.approx(info.lower_bound)


def test_sparse_and_dense_forms_of_tiger_solve_alike():
    dense = tiger()
    a = PointBasedSolver(precision=1e-3, time_limit=30).solve(dense).info
    b = PointBasedSolver(precision=1e-3, time_limit=30).solve(dense.to_sparse()).info
    for info in (a, b):
        assert 19.3711 - 1e-3 <= info.lower_bound <= 19.3721 and 19.3711 <= info.upper_bound <= 19.3721 + 1e-3


def test_solver_memory_limit_is_checked_before_allocating():
    m = sparse_random(1, S=400, A=2, Z=3)
    with pytest.raises(ResourceLimitError, match="memory limit of"):
        PointBasedSolver(memory_limit=10_000).solve(m)


def test_time_limit_counts_set_up_on_a_large_sparse_model():
    S = 20_000
    eye = sp.identity(S, format="csr")
    ones = sp.csr_matrix(np.ones((S, 1)))
    m = TabularPOMDP(T=[eye, eye], O=[ones, ones], R=np.ones((S, 2)), b0=np.full(S, 1 / S), discount=0.95)
    policy = PointBasedSolver(time_limit=0.5, precision=1e-9).solve(m)
    assert policy.info.seconds < 3.0  # set-up included; generous for a loaded machine
    assert policy.info.lower_bound <= 20.0 + 1e-6 <= policy.info.upper_bound + 2e-6
