"""TRIM-Agg: PPO training on an EpisodeBatch source, numpy inference, save/load, determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("stable_baselines3")

from tests._support.toys import ToyProcess
from trim_pomdp.exceptions import DataFormatError, InvalidParameterError
from trim_pomdp.routers.base import BatchRouter, Router
from trim_pomdp.routers.rl.agg import PPO_HYPERPARAMETERS, AggRouter, train_agg
from trim_pomdp.routers.rollout import rollout
from trim_pomdp.routers.threshold import ThresholdRouter

LAM = 5e-4


@pytest.fixture(scope="module")
def trained():
    return train_agg(ToyProcess, LAM, timesteps=12288, seed=0, n_envs=8)


def test_paper_hyperparameters():
    hp = PPO_HYPERPARAMETERS
    assert (hp["learning_rate"], hp["clip_range"], hp["ent_coef"]) == (1e-4, 0.2, 0.01)
    assert hp["normalize_advantage"] is False and hp["gamma"] == 1.0 and hp["gae_lambda"] == 0.95


def test_trained_router_learns_to_route(trained):
    assert isinstance(trained, Router) and isinstance(trained, BatchRouter)
    ppo = trained.ppo
    arch = ppo.policy.net_arch
    assert arch == {"pi": [128, 128], "vf": [128, 128]}
    assert ppo.policy.activation_fn.__name__ == "Tanh"
    src = ToyProcess()
    never = rollout(ThresholdRouter(0.0), src, 4000, lam=LAM, seed=11)
    agg = rollout(trained, src, 4000, lam=LAM, seed=11)
    assert 0 < agg.regenerate_rate < 1
    assert agg.ret > never.ret + 0.2  # it regenerates where it pays off


def test_numpy_actor_matches_sb3_deterministic_prediction(trained):
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.random(200), rng.random(200), 2 * rng.random(200), rng.random(200)]).astype(
        np.float32
    )
    sb3_actions, _ = trained.ppo.predict(x, deterministic=True)
    ours = trained.logits(x).argmax(axis=1)
    assert (sb3_actions == ours).mean() > 0.99  # float32 vs float64 ties aside


def test_decide_and_batch_agree_and_save_load_roundtrip(trained, tmp_path):
    src = ToyProcess()
    obs = src.reset(300, seed=2)
    trained.reset_batch(300)
    batch = trained.decide_batch(obs)
    single = []
    for i in range(300):
        trained.reset()
        single.append(1 if trained.decide(obs.row(i)) == "regenerate" else 0)
    assert batch.tolist() == single
    d = trained.last_decision
    assert set(d) == {"t", "features", "probs", "action"} and abs(sum(d["probs"]) - 1) < 1e-9
    trained.save(tmp_path / "agg")
    card = json.loads((tmp_path / "agg" / "agg.json").read_text())
    assert card["lam"] == LAM and card["ppo"]["gamma"] == 1.0
    assert sorted(p.name for p in (tmp_path / "agg").iterdir()) == ["agg.json", "agg_policy.npz"]  # no pickle
    loaded = AggRouter.load(tmp_path / "agg")
    assert loaded.ppo is None and loaded.lam == LAM
    assert loaded.decide_batch(obs).tolist() == batch.tolist()


def test_routers_of_earlier_versions_load_and_edited_cards_are_refused(trained, tmp_path):
    trained.save(tmp_path / "new")
    card = json.loads((tmp_path / "new" / "agg.json").read_text())
    assert card["sha256"] and set(card["signed"]) == {"lam", "horizon", "features"}
    # the way earlier versions wrote it: np.savez_compressed with a format array, a card without digest
    old = tmp_path / "old"
    old.mkdir()
    with np.load(tmp_path / "new" / "agg_policy.npz", allow_pickle=False) as data:
        np.savez_compressed(old / "agg_policy.npz", **{k: data[k] for k in data.files})
    for key in ("sha256", "signed"):
        card.pop(key)
    (old / "agg.json").write_text(json.dumps(card))
    back = AggRouter.load(old)
    assert back.lam == LAM and all(
        np.array_equal(a[0], b[0]) for a, b in zip(back.weights, trained.weights, strict=True)
    )
    # an edited λ in a signed card is refused
    card = json.loads((tmp_path / "new" / "agg.json").read_text())
    card["lam"] = 1.0
    (tmp_path / "new" / "agg.json").write_text(json.dumps(card))
    with pytest.raises(DataFormatError, match="sha256"):
        AggRouter.load(tmp_path / "new")


def test_load_errors(tmp_path):
    with pytest.raises(DataFormatError, match="train-agg"):
        AggRouter.load(tmp_path)
    np.savez(tmp_path / "agg_policy.npz", format=np.array("something-else"))
    with pytest.raises(DataFormatError, match="not a TRIM-Agg router"):
        AggRouter.load(tmp_path)


def test_training_is_seeded():
    a = train_agg(
        ToyProcess, LAM, timesteps=512, seed=3, n_envs=2, hyperparameters={"n_steps": 128, "batch_size": 64}
    )
    b = train_agg(
        ToyProcess, LAM, timesteps=512, seed=3, n_envs=2, hyperparameters={"n_steps": 128, "batch_size": 64}
    )
    c = train_agg(
        ToyProcess, LAM, timesteps=512, seed=4, n_envs=2, hyperparameters={"n_steps": 128, "batch_size": 64}
    )
    np.testing.assert_array_equal(a.weights[0][0], b.weights[0][0])
    assert not np.array_equal(a.weights[0][0], c.weights[0][0])


def test_train_agg_rejects_bad_input():
    with pytest.raises(InvalidParameterError, match="lam"):
        train_agg(ToyProcess, float("nan"))
    with pytest.raises(InvalidParameterError, match="callable"):
        train_agg(ToyProcess(), LAM, n_envs=4)


# -- TRIM-Seq -----
def test_seq_router_trains_saves_loads_and_single_matches_batch(tmp_path):
    from trim_pomdp.routers.rl.seq import SeqRouter, train_seq

    router = train_seq(
        ToyProcess,
        LAM,
        timesteps=2048,
        seed=0,
        n_envs=4,
        hyperparameters={"n_steps": 128, "batch_size": 128, "n_epochs": 2},
    )
    assert isinstance(router, Router) and isinstance(router, BatchRouter)
    src = ToyProcess()
    n = 16
    obs = src.reset(n, seed=5)
    router.reset_batch(n)
    single = SeqRouter(router.ppo, router.horizon, router.card)
    single.reset()
    while obs.active.any():
        acts = router.decide_batch(obs)
        if obs.active[0]:
            assert acts[0] == (single.decide(obs.row(0)) == "regenerate")
        obs = src.step(acts)
    router.save(tmp_path / "seq")
    loaded = SeqRouter.load(tmp_path / "seq")
    obs = src.reset(200, seed=9)
    router.reset_batch(200)
    loaded.reset_batch(200)
    assert loaded.decide_batch(obs).tolist() == router.decide_batch(obs).tolist()
    with pytest.raises(DataFormatError):
        SeqRouter.load(tmp_path)


def test_seq_extractor_ignores_padding():
    import torch

    from trim_pomdp.routers.rl.seq import train_seq

    router = train_seq(
        ToyProcess,
        LAM,
        timesteps=256,
        seed=1,
        n_envs=2,
        hyperparameters={"n_steps": 128, "batch_size": 128, "n_epochs": 1},
    )
    H = router.horizon
    x = np.zeros((2, H, 3), dtype=np.float32)
    x[:, :3] = [[0.9, 0.5, 1.0], [0.2, 0.4, 1.0], [0.7, 0.6, 1.0]]
    x[1, 3:, :2] = 0.77  # garbage in the padded part of row 1 (valid flag stays 0)
    with torch.no_grad():
        f = router.ppo.policy.extract_features(torch.as_tensor(x), router.ppo.policy.pi_features_extractor)
    np.testing.assert_allclose(f[0].numpy(), f[1].numpy(), atol=1e-5)


def test_checkpoint_and_resume(tmp_path):
    hp = {"n_steps": 128, "batch_size": 128, "n_epochs": 1}
    first = train_agg(
        ToyProcess, LAM, timesteps=512, seed=0, n_envs=2, hyperparameters=hp, checkpoint_dir=tmp_path
    )
    assert not (tmp_path / "ppo.zip").exists() and (tmp_path / "checkpoint.npz").exists()
    assert json.loads((tmp_path / "checkpoint.json").read_text())["num_timesteps"] == first.ppo.num_timesteps
    more = train_agg(
        ToyProcess, LAM, timesteps=1024, seed=0, n_envs=2, hyperparameters=hp, checkpoint_dir=tmp_path
    )
    assert more.card["resumed_from_timesteps"] == first.ppo.num_timesteps and more.ppo.num_timesteps >= 1024
    # another λ does not pick up this run's checkpoint
    other = train_agg(
        ToyProcess, 2 * LAM, timesteps=256, seed=0, n_envs=2, hyperparameters=hp, checkpoint_dir=tmp_path
    )
    assert other.card["resumed_from_timesteps"] == 0


def test_train_agg_cli(tmp_path):
    from click.testing import CliRunner

    from trim_pomdp.cli import main

    out = tmp_path / "agg"
    args = ["train-agg", "--lambda", "5e-4", "--timesteps", "256", "--n-envs", "2", "--eval-episodes", "200"]
    res = CliRunner().invoke(main, [*args, "--progress", "--out", str(out)])
    assert res.exit_code == 0, res.output
    ev = json.loads((out / "evaluation.json").read_text())
    assert ev["lam"] == 5e-4 and "agg" in ev and "pomdp" in ev and ev["relative_gap"] is not None
    assert AggRouter.load(out).lam == 5e-4
    res = CliRunner().invoke(main, [*args, "--progress", "--out", str(out)])  # done already: resumes at 256
    assert res.exit_code == 0 and "resumed from the checkpoint" in res.output
    bad = CliRunner().invoke(main, ["train-agg", "--lambda", "-1", "--out", str(out)])
    assert bad.exit_code != 0 and "--lambda" in bad.output


def test_seq_router_cut_sequences_give_the_same_decisions():
    from trim_pomdp.routers.rl.seq import SeqRouter, train_seq

    router = train_seq(
        ToyProcess,
        LAM,
        timesteps=256,
        seed=2,
        n_envs=2,
        hyperparameters={"n_steps": 128, "batch_size": 128, "n_epochs": 1},
    )
    src = ToyProcess()
    obs = src.reset(64, seed=1)
    router.reset_batch(64)
    ref = SeqRouter(router.ppo, router.horizon)
    ref.reset_batch(64)
    while obs.active.any():
        acts = router.decide_batch(obs)  # cut after the longest prefix
        x = ref.features(obs)  # full length
        p = ref._probs(x)
        np.testing.assert_array_equal(acts, np.where(obs.active, p[:, 1] > p[:, 0], 0))
        obs = src.step(acts)
