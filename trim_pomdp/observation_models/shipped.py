"""The observation models shipped inside the package, by name.

- ``synthetic-processbench`` (the default): simulated scores (:class:`~trim_pomdp.prm.synthetic.SyntheticPRM`,
  calibrated to Qwen2.5-Math-PRM-7B) on ProcessBench without ``math``, step labels;
- ``skywork-prmbench``: real scores of Skywork-o1-Open-PRM-Qwen-2.5-7B on 1,000 PRMBench solutions, step labels
  (PRMBench's injected errors).

The default one is ``trim_pomdp/data/observation_model.{npz,json}``; the others live in
``trim_pomdp/data/observation_models/<name>/``. Each card says how it was made (``trim_pomdp/data/README.md``
too). A PRM's scores only mean something to a model fitted on the same PRM: use the one of your PRM's family, or
fit your own (``trim-pomdp fit-observations``).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from trim_pomdp.exceptions import InvalidParameterError

__all__ = [
    "DEFAULT_OBSERVATION_MODEL",
    "SHIPPED_OBSERVATION_MODELS",
    "load_named_observation_model",
    "shipped_path",
]

#: The shipped model every command uses unless told otherwise.
DEFAULT_OBSERVATION_MODEL = "synthetic-processbench"
#: name -> folder inside ``trim_pomdp/data`` ("" for the default's own files).
SHIPPED_OBSERVATION_MODELS: dict[str, str] = {
    "synthetic-processbench": "",
    "skywork-prmbench": "observation_models/skywork-prmbench",
}


def shipped_path(name: str = DEFAULT_OBSERVATION_MODEL) -> Path:
    """The ``observation_model.npz`` of the shipped model ``name``."""
    if name not in SHIPPED_OBSERVATION_MODELS:
        raise InvalidParameterError(
            f"no shipped observation model {name!r}; shipped: {', '.join(SHIPPED_OBSERVATION_MODELS)}"
        )
    root = Path(str(resources.files("trim_pomdp") / "data"))
    sub = SHIPPED_OBSERVATION_MODELS[name]
    return (root / sub if sub else root) / "observation_model.npz"


def load_named_observation_model(spec: str | Path | None = None) -> tuple[Any, str]:
    """``(model, label)`` for a shipped model's name, a path (a directory or its ``.npz``/``.json``), or None
    (the default)."""
    from trim_pomdp.observation_models.observation import ObservationModel, load_shipped_observation_model

    if spec is None:
        return load_shipped_observation_model(), DEFAULT_OBSERVATION_MODEL
    if str(spec) in SHIPPED_OBSERVATION_MODELS:
        return load_shipped_observation_model(str(spec)), str(spec)
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(
            f"no observation model at {path}: pass a folder from `trim-pomdp fit-observations --out DIR` or a "
            f"shipped name ({', '.join(SHIPPED_OBSERVATION_MODELS)})"
        )
    return ObservationModel.load(path), str(path)
