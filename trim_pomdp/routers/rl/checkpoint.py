"""PPO training state as plain arrays: checkpoints that resume training without unpickling anything.

stable-baselines3's own ``model.save`` writes a zip whose ``data`` entry holds cloudpickled objects (the learning
rate schedule, the spaces, the policy class); ``PPO.load`` unpickles them, so loading a ``ppo.zip`` someone handed
you can run arbitrary code. trim-pomdp therefore never writes or reads that format. A checkpoint is an artifact
of :mod:`trim_pomdp._internal.artifacts` instead:

- ``checkpoint.npz``: the policy's parameters (``policy.<name>``, actor, critic and feature extractor), Adam's
  per-parameter state (``opt.<i>.<name>``) and, with a convergence criterion, the best policy evaluated so far
  (``best.<name>``), all plain float arrays read with ``allow_pickle=False``;
- ``checkpoint.json``: the card: the run it belongs to (λ, R, seed, environments, features, router,
  hyperparameters, architecture), the step and update counters, Adam's hyper-parameters, the convergence state
  and the SHA-256 digest over both files.

Resuming rebuilds the PPO model *from code* with the run's settings and loads these arrays into it. A folder that
holds a ``ppo.zip`` but no ``checkpoint.npz`` (written by trim-pomdp 0.1, or by anyone else) is refused with a
message that says why; it is never opened.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from trim_pomdp._internal.artifacts import Artifact, load_artifact, save_artifact, to_jsonable
from trim_pomdp.exceptions import DataFormatError

__all__ = [
    "FORMAT",
    "LEGACY_ZIP",
    "load_state_arrays",
    "read_checkpoint",
    "refuse_pickled_zip",
    "restore_checkpoint",
    "save_checkpoint",
    "state_arrays",
]

FORMAT = "trim-pomdp/ppo-checkpoint/1"
STEM = "checkpoint"
#: The pickled stable-baselines3 file earlier versions wrote beside a router (never read).
LEGACY_ZIP = "ppo.zip"


def refuse_pickled_zip(directory: Path, what: str, fix: str) -> None:
    """Raise :class:`DataFormatError` if ``directory`` has a ``ppo.zip``: it is never unpickled."""
    zp = directory / LEGACY_ZIP
    if zp.exists():
        raise DataFormatError(
            f"{zp} is a stable-baselines3 file (written by trim-pomdp 0.1 or by stable-baselines3 itself) and "
            f"is not loaded: reading it unpickles objects, which can run any code. {what} {fix}"
        )


def state_arrays(module: Any, prefix: str) -> dict[str, np.ndarray]:
    """The parameters and buffers of a torch module as ``{prefix + name: float array}``."""
    return {f"{prefix}{k}": v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def load_state_arrays(module: Any, arrays: dict[str, np.ndarray], prefix: str, where: Path) -> None:
    """Load ``arrays`` (as written by :func:`state_arrays`) into ``module``, checking names and shapes."""
    import torch

    want = module.state_dict()
    got = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    bad = [k for k in want if k in got and tuple(want[k].shape) != tuple(got[k].shape)]
    if missing or extra or bad:
        raise DataFormatError(
            f"{where} does not fit the network it is loaded into (missing {missing[:3]}, unexpected "
            f"{extra[:3]}, wrong shapes {bad[:3]}): it was written for another architecture; re-create it"
        )
    module.load_state_dict({k: torch.as_tensor(np.asarray(got[k])).to(want[k].dtype) for k in want})


def _optimizer_arrays(optimizer: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    sd = optimizer.state_dict()
    arrays: dict[str, np.ndarray] = {}
    keys: dict[str, list[str]] = {}
    for idx, st in sd["state"].items():
        keys[str(idx)] = sorted(st)
        for name, value in st.items():
            arrays[f"opt.{idx}.{name}"] = np.asarray(
                value.detach().cpu().numpy() if hasattr(value, "detach") else value
            )
    return arrays, {"param_groups": to_jsonable(sd["param_groups"]), "state_keys": keys}


def _load_optimizer(optimizer: Any, arrays: dict[str, np.ndarray], meta: dict[str, Any], where: Path) -> None:
    import torch

    try:
        state = {
            int(idx): {name: torch.as_tensor(np.asarray(arrays[f"opt.{idx}.{name}"])) for name in names}
            for idx, names in meta["state_keys"].items()
        }
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise DataFormatError(
            f"{where} holds an optimiser state that does not fit ({exc}); re-create it"
        ) from None


def save_checkpoint(
    directory: Path,
    model: Any,
    run: dict[str, Any],
    *,
    best: dict[str, np.ndarray] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``checkpoint.npz`` + ``checkpoint.json`` for ``model`` (an SB3 PPO) into ``directory``."""
    arrays = state_arrays(model.policy, "policy.")
    opt_arrays, opt_meta = _optimizer_arrays(model.policy.optimizer)
    arrays.update(opt_arrays)
    for k, v in (best or {}).items():
        arrays[f"best.{k}"] = v
    card = {
        "run": run,
        "num_timesteps": int(model.num_timesteps),
        "n_updates": int(getattr(model, "_n_updates", 0)),
        "optimizer": opt_meta,
        "has_best": best is not None,
        **(extra or {}),
    }
    # the folder is made first and the file named: a folder not made yet whose name has a dot (``lam-0.0008``)
    # would otherwise be read as a file name with a suffix, and every λ's checkpoint would land in ``lam-0.json``
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    npz, _ = save_artifact(
        d / f"{STEM}.npz", stem=STEM, format=FORMAT, arrays=arrays, card=card, signed=("run",)
    )
    return npz


def read_checkpoint(directory: Path) -> Artifact | None:
    """The checkpoint in ``directory``, or ``None`` when there is none.

    Raises
    ------
    DataFormatError
        When the folder holds a pickled ``ppo.zip`` instead, or the checkpoint is corrupted.
    """
    if not (directory / f"{STEM}.npz").is_file():
        refuse_pickled_zip(
            directory,
            "Training cannot resume from it.",
            f"Delete it (and {STEM}.json) to train from scratch in {directory}, or train into another folder.",
        )
        return None
    return load_artifact(directory, stem=STEM, formats=(FORMAT,), what="PPO training checkpoint")


def restore_checkpoint(model: Any, art: Artifact) -> dict[str, np.ndarray] | None:
    """Load a checkpoint into a freshly built ``model``; returns the best policy's arrays (or ``None``)."""
    load_state_arrays(model.policy, art.arrays, "policy.", art.npz)
    _load_optimizer(model.policy.optimizer, art.arrays, art.card.get("optimizer", {}), art.npz)
    model.num_timesteps = int(art.card.get("num_timesteps", 0))
    model._n_updates = int(art.card.get("n_updates", 0))
    if not art.card.get("has_best"):
        return None
    return {k[len("best.") :]: v for k, v in art.arrays.items() if k.startswith("best.")}
