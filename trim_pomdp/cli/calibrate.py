"""``trim-pomdp calibrate``: the λ or knob that meets a strong-token budget.

A thin wrapper around :func:`trim_pomdp.evaluation.calibrate_run.run_calibration`.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import click

from trim_pomdp.cli._common import FiniteFloat, lambda_option, obs_option, out_option, seed_option

__all__ = ["command"]


@click.command("calibrate")
@click.option(
    "--target-strong-fraction",
    type=FiniteFloat(min=0, max=1, min_open=True),
    metavar="F",
    default=None,
    help="Budget as a fraction of the strong model's tokens (those of M_s alone on the same queries), e.g. 0.2.",
)
@click.option(
    "--target-strong-tokens",
    type=FiniteFloat(min=0, min_open=True),
    metavar="N",
    default=None,
    help="Budget as mean strong tokens per query.",
)
@click.option(
    "--records",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Calibrate on records of runs (the knobs present; a fraction needs the 'strong' records too).",
)
@click.option(
    "--policy", default=None, help="With --records: the routed policy to calibrate (default: the only one)."
)
@click.option(
    "--policies",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="With --records: a `trim-pomdp solve` λ sweep folder, to name the chosen λ's policy folder.",
)
@click.option(
    "--model",
    "on_model",
    is_flag=True,
    help="Calibrate under the TRIM-POMDP's own process (--params/--obs, e.g. fitted on scored items).",
)
@click.option(
    "--params",
    "params_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="With --model: TRIM parameters JSON (default: the shipped ones).",
)
@obs_option("Observation model of the POMDP.")
@click.option(
    "--simulator",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Simulator parameters JSON (default: the shipped simulator); the default source of evidence.",
)
@click.option("--split", default=None, help="Split of a multi-split --simulator file (default: math).")
@click.option(
    "--n-queries",
    type=click.IntRange(min=10),
    default=None,
    help="Calibration queries (default 2000 simulated, 20000 under the model).",
)
@seed_option(help="Seed of the calibration queries.")
@click.option(
    "--n-train",
    type=click.IntRange(min=10),
    default=2000,
    show_default=True,
    help="Simulated labelled training queries the POMDP is estimated from.",
)
@click.option("--train-seed", type=int, default=1, show_default=True, help="Seed of the training queries.")
@lambda_option(
    "λ grid of the search: comma-separated or a log range LO:HI:N (default 1e-5:1e-1:41).", metavar="Λ"
)
@click.option(
    "--refine",
    type=click.IntRange(min=0),
    default=6,
    show_default=True,
    help="Bisections in log λ between the grid points around the target.",
)
@click.option(
    "--confidence",
    type=FiniteFloat(min=0, max=1, min_open=True, max_open=True),
    default=0.95,
    show_default=True,
    help="Level of the reported intervals.",
)
@click.option(
    "--conservative", is_flag=True, help="Meet the target with the interval's upper end, not the estimate."
)
@click.option(
    "--heldout-queries",
    type=click.IntRange(min=1),
    default=None,
    help="Size of the fresh batch the held-out interval is for (default: as many as calibrated on).",
)
@click.option(
    "--coverage-draws",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Simulator only: repeat the calibration on this many fresh draws and count how often the held-out "
    "value lies in the reported interval.",
)
@click.option("--plot", is_flag=True, help="Also write calibration.png (needs matplotlib).")
@out_option("Output folder: calibration.json, and the chosen policy when one was solved.")
def command(
    target_strong_fraction: float | None,
    target_strong_tokens: float | None,
    records: Path | None,
    policy: str | None,
    policies: Path | None,
    on_model: bool,
    params_path: Path | None,
    obs_path: Path | None,
    simulator: Path | None,
    split: str | None,
    n_queries: int | None,
    seed: int,
    n_train: int,
    train_seed: int,
    lambda_spec: str | None,
    refine: int,
    confidence: float,
    conservative: bool,
    heldout_queries: int | None,
    coverage_draws: int,
    plot: bool,
    out_dir: Path,
) -> None:
    """Pick the λ (or knob) that meets a strong-token budget, with the achieved value and a confidence interval.

    Evidence: records of runs (--records), the TRIM-POMDP's own process (--model), or the simulator (default;
    SIMULATED). The output folder can be served as it is: `trim-pomdp serve --router OUT`.
    """
    from trim_pomdp.evaluation.calibrate import DEFAULT_CALIBRATION_LAMBDAS, Target
    from trim_pomdp.evaluation.calibrate_run import run_calibration

    if (target_strong_fraction is None) == (target_strong_tokens is None):
        raise click.UsageError("give one of --target-strong-fraction F or --target-strong-tokens N")
    if records is not None and on_model:
        raise click.UsageError("--records and --model are two different sources: give one")
    target = (
        Target("strong_fraction", target_strong_fraction)
        if target_strong_fraction is not None
        else Target("strong_tokens", float(target_strong_tokens))  # type: ignore[arg-type]
    )
    source = "records" if records is not None else ("model" if on_model else "simulator")
    kw: dict[str, Any] = {}
    if lambda_spec is not None:
        from trim_pomdp.cli.solve import parse_lambdas

        kw["lambdas"] = tuple(parse_lambdas(lambda_spec))
    else:
        kw["lambdas"] = DEFAULT_CALIBRATION_LAMBDAS
    if source == "model":
        from trim_pomdp.pomdp import load_trim_pomdp

        kw["model"] = load_trim_pomdp(params_path, obs_path)
    elif source == "simulator":
        from trim_pomdp.evaluation.runner import simulator_params

        kw["simulator"] = simulator_params(simulator, None, split)
        if obs_path is not None:
            from trim_pomdp.pomdp import load_observation_model

            kw["obs_model"] = load_observation_model(obs_path)
    cal = run_calibration(
        out_dir, target, source=source, records=records, policy=policy, policies=policies,
        n_queries=n_queries or (20000 if source == "model" else 2000), seed=seed, n_train=n_train,
        train_seed=train_seed, refine=refine, confidence=confidence, conservative=conservative,
        heldout_n=heldout_queries, coverage_draws=coverage_draws, plot=plot, progress=True,
        command=shlex.join(["trim-pomdp", *sys.argv[1:]]), **kw,
    )  # fmt: skip
    click.echo(cal.summary())
    if cal.note:
        click.echo(f"note: {cal.note}")
    cov = cal.extra.get("coverage")
    if cov:
        click.echo(
            f"coverage (SIMULATED): the held-out value lay in the reported interval in {cov['inside']} of "
            f"{cov['draws']} draws ({cov['coverage']:.2f})"
        )
    click.echo(
        f"wrote {out_dir / 'calibration.json'}"
        + (f"; serve it with --router {cal.router}" if cal.router else "")
    )
    if not cal.meets:
        raise click.ClickException(f"no knob meets the target ({cal.note})")
