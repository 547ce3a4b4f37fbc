"""AlphaVectorPolicy's artifact (npz + card) and SolveInfo's reading of reports written by older versions."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from trim_pomdp.exceptions import DataFormatError
from trim_pomdp.solvers.base import SolveInfo
from trim_pomdp.solvers.policy import ALPHA_POLICY_FORMAT, AlphaVectorPolicy


def _info() -> SolveInfo:
    return SolveInfo(
        solver="pointbased",
        seconds=0.5,
        iterations=3,
        lower_bound=1.0,
        upper_bound=1.25,
        converged=False,
        sizes={"states": 2, "actions": 2, "observations": 1, "alpha_vectors": 2},
    )


def test_save_load_round_trip_with_digest(tmp_path):
    info = _info()
    policy = AlphaVectorPolicy(
        [[1.0, 0.0], [0.0, 1.0]], [0, 1], ["a", "b"], card={"solve_info": info.to_dict()}, info=info
    )
    npz, js = policy.save(tmp_path / "policy")
    assert (npz.name, js.name) == ("policy.npz", "policy.json")
    card = json.loads(js.read_text())
    assert card["format"] == ALPHA_POLICY_FORMAT and len(card["sha256"]) == 64 and card["n_vectors"] == 2
    back = AlphaVectorPolicy.load(tmp_path / "policy.npz")
    np.testing.assert_array_equal(back.alphas, policy.alphas)
    assert back.action_names == ("a", "b") and back.info == info
    # a changed array no longer matches the card's digest
    with np.load(npz) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["alphas"] = arrays["alphas"] * 2
    np.savez_compressed(npz, **arrays)
    with pytest.raises(DataFormatError, match="sha256 mismatch"):
        AlphaVectorPolicy.load(tmp_path / "policy")


def test_loads_a_policy_written_by_the_previous_save(tmp_path):
    """The format before the shared artifact helpers: PATH.npz + PATH.json, no digest, report under ``info``."""
    base = tmp_path / "old"
    np.savez_compressed(
        base.with_suffix(".npz"),
        alphas=np.array([[2.0, -1.0], [0.0, 0.5]]),
        actions=np.array([1, 0]),
        format=np.array("trim-pomdp/alpha-vectors/1"),
    )
    old_info = {
        "solver": "sarsop[native]",
        "seconds": 1.5,
        "iterations": 7,
        "lower_bound": 0.25,
        "upper_bound": None,
        "converged": True,
        "sizes": {"n_states": 2, "n_actions": 2, "n_observations": 2, "n_vectors": 2, "n_beliefs": 9},
        "extra": {"timeout": 5.0},
        "gap": None,
    }
    card = {
        "solver": "sarsop",
        "format": "trim-pomdp/alpha-vectors/1",
        "info": old_info,
        "action_names": ["listen", "open"],
        "n_vectors": 2,
        "n_states": 2,
    }
    base.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    policy = AlphaVectorPolicy.load(base)
    assert policy.action(np.array([1.0, 0.0])) == 1 and policy.action_names == ("listen", "open")
    info = policy.info
    assert info is not None and info.solver == "sarsop" and info.extra["backend"] == "nativesarsop.jl"
    assert info.sizes == {"states": 2, "actions": 2, "observations": 2, "alpha_vectors": 2, "beliefs": 9}
    assert math.isnan(info.upper_bound) and info.lower_bound == 0.25
    # without a card the arrays still load
    base.with_suffix(".json").unlink()
    assert AlphaVectorPolicy.load(base.with_suffix(".npz")).info is None


def test_foreign_and_missing_files_are_refused(tmp_path):
    with pytest.raises(DataFormatError, match="does not exist"):
        AlphaVectorPolicy.load(tmp_path / "missing")
    np.savez_compressed(tmp_path / "other.npz", alphas=np.ones((1, 2)), format=np.array("something/else/1"))
    with pytest.raises(DataFormatError, match="not a policy of alpha vectors"):
        AlphaVectorPolicy.load(tmp_path / "other")


def test_solve_info_from_dict_maps_old_size_keys():
    old = {
        "solver": "finite-horizon",
        "seconds": 0.1,
        "iterations": 2,
        "lower_bound": 1.0,
        "upper_bound": 1.0,
        "converged": True,
        "sizes": {"horizon": 3, "n_hidden": 3, "n_contexts": 4, "lines": 12, "max_lines": 5},
    }
    info = SolveInfo.from_dict(old)
    assert info.sizes == {
        "horizon": 3,
        "states": 3,
        "contexts": 4,
        "alpha_vectors": 12,
        "max_alpha_vectors": 5,
    }
    assert SolveInfo.from_dict(info.to_dict()) == info
