"""``trim-pomdp calibrate`` as a library call: calibrate on one kind of evidence and write the result folder.

:func:`run_calibration` writes into ``out``:

- ``calibration.json``: the card (target, chosen knob, achieved value and intervals, every evaluated point, the
  router it names, whether it is simulated, the package versions, and the coverage check when asked for);
- ``policy.npz`` / ``policy.json``: the chosen λ's policy (simulator and model calibrations), so that
  ``trim-pomdp serve --router OUT`` and ``trim-pomdp run --router OUT`` use it as it is; a calibration on records
  names its router in the card instead (``serve --router OUT`` reads it);
- ``calibration.png`` with ``plot=True``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trim_pomdp._internal.artifacts import package_versions, to_jsonable, write_json
from trim_pomdp.evaluation.calibrate import (
    DEFAULT_CALIBRATION_LAMBDAS,
    Calibration,
    Target,
    calibrate_model,
    calibrate_records,
    calibrate_simulator,
    coverage_check,
    z_value,
)
from trim_pomdp.exceptions import InvalidParameterError

__all__ = ["CALIBRATION_FORMAT", "plot_calibration", "run_calibration"]

#: The format tag of ``calibration.json``.
CALIBRATION_FORMAT = "trim-pomdp/calibration/1"

PathLike = str | os.PathLike[str]


def run_calibration(
    out: PathLike,
    target: Target,
    *,
    source: str = "simulator",
    records: PathLike | None = None,
    policy: str | None = None,
    policies: PathLike | None = None,
    model: Any = None,
    simulator: Any = None,
    n_queries: int = 2000,
    seed: int = 0,
    n_train: int = 2000,
    train_seed: int = 1,
    obs_model: Any = None,
    lambdas: Sequence[float] = DEFAULT_CALIBRATION_LAMBDAS,
    refine: int = 6,
    confidence: float = 0.95,
    conservative: bool = False,
    heldout_n: int | None = None,
    coverage_draws: int = 0,
    plot: bool = False,
    progress: bool = False,
    command: str | None = None,
) -> Calibration:
    """Calibrate on ``source`` (``"records"``, ``"simulator"`` or ``"model"``) and write the folder ``out``.

    The arguments are those of :func:`~trim_pomdp.evaluation.calibrate.calibrate_records` (``records`` is the
    file), :func:`~trim_pomdp.evaluation.calibrate.calibrate_simulator` and
    :func:`~trim_pomdp.evaluation.calibrate.calibrate_model` (``model`` is the TRIM-POMDP);
    ``coverage_draws > 0`` (simulator only) also runs
    :func:`~trim_pomdp.evaluation.calibrate.coverage_check` with that many draws and stores it in the card.
    """
    common: dict[str, Any] = {"confidence": confidence, "conservative": conservative, "heldout_n": heldout_n}
    search: dict[str, Any] = {"n_queries": n_queries, "seed": seed, "lambdas": lambdas, "refine": refine}
    if coverage_draws and source != "simulator":
        raise InvalidParameterError(
            "the coverage check runs on the simulator only (leave --coverage-draws out)"
        )
    policy_obj = None
    if source == "records":
        if records is None:
            raise InvalidParameterError("a calibration on records needs the records file (--records FILE)")
        from trim_pomdp.evaluation.records import read_records

        cal = calibrate_records(read_records(records), target, policy=policy, policies=policies, **common)
    elif source == "simulator":
        cal, policy_obj = calibrate_simulator(
            target, simulator=simulator, n_train=n_train, train_seed=train_seed, obs_model=obs_model,
            progress=progress, **search, **common,
        )  # fmt: skip
    elif source == "model":
        if model is None:
            raise InvalidParameterError("a calibration on the model needs the TRIM-POMDP (model=...)")
        cal, policy_obj = calibrate_model(target, model, progress=progress, **search, **common)
    else:
        raise InvalidParameterError(f"source must be records, simulator or model, got {source!r}")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    if policy_obj is not None:
        policy_obj.save(folder)
        cal.router = str(folder.resolve())
    card = {"format": CALIBRATION_FORMAT, **cal.to_dict(), "versions": package_versions(), "command": command}
    if coverage_draws:
        draws = coverage_check(
            target, draws=coverage_draws, n_queries=n_queries, heldout_n=heldout_n or n_queries,
            simulator=simulator, n_train=n_train, train_seed=train_seed, seed=seed + 1000, lambdas=lambdas,
            refine=refine, confidence=confidence, progress=progress,
        )  # fmt: skip
        cal.extra["coverage"] = {k: v for k, v in draws.items() if k != "rows"}
        card["coverage"] = draws
    write_json(folder / "calibration.json", to_jsonable(card))
    if plot:
        plot_calibration(cal, folder / "calibration.png")
    return cal


def plot_calibration(cal: Calibration, path: str | os.PathLike[str]) -> Path:
    """The measured value of every evaluated knob with its interval, the target and the choice (a PNG)."""
    from trim_pomdp._internal.optional import require

    require("matplotlib", "plots", "the calibration plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    z = z_value(cal.confidence)
    pts = sorted(cal.points, key=lambda p: p.knob)
    x = np.array([p.knob for p in pts])
    y = np.array([p.value for p in pts])
    lo, hi = np.array([p.interval(z) for p in pts]).T
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.errorbar(
        x,
        y,
        yerr=[y - lo, hi - y],
        fmt="o-",
        ms=3,
        capsize=2,
        label=f"measured ({100 * cal.confidence:g}% CI)",
    )
    ax.axhline(cal.target.value, color="tab:red", ls="--", label=f"target {cal.target.value:g}")
    if cal.knob is not None:
        ax.plot([cal.knob], [cal.achieved], "*", ms=14, color="tab:green", label=f"chosen {cal.knob:g}")
    if cal.policy == "pomdp" and (x > 0).all():
        ax.set_xscale("log")
    ax.set_xlabel("λ" if cal.policy == "pomdp" else "knob")
    ax.set_ylabel(
        "strong-token fraction" if cal.target.kind == "strong_fraction" else "strong tokens / query"
    )
    title = f"Calibration of {cal.policy} on {cal.n_queries} queries ({cal.source})"
    ax.set_title(title + (" (SIMULATED)" if cal.simulated else ""), fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
