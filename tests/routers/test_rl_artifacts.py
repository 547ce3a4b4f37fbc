"""Learned routers and their checkpoints never run code from a file (issue 15, item 1), and load back exactly.

stable-baselines3's ``ppo.zip`` holds cloudpickled objects in its ``data`` entry, and ``PPO.load`` unpickles
them: a crafted ``lr_schedule`` runs whatever it likes. Earlier versions read such a file from ``run --router
seq:DIR`` (``SeqRouter.load``) and when ``train-agg --out DIR`` resumed. These tests hand every entry point a
``ppo.zip`` whose unpickling creates a marker file, and check that the marker never appears and the file is
refused with a message saying why.
"""

from __future__ import annotations

import base64
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("stable_baselines3")

from click.testing import CliRunner

from tests._support.toys import ToyProcess
from trim_pomdp.exceptions import DataFormatError
from trim_pomdp.routers.rl.agg import AggRouter, train_agg
from trim_pomdp.routers.rl.seq import SeqRouter, train_seq

LAM = 5e-4
HP = {"n_steps": 64, "batch_size": 64, "n_epochs": 1}


class _CreatesFile:
    """Unpickling this calls ``open(path, "w")``: it creates ``path`` (a harmless stand-in for a shell command)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def hostile_zip(path: Path, marker: Path) -> Path:
    """A real SB3 ``ppo.zip`` whose ``data["lr_schedule"]`` creates ``marker`` when it is unpickled."""
    from stable_baselines3 import PPO

    from trim_pomdp.routers.rl.env import RoutingEnv

    model = PPO("MlpPolicy", RoutingEnv(ToyProcess, LAM), n_steps=64, batch_size=64, device="cpu")
    model.save(str(path))
    with zipfile.ZipFile(path) as zf:
        entries = {name: zf.read(name) for name in zf.namelist()}
    data = json.loads(entries["data"])
    payload = base64.b64encode(pickle.dumps(_CreatesFile(marker))).decode()
    data["lr_schedule"] = {":type:": "<class 'function'>", ":serialized:": payload}
    entries["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(path, "w") as zf:
        for name, blob in entries.items():
            zf.writestr(name, blob)
    return path


@pytest.fixture
def marker(tmp_path):
    m = tmp_path / "CODE-RAN"
    yield m
    assert not m.exists(), "loading the crafted ppo.zip ran code"


def test_the_crafted_zip_does_run_code_when_unpickled(tmp_path):
    """The fixture is a real exploit: SB3's own loader runs it (so the tests below can fail)."""
    from stable_baselines3 import PPO

    m = tmp_path / "ran"
    hostile_zip(tmp_path / "ppo.zip", m)
    try:
        PPO.load(str(tmp_path / "ppo.zip"), device="cpu")
    except Exception:  # whatever the half-loaded model does next, the payload has already run
        pass
    assert m.exists()


def test_seq_router_of_an_earlier_version_is_refused_not_unpickled(tmp_path, marker):
    d = tmp_path / "seq"
    d.mkdir()
    hostile_zip(d / "ppo.zip", marker)
    (d / "seq.json").write_text(json.dumps({"format": "trim-pomdp/seq-router/1", "horizon": 8, "lam": LAM}))
    with pytest.raises(DataFormatError, match="not loaded: reading it unpickles"):
        SeqRouter.load(d)


def test_run_router_seq_dir_does_not_unpickle(tmp_path, marker):
    from trim_pomdp.routers.spec import resolve_router

    d = tmp_path / "seq"
    d.mkdir()
    hostile_zip(d / "ppo.zip", marker)
    (d / "seq.json").write_text(json.dumps({"format": "trim-pomdp/seq-router/1", "horizon": 8, "lam": LAM}))
    with pytest.raises(DataFormatError, match=r"ppo\.zip"):
        resolve_router(f"seq:{d}")


def _old_checkpoint(d: Path, marker: Path) -> None:
    """What trim-pomdp 0.1's train-agg left in OUT: ppo.zip + checkpoint.json naming the run."""
    d.mkdir(parents=True, exist_ok=True)
    hostile_zip(d / "ppo.zip", marker)
    run = {"lam": LAM, "reward": 1.0, "seed": 0, "n_envs": 2}
    (d / "checkpoint.json").write_text(json.dumps({"run": run, "num_timesteps": 128}))


def test_resuming_training_refuses_a_pickled_checkpoint(tmp_path, marker):
    d = tmp_path / "agg"
    _old_checkpoint(d, marker)
    with pytest.raises(DataFormatError, match="Training cannot resume from it"):
        train_agg(ToyProcess, LAM, timesteps=256, seed=0, n_envs=2, hyperparameters=HP, checkpoint_dir=d)


def test_train_agg_cli_refuses_a_pickled_checkpoint_in_one_line(tmp_path, marker):
    from trim_pomdp.cli import main

    d = tmp_path / "agg"
    _old_checkpoint(d, marker)
    res = CliRunner().invoke(
        main, ["train-agg", "--lambda", "5e-4", "--timesteps", "128", "--n-envs", "2", "--out", str(d)]
    )
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "ppo.zip" in res.output and "unpickles" in res.output


def test_agg_router_load_never_opens_ppo_zip(tmp_path, marker):
    d = tmp_path / "agg"
    weights = [(np.ones((4, 3)), np.zeros(3)), (np.ones((3, 2)), np.zeros(2))]
    AggRouter(weights, horizon=8, card={"lam": LAM}).save(d)
    hostile_zip(d / "ppo.zip", marker)  # an old router folder: the weights are read from the npz only
    assert AggRouter.load(d).lam == LAM


def test_checkpoints_are_plain_arrays_and_resume_the_same_model(tmp_path):
    """A checkpoint holds the policy and Adam's state as arrays; resuming continues from exactly that state."""
    d = tmp_path / "ck"
    first = train_agg(ToyProcess, LAM, timesteps=256, seed=0, n_envs=2, hyperparameters=HP, checkpoint_dir=d)
    assert sorted(p.name for p in d.iterdir()) == ["checkpoint.json", "checkpoint.npz"]
    with np.load(d / "checkpoint.npz", allow_pickle=False) as z:
        assert any(k.startswith("policy.mlp_extractor") for k in z.files)
        assert any(k.startswith("opt.") for k in z.files)
    # resume without training more: the model rebuilt from code holds the very same parameters
    again = train_agg(ToyProcess, LAM, timesteps=256, seed=0, n_envs=2, hyperparameters=HP, checkpoint_dir=d)
    assert again.card["resumed_from_timesteps"] == first.ppo.num_timesteps
    for a, b in zip(first.weights, again.weights, strict=True):
        np.testing.assert_array_equal(a[0], b[0])
    sd_a = first.ppo.policy.optimizer.state_dict()["state"]
    sd_b = again.ppo.policy.optimizer.state_dict()["state"]
    np.testing.assert_array_equal(sd_a[0]["exp_avg"].numpy(), sd_b[0]["exp_avg"].numpy())
    # a corrupted checkpoint is refused with DataFormatError, not a traceback from torch or numpy
    raw = bytearray((d / "checkpoint.npz").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (d / "checkpoint.npz").write_bytes(bytes(raw))
    with pytest.raises(DataFormatError):
        train_agg(ToyProcess, LAM, timesteps=512, seed=0, n_envs=2, hyperparameters=HP, checkpoint_dir=d)


def test_seq_router_saves_plain_arrays_and_loads_identically(tmp_path):
    router = train_seq(ToyProcess, LAM, timesteps=128, seed=0, n_envs=2, hyperparameters=HP)
    router.save(tmp_path / "seq")
    assert sorted(p.name for p in (tmp_path / "seq").iterdir()) == ["seq.json", "seq_policy.npz"]
    loaded = SeqRouter.load(tmp_path / "seq")
    assert loaded.ppo is None and loaded.lam == LAM and loaded.arch == router.arch
    src = ToyProcess()
    obs = src.reset(100, seed=3)
    router.reset_batch(100)
    loaded.reset_batch(100)
    x = router.features(obs)
    np.testing.assert_allclose(loaded._probs(x), router._probs(x), rtol=0, atol=1e-6)
    card = json.loads((tmp_path / "seq" / "seq.json").read_text())
    card["horizon"] = 9  # an edited card is refused by its digest
    (tmp_path / "seq" / "seq.json").write_text(json.dumps(card))
    with pytest.raises(DataFormatError, match="sha256"):
        SeqRouter.load(tmp_path / "seq")
