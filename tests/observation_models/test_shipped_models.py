"""The shipped observation models by name: the real-score Skywork model beside the synthetic default."""

from __future__ import annotations

import numpy as np
import pytest

from tests._support.data import require_shared_data
from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.observation_models.observation import ObservationModel, load_shipped_observation_model
from trim_pomdp.observation_models.shipped import (
    DEFAULT_OBSERVATION_MODEL,
    SHIPPED_OBSERVATION_MODELS,
    load_named_observation_model,
    shipped_path,
)


def test_every_shipped_model_loads_and_says_what_it_is():
    for name in SHIPPED_OBSERVATION_MODELS:
        model, label = load_named_observation_model(name)
        assert label == name and shipped_path(name).is_file()
        np.testing.assert_allclose(model.pair_probs.sum(axis=(1, 2)), 1.0, atol=1e-9)
        assert model.card["prm"] and model.card["splits"]
    assert load_named_observation_model(None)[1] == DEFAULT_OBSERVATION_MODEL
    with pytest.raises(InvalidParameterError, match="shipped"):
        shipped_path("no-such-model")


def test_skywork_model_is_real_and_says_so():
    card = load_shipped_observation_model("skywork-prmbench").card
    assert card["simulated"] is False
    assert card["prm"] == "Skywork/Skywork-o1-Open-PRM-Qwen-2.5-7B"
    assert card["splits"] == ["prmbench"] and card["supervision"] == "steps"
    assert card["counts"] == {"S0": 12492, "S1": 1138, "S2": 221}
    assert card["rho"] is None  # PRMBench records no final-answer verdicts
    assert card["p_w"] == pytest.approx(12492 / (12492 + 221))


def test_skywork_model_matches_a_refit():
    """The shipped arrays are what its card's settings make from the real file (regenerate it if not)."""
    path = require_shared_data("prm-real/skywork-prm7b_prmbench.jsonl")
    from trim_pomdp.datasets.scored import load_scored_items, step_table

    shipped = load_shipped_observation_model("skywork-prmbench")
    refit = ObservationModel.fit(
        step_table(load_scored_items(path)), n_bins=shipped.n_bins, bandwidth=shipped.card["bandwidth_rule"]
    )
    np.testing.assert_allclose(refit.pair_probs, shipped.pair_probs, rtol=0, atol=1e-12)
    np.testing.assert_allclose(refit.first_probs, shipped.first_probs, rtol=0, atol=1e-12)
