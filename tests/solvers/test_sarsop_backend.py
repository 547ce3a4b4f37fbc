"""SARSOP backend up to the Julia boundary: conversion, worker protocol with injected fakes, bounds, errors.

Live tests that run Julia are marked ``julia`` and skip (with the reason) where Julia is not set up.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests._support.models import tiger
from tests._support.sarsop_fakes import blind_alphas, mdp_values
from trim_pomdp.exceptions import BackendUnavailableError, InvalidParameterError, ModelCheckError, SolverError
from trim_pomdp.solvers.policy import AlphaVectorPolicy
from trim_pomdp.solvers.sarsop.arrays import (
    RawSolution,
    SparseTabularArrays,
    policy_arrays,
    read_request,
    to_sparse_tabular,
    write_request,
)
from trim_pomdp.solvers.sarsop.log import parse_pomdpsol_log
from trim_pomdp.solvers.sarsop.setup import julia_status
from trim_pomdp.solvers.sarsop.solver import SarsopSolver
from trim_pomdp.solvers.sarsop.worker import FAKE_ENV
from trim_pomdp.solvers.tabular import TabularPOMDP

TESTS_DIR = Path(__file__).resolve().parents[1]


def chain_with_terminal() -> TabularPOMDP:
    """3 states (s2 terminal, absorbing, zero reward), 2 actions, 2 observations, sparse T and O."""
    T = np.zeros((2, 3, 3))
    T[0] = [[0.0, 0.7, 0.3], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    T[1] = [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]
    O = np.zeros((2, 3, 2))
    O[0] = [[1.0, 0.0], [0.25, 0.75], [0.0, 1.0]]
    O[1] = [[0.5, 0.5], [0.5, 0.5], [0.0, 1.0]]
    R = np.array([[0.0, -1.0], [2.0, 5.0], [0.0, 0.0]])
    return TabularPOMDP(
        T=T, O=O, R=R, b0=np.array([0.6, 0.4, 0.0]), discount=0.9, terminal=np.array([False, False, True])
    )


@pytest.fixture
def fake(monkeypatch):
    """Point the worker (child process or in-process) at a function of tests/_support/sarsop_fakes.py."""
    path = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS_DIR.parent)] + ([path] if path else [])))

    def use(name: str) -> None:
        monkeypatch.setenv(FAKE_ENV, f"tests._support.sarsop_fakes:{name}")

    return use


# ----------------------------------------------------------------------------------------------------
# numpy -> SparseTabularPOMDP conversion (pure)
# ----------------------------------------------------------------------------------------------------
def test_conversion_hand_built_indices_values_and_terminals():
    m = chain_with_terminal()
    p = to_sparse_tabular(m)
    assert (p.n_states, p.n_actions, p.n_observations) == (3, 2, 2)
    # T[a][s, sp], 1-based, sorted by action, row, column; exactly the nonzeros
    assert p.T_a.tolist() == [1, 1, 1, 1, 2, 2, 2]
    assert p.T_s.tolist() == [1, 1, 2, 3, 1, 2, 3]
    assert p.T_sp.tolist() == [2, 3, 2, 3, 1, 3, 3]
    assert p.T_p.tolist() == [0.7, 0.3, 1.0, 1.0, 1.0, 1.0, 1.0]
    # O[a][sp, o]
    assert list(zip(p.O_a.tolist(), p.O_sp.tolist(), p.O_o.tolist(), p.O_p.tolist(), strict=True)) == [
        (1, 1, 1, 1.0),
        (1, 2, 1, 0.25),
        (1, 2, 2, 0.75),
        (1, 3, 2, 1.0),
        (2, 1, 1, 0.5),
        (2, 1, 2, 0.5),
        (2, 2, 1, 0.5),
        (2, 2, 2, 0.5),
        (2, 3, 2, 1.0),
    ]
    assert p.terminals.tolist() == [3]
    np.testing.assert_array_equal(p.R, m.R)
    np.testing.assert_array_equal(p.b0, [0.6, 0.4, 0.0])
    assert p.discount == 0.9
    for arr in (p.T_a, p.T_s, p.T_sp, p.O_a, p.O_sp, p.O_o, p.terminals):
        assert arr.dtype == np.int64 and arr.min() >= 1
    assert p.T_p.dtype == np.float64 and p.R.flags.c_contiguous


def test_conversion_row_sums_sparsity_and_dense_roundtrip():
    rng = np.random.default_rng(3)
    A, S, Z = 3, 6, 4
    T = rng.random((A, S, S)) * (rng.random((A, S, S)) < 0.4)
    T[:, np.arange(S), np.arange(S)] += 0.1  # every row has a nonzero
    T /= T.sum(axis=2, keepdims=True)
    O = rng.random((A, S, Z)) * (rng.random((A, S, Z)) < 0.5)
    O[:, :, 0] += 0.05
    O /= O.sum(axis=2, keepdims=True)
    m = TabularPOMDP(T=T, O=O, R=rng.normal(size=(S, A)), b0=np.full(S, 1 / S), discount=0.97)
    p = to_sparse_tabular(m)
    assert p.T_p.size == np.count_nonzero(T) and p.O_p.size == np.count_nonzero(O)
    assert np.all(p.T_p > 0) and np.all(p.O_p > 0)
    row_sums = np.zeros((A, S))
    np.add.at(row_sums, (p.T_a - 1, p.T_s - 1), p.T_p)
    np.testing.assert_allclose(row_sums, 1.0, atol=1e-12)
    obs_sums = np.zeros((A, S))
    np.add.at(obs_sums, (p.O_a - 1, p.O_sp - 1), p.O_p)
    np.testing.assert_allclose(obs_sums, 1.0, atol=1e-12)
    np.testing.assert_array_equal(p.dense_T(), T)
    np.testing.assert_array_equal(p.dense_O(), O)
    assert p.terminals.size == 0
    q = SparseTabularArrays.from_arrays(p.to_arrays())
    for name in ("T_a", "T_s", "T_sp", "T_p", "O_a", "O_sp", "O_o", "O_p", "R", "b0", "terminals"):
        np.testing.assert_array_equal(getattr(q, name), getattr(p, name))
    assert (q.n_states, q.n_actions, q.n_observations, q.discount) == (S, A, Z, 0.97)


def test_conversion_rejects_terminal_states_that_are_not_absorbing_zero_reward():
    m = chain_with_terminal()
    m.terminal = np.array([False, True, False])  # s1 has reward and leaves under action 2
    with pytest.raises(ModelCheckError, match=r"state 1 is marked terminal"):
        to_sparse_tabular(m)
    m = chain_with_terminal()
    m.R[2, 1] = 1.0
    with pytest.raises(ModelCheckError, match=r"R\[2, 1\]"):
        to_sparse_tabular(m)
    m = chain_with_terminal()
    m.T[0, 0] = [0.5, 0.6, 0.0]
    with pytest.raises(ModelCheckError, match="sums to"):
        to_sparse_tabular(m)


def test_policy_arrays_transposes_and_zero_bases():
    raw = RawSolution(alphas=np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), actions=np.array([2, 1, 2]))
    alphas, actions = policy_arrays(raw, n_states=2, n_actions=2)
    np.testing.assert_array_equal(alphas, [[1, 4], [2, 5], [3, 6]])
    assert actions.tolist() == [1, 0, 1]
    with pytest.raises(SolverError, match="expected 1-based"):
        policy_arrays(RawSolution(alphas=np.ones((2, 1)), actions=np.array([0])), 2, 2)
    with pytest.raises(SolverError, match="expected 1-based"):
        policy_arrays(RawSolution(alphas=np.ones((2, 1)), actions=np.array([3])), 2, 2)
    with pytest.raises(SolverError, match="shape"):
        policy_arrays(RawSolution(alphas=np.ones((3, 1)), actions=np.array([1])), 2, 2)
    with pytest.raises(SolverError, match="non-finite"):
        policy_arrays(RawSolution(alphas=np.array([[np.nan], [1.0]]), actions=np.array([1])), 2, 2)
    with pytest.raises(SolverError, match="actions for"):
        policy_arrays(RawSolution(alphas=np.ones((2, 2)), actions=np.array([1])), 2, 2)


# ----------------------------------------------------------------------------------------------------
# pomdpsol's log
# ----------------------------------------------------------------------------------------------------
POMDPSOL_LOG = """\
Loading the model ...
-------------------------------------------------------------------------------
 Time   |#Trial |#Backup |LBound    |UBound    |Precision  |#Alphas |#Beliefs
-------------------------------------------------------------------------------
 0       0       0        -20        92.8206    112.821     4        1
 0.01    183     562      19.3711    19.3721    0.00098     5        60
-------------------------------------------------------------------------------

SARSOP finishing ...
  target precision reached
  target precision  : 0.001000
  precision reached : 0.000980

-------------------------------------------------------------------------------
 Time   |#Trial |#Backup |LBound    |UBound    |Precision  |#Alphas |#Beliefs
-------------------------------------------------------------------------------
 0.01    183     562      19.3711    19.3721    0.00098     5        60
-------------------------------------------------------------------------------
"""


def test_parse_pomdpsol_log():
    out = parse_pomdpsol_log(POMDPSOL_LOG)
    assert out["stop_reason"] == "precision"
    assert (out["lower"], out["upper"], out["trials"], out["n_alphas"], out["n_beliefs"]) == (
        19.3711,
        19.3721,
        183,
        5,
        60,
    )
    timed_out = POMDPSOL_LOG.replace("target precision reached", "Preset timeout reached")
    assert parse_pomdpsol_log(timed_out)["stop_reason"] == "timeout"
    empty = parse_pomdpsol_log("")
    assert empty["stop_reason"] is None and math.isnan(empty["upper"]) and empty["trials"] == -1


# ----------------------------------------------------------------------------------------------------
# worker protocol with injected fakes
# ----------------------------------------------------------------------------------------------------
def _expected_blind(model: TabularPOMDP):
    alphas = blind_alphas(model.T, model.R, model.discount)
    upper = float(mdp_values(model.T, model.R, model.discount) @ model.b0)
    return alphas, float(np.max(alphas @ model.b0)), upper


@pytest.mark.parametrize("backend", ["sarsop.jl", "nativesarsop.jl"])
def test_child_process_roundtrip_with_fake_solver(fake, tmp_path, backend):
    fake("blind")
    model = tiger(b0=(0.9, 0.1))
    solver = SarsopSolver(
        backend=backend,
        time_limit=5.0,
        precision=1e-2,
        workdir=tmp_path,
        julia_kwargs={"trial_improvement_factor": 0.3, "randomization": True},
    )
    policy = solver.solve(model)
    alphas, lower, upper = _expected_blind(model)
    assert isinstance(policy, AlphaVectorPolicy)
    np.testing.assert_allclose(policy.alphas, alphas, rtol=1e-12)
    assert policy.actions.tolist() == [0, 1, 2] and policy.action_names == (
        "listen",
        "open-left",
        "open-right",
    )
    info = policy.info
    assert info.solver == "sarsop" and info.extra["backend"] == backend
    assert info.lower_bound == pytest.approx(lower, rel=1e-12)
    # sarsop.jl: upper bound read from the pomdpsol log (6 significant digits); native: from the backend
    assert info.upper_bound == pytest.approx(upper, rel=1e-5)
    assert info.extra["upper_bound_source"] == ("pomdpsol log" if backend == "sarsop.jl" else "backend")
    assert info.iterations == (12 if backend == "sarsop.jl" else 7)
    assert info.sizes["states"] == 2 and info.sizes["alpha_vectors"] == 3
    assert info.extra["backend_extra"]["options"] == {"trial_improvement_factor": 0.3, "randomization": True}
    received = json.loads((tmp_path / "fake_received.json").read_text())
    assert Path(received["cwd"]).resolve() == tmp_path.resolve()  # the worker ran in the working directory
    assert received["pid"] != os.getpid()  # ... in another process
    assert received["handle_signals"] == os.environ.get("PYTHON_JULIACALL_HANDLE_SIGNALS", "yes")
    assert (received["backend"], received["timeout"], received["precision"]) == (backend, 5.0, 1e-2)
    assert received["row_sums_T"] == [[1.0, 1.0]] * 3 and received["row_sums_O"] == [[1.0, 1.0]] * 3
    assert (tmp_path / "request.npz").exists() and (tmp_path / "result.npz").exists()
    # the card is strict JSON and the policy survives save/load
    policy.save(tmp_path / "policy")
    card = json.loads((tmp_path / "policy.json").read_text())
    assert card["solver"] == "sarsop" and card["backend"] == backend
    assert card["parameters"]["time_limit"] == 5.0 and card["versions"]["julia:FAKE"] == "0.0.1"
    back = AlphaVectorPolicy.load(tmp_path / "policy")
    np.testing.assert_array_equal(back.alphas, policy.alphas)
    assert back.action(model.b0) == policy.action(model.b0)


def test_solve_from_another_initial_belief(fake, tmp_path):
    fake("blind")
    model = tiger()
    solver = SarsopSolver(backend="native", isolate=False, workdir=tmp_path)
    policy = solver.solve(model, b0=[0.9, 0.1])
    _, lower, _ = _expected_blind(tiger(b0=(0.9, 0.1)))
    assert policy.info.lower_bound == pytest.approx(lower) and model.b0.tolist() == [0.5, 0.5]
    with pytest.raises(ModelCheckError, match="b0"):
        solver.solve(model, b0=[0.9, 0.2])


def test_in_process_mode_matches_child_process(fake, tmp_path):
    fake("blind")
    model = chain_with_terminal()
    a = SarsopSolver(backend="native", isolate=True).solve(model)
    b = SarsopSolver(backend="native", isolate=False, workdir=tmp_path).solve(model)
    np.testing.assert_array_equal(a.alphas, b.alphas)
    np.testing.assert_array_equal(a.actions, b.actions)
    received = json.loads((tmp_path / "fake_received.json").read_text())
    assert received["pid"] == os.getpid() and received["terminals"] == [3]
    assert received["handle_signals"] == os.environ.get(
        "PYTHON_JULIACALL_HANDLE_SIGNALS"
    )  # untouched in-process


def test_converged_follows_pomdpsol_stop_reason(fake, tmp_path):
    fake("blind")
    solver = SarsopSolver(backend="sarsop.jl", workdir=tmp_path, julia_kwargs={"pretend_timeout": True})
    info = solver.solve(tiger()).info
    assert info.extra["stop_reason"] == "timeout" and info.converged is False
    solver = SarsopSolver(backend="sarsop.jl", workdir=tmp_path)
    info = solver.solve(tiger()).info
    assert info.extra["stop_reason"] == "precision" and info.converged is True


def _process_gone(pid: int, wait: float = 5.0) -> bool:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def test_timeout_kills_the_worker_and_its_children(fake, tmp_path):
    fake("sleeper")
    solver = SarsopSolver(time_limit=0.5, startup_timeout=3.5, workdir=tmp_path)
    start = time.monotonic()
    with pytest.raises(SolverError, match=r"did not finish within 4 s .*was killed"):
        solver.solve(tiger())
    assert time.monotonic() - start < 15
    pid_file = tmp_path / "grandchild.pid"
    assert pid_file.exists(), (
        "the worker was killed before the fake solver even started (machine overloaded?)"
    )
    pid = int(pid_file.read_text())
    if Path("/proc").is_dir():
        assert _process_gone(pid), "pomdpsol-like grandchild survived the timeout"


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        ("crasher", r"was killed by SIGABRT without a result"),
        ("exit_silently", r"exited without writing result\.npz"),
        ("garbage", r"unreadable result \((BadZipFile|ValueError|OSError)"),
        ("wrong_format", r"unreadable result \(ValueError: not a SARSOP worker result"),
        ("julia_error", r"failed in the worker: RuntimeError: MethodError: no method matching build_pomdp"),
        ("zero_based_actions", r"expected 1-based indices"),
    ],
)
def test_worker_failures_become_solver_errors(fake, name, pattern):
    if name == "crasher" and os.name != "posix":
        pytest.skip("signal exit codes are POSIX-only")
    fake(name)
    with pytest.raises(SolverError, match=pattern):
        SarsopSolver(time_limit=5.0, startup_timeout=30.0).solve(tiger())


def test_backend_unavailable_is_reported_as_such(fake):
    fake("unavailable")
    with pytest.raises(BackendUnavailableError, match="setup-julia"):
        SarsopSolver().solve(tiger())


def test_request_file_roundtrip(tmp_path):
    p = to_sparse_tabular(chain_with_terminal())
    write_request(
        tmp_path / "r.npz",
        p,
        backend="native",
        timeout=3.0,
        precision=1e-4,
        workdir=tmp_path,
        options={"kappa": 0.5},
    )
    q, params = read_request(tmp_path / "r.npz")
    np.testing.assert_array_equal(q.dense_T(), p.dense_T())
    assert params == {
        "backend": "native",
        "timeout": 3.0,
        "precision": 1e-4,
        "workdir": str(tmp_path),
        "options": {"kappa": 0.5},
    }
    with np.load(tmp_path / "r.npz", allow_pickle=False) as data:  # no object arrays anywhere
        assert all(data[k].dtype != object for k in data.files)


def test_worker_bad_usage_exit_code():
    from trim_pomdp.solvers.sarsop.worker import main

    assert main(["only-one-arg"]) == 2


# ----------------------------------------------------------------------------------------------------
# parameters and inputs
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"backend": "sarsop-cpp"}, "backend must be one of"),
        ({"time_limit": 0}, "time_limit must be a positive"),
        ({"time_limit": math.inf}, "time_limit must be a positive"),
        ({"timeout": 0}, "timeout must be a positive"),
        ({"timeout": math.inf}, "timeout must be a positive"),
        ({"timeout": 3.0, "time_limit": 4.0}, "not both"),
        ({"precision": -1e-3}, "precision must be a positive"),
        ({"startup_timeout": True}, "startup_timeout"),
        ({"julia_kwargs": {"timeout": 3}}, "SarsopSolver sets it"),
        ({"julia_kwargs": {"max_time": 3}}, "SarsopSolver sets it"),
        ({"julia_kwargs": {"bad-name": 1}}, "not a valid Julia"),
        ({"julia_kwargs": {"end": 1}}, "not a valid Julia"),
        ({"julia_kwargs": {"x": [1, 2]}}, "only None, bool"),
        ({"julia_kwargs": {"x": math.nan}}, "not finite"),
        ({"julia_kwargs": [("x", 1)]}, "must be a dict"),
    ],
)
@pytest.mark.filterwarnings("ignore:SarsopSolver\\(timeout=:DeprecationWarning")
def test_invalid_parameters(kwargs, pattern):
    with pytest.raises(InvalidParameterError, match=pattern):
        SarsopSolver(**kwargs)


def test_timeout_is_a_deprecated_name_of_time_limit_and_backend_names_are_canonical():
    with pytest.warns(DeprecationWarning, match="use time_limit"):
        s = SarsopSolver(timeout=7.5)
    assert s.time_limit == 7.5 == s.timeout and s.get_params()["time_limit"] == 7.5
    assert SarsopSolver(time_limit=7.5).get_params() == s.get_params()
    for spelling in ("native", "Native", "NativeSARSOP.jl", "nativesarsop.jl"):
        assert SarsopSolver(backend=spelling).backend == "nativesarsop.jl"
    assert SarsopSolver(backend="SARSOP.JL").backend == "sarsop.jl"
    with pytest.raises(InvalidParameterError, match=r"did you mean 'sarsop\.jl'"):
        SarsopSolver(backend="sarsopjl")


def test_invalid_models():
    with pytest.raises(InvalidParameterError, match="tabular POMDPs"):
        SarsopSolver().solve({"T": 1})
    m = tiger()
    m.discount = 1.0
    with pytest.raises(InvalidParameterError, match="discount below 1"):
        SarsopSolver().solve(m)


def test_without_julia_solving_fails_fast_and_clearly(monkeypatch):
    monkeypatch.delenv(FAKE_ENV, raising=False)
    ok, why = julia_status()
    if ok:
        pytest.skip("Julia is set up here; this test covers machines without it")
    start = time.monotonic()
    with pytest.raises(BackendUnavailableError, match="needs Julia"):
        SarsopSolver(isolate=False).solve(tiger())
    with pytest.raises(BackendUnavailableError, match="needs Julia"):
        SarsopSolver(isolate=True, startup_timeout=60).solve(tiger())
    assert time.monotonic() - start < 20
    assert why  # a reason is always given


def test_solver_protocol_and_repr():
    from trim_pomdp.solvers.base import Solver

    s = SarsopSolver(backend="NATIVE", julia_kwargs={"epsilon": 0.5})
    assert isinstance(s, Solver) and not hasattr(s, "info") and s.backend == "nativesarsop.jl"
    assert "native" in repr(s) and s.get_params()["julia_kwargs"] == {"epsilon": 0.5}


# ----------------------------------------------------------------------------------------------------
# live Julia tests (skip with the reason where Julia is not set up)
# ----------------------------------------------------------------------------------------------------
JULIA_OK, JULIA_WHY = julia_status()
needs_julia = pytest.mark.skipif(not JULIA_OK, reason=f"Julia not available: {JULIA_WHY}")


@pytest.mark.julia
@needs_julia
@pytest.mark.parametrize("backend", ["sarsop.jl", "nativesarsop.jl"])
def test_live_tiger(backend, tmp_path):
    solver = SarsopSolver(backend=backend, time_limit=30.0, precision=1e-3, workdir=tmp_path)
    policy = solver.solve(tiger())
    info = policy.info
    # pomdpsol: LB 19.3711, UB 19.3721
    assert info.lower_bound == pytest.approx(19.3711, abs=5e-3)
    assert policy.action(np.array([0.5, 0.5])) == 0  # listen
    assert policy.action(np.array([0.02, 0.98])) == 1  # open the left door: the tiger is right
    if math.isfinite(info.upper_bound):
        assert info.upper_bound >= info.lower_bound - 1e-3
        assert info.upper_bound == pytest.approx(19.3721, abs=5e-2)
    if backend == "sarsop.jl":
        assert (tmp_path / "model.pomdpx").exists() and (tmp_path / "policy.out").exists()


@pytest.mark.julia
@needs_julia
@pytest.mark.parametrize("backend", ["sarsop.jl", "nativesarsop.jl"])
def test_live_tiger_matches_point_based_solver(backend):
    from trim_pomdp.solvers import pointbased

    model = tiger(b0=(0.9, 0.1))
    ours = SarsopSolver(backend=backend, time_limit=30.0).solve(model)
    pb = pointbased.PointBasedSolver(precision=1e-3, time_limit=30.0)
    theirs = pb.solve(model)
    v_ours, v_theirs = float(ours.value(model.b0)), float(theirs.value(model.b0))
    # both are lower bounds within their gaps of V* in [22.5735, 22.5744] (pomdpsol)
    assert v_ours == pytest.approx(22.574, abs=1e-2)
    assert v_theirs <= theirs.info.upper_bound + 1e-9
    assert abs(v_ours - v_theirs) <= 1e-2 + theirs.info.gap


def test_live_tests_skip_with_a_reason_when_julia_is_missing():
    if JULIA_OK:
        pytest.skip("Julia is available here")
    assert "Julia not available: " in needs_julia.kwargs["reason"] and len(JULIA_WHY) > 10
    assert sys.executable  # the worker is started with this interpreter


# ----------------------------------------------------------------------------------------------------
# the model handed to SARSOP is the model the other solvers solve (shared .pomdp/.pomdpx fixtures)
# ----------------------------------------------------------------------------------------------------
def small_trim(horizon: int = 4, n_bins: int = 3):
    """A small TRIM-POMDP (2 token buckets, 3 observation bins) built from arrays, no fitted artifact."""
    from trim_pomdp.observation_models.observation import ObservationModel
    from trim_pomdp.pomdp.params import TrimParams
    from trim_pomdp.pomdp.problem import build_trim_pomdp

    first = np.array([[0.1, 0.3, 0.6], [0.4, 0.4, 0.2], [0.6, 0.3, 0.1]])[:, :n_bins]
    first /= first.sum(axis=1, keepdims=True)
    m_marg = np.array([[0.1, 0.2, 0.7], [0.6, 0.3, 0.1], [0.2, 0.3, 0.5]])[:, :n_bins]
    m_marg /= m_marg.sum(axis=1, keepdims=True)
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


def _assert_same_sparse(a: SparseTabularArrays, b: SparseTabularArrays, *, terminals: bool = True):
    assert (a.n_states, a.n_actions, a.n_observations) == (b.n_states, b.n_actions, b.n_observations)
    for name in ("T_a", "T_s", "T_sp", "O_a", "O_sp", "O_o"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for name in ("T_p", "O_p", "R", "b0"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-12, atol=1e-15, err_msg=name)
    assert a.discount == pytest.approx(b.discount, rel=1e-15)
    if terminals:
        np.testing.assert_array_equal(a.terminals, b.terminals)


@pytest.mark.parametrize("fmt", ["pomdp", "pomdpx"])
@pytest.mark.parametrize("which", ["tiger", "trim", "trim-replan"])
def test_model_files_roundtrip_to_the_same_sparse_tabular_pomdp(tmp_path, fmt, which):
    from trim_pomdp.solvers.formats import read_pomdp, write_pomdp

    if which == "tiger":
        model = tiger(b0=(0.9, 0.1))
    elif which == "trim":
        model = small_trim().flatten()
    else:  # re-planning from a mid-episode belief, as BeliefRouter does
        model = small_trim().flatten(start=(2, 1, False, [0.5, 0.1, 0.4]))
    path = write_pomdp(model, tmp_path / f"model.{fmt}")
    back = read_pomdp(path)
    ours = to_sparse_tabular(model)
    # the files carry no terminal flags; everything else must be identical
    _assert_same_sparse(ours, to_sparse_tabular(back), terminals=False)
    np.testing.assert_array_equal(ours.dense_T(), model.T)
    np.testing.assert_array_equal(ours.dense_O(), model.O)
    if which != "tiger":
        assert ours.terminals.tolist() == [model.n_states]  # the absorbing terminal state, 1-based
        assert model.T[:, -1, -1].tolist() == [1.0, 1.0] and not model.R[-1].any()


def test_flattened_trim_crosses_the_worker_boundary_intact(fake, tmp_path):
    """The arrays the Julia side receives (via the request file) rebuild the flattened TRIM-POMDP exactly."""
    fake("blind")
    model = small_trim().flatten()
    solver = SarsopSolver(backend="native", workdir=tmp_path)
    policy = solver.solve(model)
    problem, params = read_request(tmp_path / "request.npz")
    _assert_same_sparse(problem, to_sparse_tabular(model))
    assert params["backend"] == "nativesarsop.jl"
    np.testing.assert_allclose(policy.alphas, blind_alphas(model.T, model.R, model.discount), rtol=1e-10)
    received = json.loads((tmp_path / "fake_received.json").read_text())
    assert received["terminals"] == [model.n_states]
    assert policy.action_names == ("continue", "regenerate")


def _native_bounds(trim):
    """γ-scaled certified bounds of the native finite-horizon solver at the flattened model's b0."""
    from trim_pomdp.solvers.finite_horizon import FiniteHorizonSolver

    gamma = trim.params.discount
    fh = FiniteHorizonSolver(precision=1e-4)
    fh_policy = fh.solve(trim.structured(discount=gamma))  # V_flat(b0) = γ · V_structured(b0) with the same γ
    return gamma * fh_policy.info.lower_bound, gamma * fh_policy.info.upper_bound


def _assert_intervals_overlap(ours, lo, hi, rel=1e-4):
    slack = rel * max(1.0, abs(lo), abs(hi))
    assert ours.lower_bound <= hi + slack, (ours.lower_bound, lo, hi)
    if math.isfinite(ours.upper_bound):
        assert ours.upper_bound >= lo - slack, (ours.upper_bound, lo, hi)


@pytest.mark.julia
@needs_julia
@pytest.mark.parametrize("backend", ["sarsop.jl", "nativesarsop.jl"])
def test_live_small_trim_agrees_with_the_native_solver(backend):
    from trim_pomdp.pomdp.policy import solve_trim

    trim = small_trim()
    solver = SarsopSolver(backend=backend, time_limit=60.0, precision=1e-4)
    policy = solve_trim(trim, solver)
    lo, hi = _native_bounds(trim)
    _assert_intervals_overlap(policy.info, lo, hi)
    gap = policy.info.gap if math.isfinite(policy.info.gap) else 1.0
    assert policy.info.lower_bound == pytest.approx(lo, abs=1e-3 + gap)
    assert policy is not None


@pytest.mark.julia
@needs_julia
@pytest.mark.parametrize("backend", ["sarsop.jl", "nativesarsop.jl"])
def test_live_default_trim_within_the_native_gap(backend):
    from trim_pomdp.pomdp.problem import build_trim_pomdp

    try:
        trim = build_trim_pomdp()
    except FileNotFoundError as exc:
        pytest.skip(f"the shipped default model is not available: {exc}")
    solver = SarsopSolver(backend=backend, time_limit=120.0, precision=1e-3)
    policy = solver.solve(trim.flatten())
    lo, hi = _native_bounds(trim)
    _assert_intervals_overlap(policy.info, lo, hi)


def test_arrays_handed_to_julia_solve_to_the_same_value_as_the_native_solvers():
    """Rebuild a TabularPOMDP from exactly what crosses to Julia; the point-based solver and the native
    finite-horizon solver must find the same V(b0) on it as on the structured model (tiny instance: exact)."""
    from trim_pomdp.solvers.pointbased.solver import PointBasedSolver

    trim = small_trim(horizon=3)
    p = to_sparse_tabular(trim.flatten())
    rebuilt = TabularPOMDP(T=p.dense_T(), O=p.dense_O(), R=p.R, b0=p.b0, discount=p.discount)
    pb = PointBasedSolver(precision=1e-6, time_limit=60.0)
    pb_policy = pb.solve(rebuilt)
    lo, hi = _native_bounds(trim)
    assert pb_policy.info.lower_bound <= hi + 1e-9 and pb_policy.info.upper_bound >= lo - 1e-9
    assert pb_policy.info.lower_bound == pytest.approx(lo, abs=1e-5)


def test_belief_router_replans_through_sarsop_solver(fake, tmp_path):
    """BeliefRouter's online re-planning (paper, Appendix B) runs through SarsopSolver like any Solver."""
    from trim_pomdp.pomdp.policy import solve_trim
    from trim_pomdp.routers.belief import BeliefRouter
    from trim_pomdp.types import StepObservation

    fake("blind")
    trim = small_trim()
    solver = SarsopSolver(backend="sarsop.jl", isolate=False, workdir=tmp_path)
    router = BeliefRouter(solve_trim(trim), trim, replan=solver, delta=1.0)  # δ = 1: the gate is always open
    router.reset()
    actions = [
        router.decide(StepObservation(t=1, scores=(0.2,), tokens=80, final=False)),
        router.decide(StepObservation(t=2, scores=(0.2, 0.9), tokens=250, final=False)),
    ]
    assert set(actions) <= {"continue", "regenerate"} and router.n_replans == 2
    assert router.last_decision["source"] == "replan"
    # the last re-plan started from the router's belief on the states of context (t=2, bucket 1, not final)
    received = json.loads((tmp_path / "fake_received.json").read_text())
    expected = (trim.state_index(np.arange(3), 2, 1, False) + 1).tolist()
    assert set(received["b0_support"]) <= set(expected) and received["b0_support"]


# ----------------------------------------------------------------------------------------------------
# keep-alive worker (Julia stays loaded between solves; still isolated and killable)
# ----------------------------------------------------------------------------------------------------
def _received(workdir: Path) -> dict:
    return json.loads((workdir / "fake_received.json").read_text())


def test_keep_alive_worker_is_reused_and_restarted(fake, tmp_path):
    import pickle

    fake("blind")
    with SarsopSolver(backend="native", keep_alive=True, workdir=tmp_path) as solver:
        first = solver.solve(tiger())
        pid = _received(tmp_path)["pid"]
        second = solver.solve(chain_with_terminal())
        assert _received(tmp_path)["pid"] == pid != os.getpid()  # same child process, reused
        assert _received(tmp_path)["terminals"] == [3]
        np.testing.assert_allclose(first.alphas, _expected_blind(tiger())[0], rtol=1e-12)
        assert second.alphas.shape == (2, 3)
        clone = pickle.loads(pickle.dumps(solver))  # the running child is not part of the state
        assert clone._worker is None and clone.keep_alive
        solver.julia_kwargs = {"raise_error": True}  # a reported error leaves the worker running
        with pytest.raises(SolverError, match="no method matching build_pomdp"):
            solver.solve(tiger())
        solver.julia_kwargs = {}
        solver.solve(tiger())
        assert _received(tmp_path)["pid"] == pid
        worker = solver._worker
    assert solver._worker is None and worker.proc.poll() is not None  # closed by the with block
    solver.solve(tiger())  # a later solve starts a new child
    assert _received(tmp_path)["pid"] != pid
    solver.close()


def test_keep_alive_worker_timeout_and_crash_kill_it_and_the_next_solve_recovers(fake, tmp_path):
    solver = SarsopSolver(keep_alive=True, time_limit=0.5, startup_timeout=3.0, workdir=tmp_path)
    fake("sleeper")
    start = time.monotonic()
    with pytest.raises(SolverError, match=r"did not answer within 4 s .*was killed"):
        solver.solve(tiger())
    assert time.monotonic() - start < 12 and solver._worker is None
    if Path("/proc").is_dir():
        assert _process_gone(int((tmp_path / "grandchild.pid").read_text()))
    fake("crasher")
    with pytest.raises(SolverError, match=r"keep-alive SARSOP worker .* was killed by SIGABRT"):
        solver.solve(tiger())
    fake("blind")
    policy = solver.solve(tiger())
    assert policy.alphas.shape == (3, 2)
    solver.close()


# ----------------------------------------------------------------------------------------------------
# the juliacall glue, against a Python stand-in for juliacall that emulates the Julia functions' contract
# ----------------------------------------------------------------------------------------------------
FAKE_JULIACALL = TESTS_DIR / "_support" / "fake_juliacall"


@pytest.fixture
def fake_juliacall(monkeypatch, tmp_path):
    """juliacall replaced by tests/_fake_juliacall (in this process and in workers); juliapkg bypassed."""
    import importlib

    monkeypatch.delenv(FAKE_ENV, raising=False)
    monkeypatch.syspath_prepend(str(FAKE_JULIACALL))
    path = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(FAKE_JULIACALL)] + ([path] if path else [])))
    monkeypatch.setenv("PYTHON_JULIACALL_EXE", sys.executable)
    monkeypatch.setenv("PYTHON_JULIACALL_PROJECT", str(tmp_path))
    monkeypatch.delitem(sys.modules, "juliacall", raising=False)
    import trim_pomdp.solvers.sarsop.julia_bridge as jl

    monkeypatch.setattr(jl, "_MODULES", {})
    module = importlib.import_module("juliacall")
    assert module.__version__ == "0.0-fake"
    module.CALLS.clear()
    yield module
    sys.modules.pop("juliacall", None)


@pytest.mark.parametrize("backend", ["sarsop.jl", "nativesarsop.jl"])
def test_juliacall_glue_in_process(fake_juliacall, tmp_path, backend):
    assert julia_status()[0]
    model = chain_with_terminal()
    solver = SarsopSolver(backend=backend, isolate=False, workdir=tmp_path, julia_kwargs={"kappa": 0.5})
    policy = solver.solve(model)
    np.testing.assert_allclose(policy.alphas, blind_alphas(model.T, model.R, model.discount), rtol=1e-12)
    assert policy.actions.tolist() == [0, 1]
    calls = fake_juliacall.CALLS
    filename = {"sarsop.jl": "sarsop_backend.jl", "nativesarsop.jl": "native_backend.jl"}[backend]
    assert calls[0] == ("include", filename) and calls[1] == ("build_pomdp", 3, 2, 2)
    assert calls[2] == ("solve_pomdp", filename, str(tmp_path), 60.0, 1e-3, {"kappa": 0.5})
    policy = solver.solve(model)  # the loaded module is cached: no second include
    assert [c[0] for c in calls].count("include") == 1
    info = policy.info
    assert info.extra["julia_versions"].startswith("julia=1.10.4") and info.lower_bound == pytest.approx(
        float(np.max(policy.alphas @ model.b0))
    )
    if backend == "nativesarsop.jl":
        assert info.upper_bound == pytest.approx(info.lower_bound + 1.0) and info.iterations == 3
    else:  # bounds from the log: this one states the stop reason but has no table, so no upper bound
        assert math.isnan(info.upper_bound) and info.converged is True
        assert info.extra["upper_bound_source"].startswith("unavailable")


def test_juliacall_glue_wraps_julia_errors_with_the_solver_log(fake_juliacall, tmp_path):
    solver = SarsopSolver(isolate=False, workdir=tmp_path, julia_kwargs={"fail": True})
    with pytest.raises(SolverError) as err:
        solver.solve(tiger())
    message = str(err.value)
    assert "Julia backend 'sarsop.jl' failed: ProcessFailedException" in message
    assert "ERROR: pomdpsol crashed" in message  # the tail of pomdpsol's log


def test_juliacall_glue_through_the_worker(fake_juliacall, tmp_path):
    model = small_trim().flatten()
    policy = SarsopSolver(backend="native", workdir=tmp_path).solve(model)
    np.testing.assert_allclose(policy.alphas, blind_alphas(model.T, model.R, model.discount), rtol=1e-10)
    with pytest.raises(SolverError, match="ProcessFailedException"):
        SarsopSolver(julia_kwargs={"fail": True}).solve(tiger())


def test_relative_pythonpath_still_works_in_the_worker(fake, monkeypatch, tmp_path):
    """The worker starts in its working directory, so relative PYTHONPATH entries are made absolute."""
    fake("blind")
    monkeypatch.chdir(TESTS_DIR.parent)
    monkeypatch.setenv("PYTHONPATH", ".")  # where tests/_support/sarsop_fakes.py lives, relative to the cwd
    policy = SarsopSolver(backend="native", workdir=tmp_path).solve(tiger())
    assert policy.alphas.shape == (3, 2)
