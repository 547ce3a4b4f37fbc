"""The SARSOP 'appl' backend against a real APPL ``pomdpsol`` (skipped, with the reason, when there is none).

Build APPL once outside the repository (see docs/guide/sarsop.md) and put ``src/pomdpsol`` on ``PATH`` or in
``TRIM_POMDP_POMDPSOL``. The checks: certified bounds on Tiger (known V*), the factored ``.pomdpx`` fixture
handed to pomdpsol as it is (mapped back onto the flat states), agreement with the native point-based bounds,
the expectimax bracket on a random sparse model, the time limit, and ``solve-file --solver sarsop``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tests._support.models import tiger
from tests._support.oracles import expectimax_tabular
from tests.solvers.test_sparse_models import sparse_random
from trim_pomdp.cli import main
from trim_pomdp.exceptions import BackendUnavailableError
from trim_pomdp.solvers import AlphaVectorPolicy
from trim_pomdp.solvers.formats import read_pomdp
from trim_pomdp.solvers.pointbased.solver import PointBasedSolver
from trim_pomdp.solvers.sarsop import SarsopSolver
from trim_pomdp.solvers.sarsop.appl import find_pomdpsol

FIX = Path(__file__).parents[1] / "fixtures" / "pomdp"


def _pomdpsol() -> Path | None:
    try:
        return find_pomdpsol()
    except BackendUnavailableError:
        return None


POMDPSOL = _pomdpsol()
pytestmark = pytest.mark.skipif(
    POMDPSOL is None,
    reason="APPL's pomdpsol is not on PATH and TRIM_POMDP_POMDPSOL is unset (build it: docs/guide/sarsop.md)",
)


def test_tiger_bounds_are_certified_and_the_policy_earns_its_lower_bound():
    m = tiger()
    policy = SarsopSolver(backend="appl", time_limit=10, precision=1e-3).solve(m)
    info = policy.info
    assert info.converged and info.extra["backend"] == "appl"
    # V*(b0) = 19.3711... (pomdpsol: [19.3711, 19.3721])
    assert info.lower_bound <= 19.37115 <= info.upper_bound
    assert info.upper_bound - info.lower_bound <= 1e-3 + 2e-4  # APPL's gap plus the printed-digit margins
    assert float(policy.value(m.b0)) == pytest.approx(info.lower_bound)


def test_factored_file_goes_to_pomdpsol_as_it_is_and_agrees_with_the_native_solver():
    # factored.pomdpx in the subset of the format that APPL reads (same model)
    path = FIX / "factored_appl.pomdpx"
    model = read_pomdp(path)
    same = read_pomdp(FIX / "factored.pomdpx").to_dense()
    assert np.allclose(model.to_dense().O, same.O) and np.allclose(model.to_dense().R, same.R)
    sarsop = SarsopSolver(backend="appl", time_limit=10, precision=1e-4)
    a = sarsop.solve(model, model_file=path).info
    assert a.extra["backend_extra"]["model_file"] == "factored_appl.pomdpx"
    b = PointBasedSolver(precision=1e-3, time_limit=20).solve(model).info
    # two certified brackets of the same V*(b0) overlap
    assert a.lower_bound <= b.upper_bound + 1e-9 and b.lower_bound <= a.upper_bound + 1e-9


@pytest.mark.parametrize("seed", [0, 1])
def test_random_sparse_model_bounds_bracket_expectimax(seed):
    m = sparse_random(seed, discount=0.8)
    info = SarsopSolver(backend="appl", time_limit=1, precision=1e-3).solve(m).info
    depth = 5
    tail = 0.8**depth * np.abs(m.R).max() / 0.2
    v = expectimax_tabular(m.to_dense(), m.b0, depth)
    assert info.lower_bound <= v + tail + 1e-9 and info.upper_bound >= v - tail - 1e-9


def test_time_limit_stops_pomdpsol_with_valid_bounds():
    # seed 4: pomdpsol needs ~1 s of CPU per 1e-3 of gap near the end; 0.3 s stops it early
    m = sparse_random(4, discount=0.8)
    t = time.perf_counter()
    info = SarsopSolver(backend="appl", time_limit=0.3, precision=1e-6).solve(m).info
    assert time.perf_counter() - t < 15  # the limit plus start-up, on a loaded machine
    assert not info.converged and info.lower_bound <= info.upper_bound
    exact_tail = 0.8**5 * np.abs(m.R).max() / 0.2
    v = expectimax_tabular(m.to_dense(), m.b0, 5)
    assert info.lower_bound <= v + exact_tail and info.upper_bound >= v - exact_tail


def test_solve_file_with_sarsop(tmp_path):
    res = CliRunner().invoke(
        main,
        [
            "solve-file",
            str(FIX / "corridor.pomdp"),
            "--out",
            str(tmp_path),
            "--solver",
            "sarsop",
            "--pomdpsol",
            str(POMDPSOL),
            "--time-limit",
            "10",
            "--quiet",
        ],
    )
    assert res.exit_code == 0, res.output
    card = json.loads((tmp_path / "policy.json").read_text())
    native = PointBasedSolver(precision=1e-4, time_limit=20).solve(read_pomdp(FIX / "corridor.pomdp")).info
    assert (
        card["lower_bound"] <= native.upper_bound + 1e-9 and native.lower_bound <= card["upper_bound"] + 1e-9
    )
    policy = AlphaVectorPolicy.load(tmp_path / "policy")
    assert float(policy.value(np.array([0.5, 0.0, 0.5]))) == pytest.approx(card["lower_bound"])
