"""The shipped defaults: TRIM parameters estimated from ProcessBench and the shipped observation model."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trim_pomdp.exceptions import DataFormatError, InvalidParameterError
from trim_pomdp.pomdp.params import TrimParams

if TYPE_CHECKING:
    from trim_pomdp.pomdp.problem import TrimPOMDP

__all__ = [
    "DEFAULT_PARAMS_FILE",
    "default_observation_model",
    "default_params_path",
    "load_default_params",
    "load_observation_model",
    "load_trim_pomdp",
]

#: File name of the shipped parameters in ``trim_pomdp/data``.
DEFAULT_PARAMS_FILE = "default_params.json"


def default_params_path() -> Path:
    """Path of ``trim_pomdp/data/default_params.json``."""
    return Path(str(resources.files("trim_pomdp") / "data" / DEFAULT_PARAMS_FILE))


def load_default_params(**changes: Any) -> TrimParams:
    """The shipped :class:`TrimParams` (weak Qwen2.5-7B-Instruct, strong Qwen2.5-72B-Instruct, ProcessBench).

    Keyword arguments override fields, e.g. ``load_default_params(lam=1e-4)``.
    """
    path = default_params_path()
    if not path.is_file():
        raise DataFormatError(f"the shipped parameters {path} are missing; reinstall trim-pomdp")
    params = TrimParams.from_json(path)
    return params.replace(**changes) if changes else params


def default_observation_model() -> Any:
    """The shipped binned observation model (:func:`~trim_pomdp.observation_models.load_shipped_observation_model`)."""
    from trim_pomdp.observation_models.observation import load_shipped_observation_model

    return load_shipped_observation_model()


def load_observation_model(path: str | os.PathLike[str] | None = None) -> Any:
    """The observation model in ``path`` (a directory or its ``.npz``/``.json``), or the shipped one."""
    from trim_pomdp.observation_models.observation import ObservationModel

    if path is None:
        return default_observation_model()
    try:
        return ObservationModel.load(Path(path))
    except DataFormatError as exc:
        raise DataFormatError(f"cannot load the observation model {path}: {exc}") from None


def load_trim_pomdp(
    params: str | os.PathLike[str] | TrimParams | None = None,
    obs: str | os.PathLike[str] | None = None,
    *,
    weak_generator: str | None = None,
    strong_generator: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    tokenizer: str | None = None,
    **changes: Any,
) -> TrimPOMDP:
    """The TRIM-POMDP the command line describes: parameters, then changed fields, then observations.

    Parameters
    ----------
    params : path or TrimParams, optional
        A parameters JSON (:meth:`TrimParams.to_json`). Default: estimated from ProcessBench when the two
        generators are given (:func:`~trim_pomdp.pomdp.estimation.estimate_params`), else the shipped ones.
    obs : path, optional
        Observation model (see :func:`load_observation_model`); default the shipped one.
    weak_generator, strong_generator : str, optional
        ProcessBench generators to estimate the parameters from (both or neither).
    data_dir : path, optional
        A folder with ProcessBench's ``<split>.json`` files for the estimation (default: the hub dataset).
    tokenizer : str, optional
        Hugging Face tokenizer for step lengths in the estimation (default: the ``ceil(len/4)`` proxy).
    **changes
        Fields to override (``None`` values are ignored), e.g. ``p_w=0.8, lam=1e-3``.
    """
    from trim_pomdp.pomdp.problem import TrimPOMDP

    if (weak_generator is None) != (strong_generator is None):
        raise InvalidParameterError("give both --weak-generator and --strong-generator (or neither)")
    if params is not None and weak_generator is not None:
        raise InvalidParameterError("--params and --weak/--strong-generator are alternatives; give one")
    if isinstance(params, TrimParams):
        p = params
    elif params is not None:
        p = TrimParams.from_json(Path(params))
    elif weak_generator is not None and strong_generator is not None:
        from trim_pomdp.pomdp.estimation import estimate_params, load_tokenizer, processbench_items

        tok = load_tokenizer(tokenizer) if tokenizer else None
        p = estimate_params(processbench_items(data_dir), weak_generator, strong_generator, tok)
    else:
        p = load_default_params()
    changes = {k: v for k, v in changes.items() if v is not None}
    if changes:
        p = p.replace(**changes)
    return TrimPOMDP(p, load_observation_model(obs))
