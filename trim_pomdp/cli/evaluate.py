"""``trim-pomdp evaluate``: sweep routers on the simulator (or summarise records) into tables and curves."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from trim_pomdp.exceptions import BackendUnavailableError, TrimPomdpError

__all__ = ["command", "parse_floats", "run_evaluation"]


def parse_floats(text: str | None, what: str) -> tuple[float, ...] | None:
    """``"1e-4,3e-4"`` → (1e-4, 3e-4); ``None`` passes through."""
    if text is None:
        return None
    try:
        vals = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"{what} must be comma-separated numbers, got {text!r}") from None
    if not vals:
        raise click.BadParameter(f"{what} is empty")
    return vals


def _split_list(text: str | None) -> list[str] | None:
    if text is None:
        return None
    out = [x.strip() for x in text.split(",") if x.strip()]
    if not out:
        raise click.BadParameter("give at least one split")
    return out


def _obs_loader(path: Path | None):
    if path is None:
        return None

    def load() -> Any:
        from trim_pomdp.observation_models.observation import ObservationModel

        return ObservationModel.load(path)

    return load


def _sim_params(simulator: Path | None, processbench: Path | None, split: str | None):
    """Simulator parameters of one split: a file, re-estimated from ProcessBench, or the shipped defaults.

    ``split=None`` means the file's own split for a single-split file, else ``math``.
    """
    from trim_pomdp.evaluation.simulator import SimulatorParams, load_default_simulator_params

    if simulator is not None:
        d = json.loads(simulator.read_text())
        if isinstance(d, dict) and "splits" in d:
            return SimulatorParams.from_json(simulator, split=split)
        params = SimulatorParams.from_json(simulator)
        if split is not None and split != params.split:
            raise click.BadParameter(
                f"{simulator} holds one split ({params.split!r}); split {split!r} needs a multi-split file "
                "or "
                "--processbench DIR",
                param_hint="--simulator",
            )
        return params
    if processbench is not None:
        from trim_pomdp.datasets.processbench import load_processbench
        from trim_pomdp.evaluation.simulator_estimation import estimate_simulator_params

        return estimate_simulator_params(load_processbench(data_dir=processbench), split=split or "math")
    return load_default_simulator_params(split or "math")


def run_evaluation(
    out: Path,
    settings: Any,
    eval_params: Any,
    train_params: Any,
    *,
    title: str,
    obs_loader: Any = None,
    console: Any = None,
    extra_card: dict[str, Any] | None = None,
    agg_dir: Path | None = None,
) -> dict[str, Any]:
    """Sweep, then write the reports into ``out``; prints progress and the table on ``console``."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from trim_pomdp.evaluation.sweep import Benchmark, run_sweep, write_reports
    from trim_pomdp.evaluation.tables import comparison_lines, rich_table

    console = console or Console()
    bench = Benchmark(eval_params, train_params, settings, name=eval_params.split)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task(f"{title}: starting", total=None)
        skipped = 0

        def on_group(g, i, total, seconds, was_skipped):
            nonlocal skipped
            skipped += was_skipped
            knob = "" if g.knob is None else f" {g.knob:.4g}"
            progress.update(task, total=total, completed=i + 1, description=f"{title}: {g.policy}{knob}")

        records = run_sweep(
            bench,
            out,
            obs_model_loader=obs_loader,
            on_group=on_group,
            log=lambda msg: progress.console.log(msg),
            extra_card=extra_card,
            agg_dir=agg_dir,
        )
    if skipped:
        console.log(f"resumed: {skipped} (policy, knob) groups were already complete in {records}")
    summary = reports_without_plot_if_needed(write_reports, console, records, out, title=title)
    console.print(rich_table(summary, title=title))
    for line in comparison_lines(summary):
        console.print(f"  {line}")
    return summary


def reports_without_plot_if_needed(write_reports, console, *args, **kwargs) -> dict[str, Any]:
    """Write the reports; without matplotlib, write everything but ``curves.png`` and say how to get it."""
    from rich.markup import escape

    try:
        return write_reports(*args, **kwargs)
    except BackendUnavailableError as exc:
        console.print(f"[yellow]curves.png skipped (curves.csv has the data): {escape(str(exc))}[/]")
        return write_reports(*args, **kwargs, plot=False)


@click.command("evaluate")
@click.option(
    "--routers",
    default="pomdp,thr,agg,automix,oracle,random",
    show_default=True,
    help="Comma-separated routers to sweep.",
)
@click.option(
    "--simulator",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Simulator parameters JSON (one split, or a multi-split file like the shipped default).",
)
@click.option(
    "--records",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Summarise existing per-query records (e.g. from `trim-pomdp run`) instead of simulating.",
)
@click.option(
    "--split",
    default=None,
    help="ProcessBench split whose statistics the simulator uses, train and eval (default: math, or the "
    "split of a single-split --simulator file).",
)
@click.option(
    "--train-split", default=None, help="Cross-dataset: fit/train routers on this split's statistics..."
)
@click.option(
    "--eval-split", default=None, help="...and evaluate on these (comma-separated), one folder each."
)
@click.option(
    "--processbench",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="Re-estimate the simulator statistics per split from ProcessBench <split>.json files here.",
)
@click.option(
    "--n-queries",
    type=click.IntRange(min=10),
    default=2000,
    show_default=True,
    help="Simulated evaluation queries (the same for every router and knob).",
)
@click.option(
    "--n-train",
    type=click.IntRange(min=10),
    default=2000,
    show_default=True,
    help="Simulated labelled training queries (POMDP estimates, AutoMix bins, threshold grid).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the evaluation queries.")
@click.option(
    "--train-seed", type=int, default=1, show_default=True, help="Seed of training queries and PPO."
)
@click.option(
    "--lambdas", default=None, help="POMDP λ grid, comma-separated (default 15 values, 1e-4 … 3e-2)."
)
@click.option("--agg-lambdas", default=None, help="TRIM-Agg λ grid (default 3e-4,1e-3,3e-3,1e-2).")
@click.option(
    "--agg-timesteps",
    type=click.IntRange(min=1),
    default=None,
    help="PPO timesteps per λ for TRIM-Agg (default 20000: a short, laptop-sized budget).",
)
@click.option("--thresholds", default=None, help="TRIM-Thr grid (default 0..1 by 0.05 plus score quantiles).")
@click.option(
    "--observation-model",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Observation model (dir or .npz) for the POMDP; default the shipped one.",
)
@click.option("--pomdp-gate", is_flag=True, help="Use BeliefRouter's re-planning gate (δ = 0.375).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output folder.")
def command(
    routers: str,
    simulator: Path | None,
    records: Path | None,
    split: str | None,
    train_split: str | None,
    eval_split: str | None,
    processbench: Path | None,
    n_queries: int,
    n_train: int,
    seed: int,
    train_seed: int,
    lambdas: str | None,
    agg_lambdas: str | None,
    agg_timesteps: int | None,
    thresholds: str | None,
    observation_model: Path | None,
    pomdp_gate: bool,
    out: Path,
) -> None:
    """Sweep each router's knob on simulated queries (or summarise RECORDS) and write records.csv,
    summary.json, table.md, curves.csv and curves.png into OUT. Rerun the same command to resume a killed run.

    Scores and outcomes of the simulator are SIMULATED (calibrated to ProcessBench); every output says so.
    """
    from rich.console import Console

    from trim_pomdp.evaluation.simulator import SIMULATED_NOTE
    from trim_pomdp.evaluation.sweep import (
        DEFAULT_AGG_LAMBDAS,
        DEFAULT_AGG_TIMESTEPS,
        DEFAULT_LAMBDAS,
        SweepSettings,
    )

    console = Console(width=max(Console().width, 120))
    if records is not None:
        if simulator is not None or train_split or eval_split or processbench:
            raise click.UsageError("--records summarises existing records: drop the simulator options")
        from trim_pomdp.evaluation.records import read_records
        from trim_pomdp.evaluation.sweep import write_reports
        from trim_pomdp.evaluation.tables import rich_table

        wanted = [r.strip() for r in routers.split(",") if r.strip()]
        try:
            recs = read_records(records)
            keep = [p in wanted or p in ("weak", "strong") for p in recs.policy]
            import numpy as np

            out.mkdir(parents=True, exist_ok=True)
            from trim_pomdp.evaluation.records import write_records

            sub = out / "records.csv"
            selected = recs.select(np.array(keep, dtype=bool))
            if len(selected.policies()) <= 2 and any(p not in ("weak", "strong") for p in recs.policies()):
                raise click.ClickException(
                    f"none of --routers {wanted} is in {records}; it holds {sorted(set(recs.policy))}"
                )
            write_records(sub, selected)
            summary = reports_without_plot_if_needed(
                write_reports, console, sub, out, title=f"Routing metrics: {records.name}", simulated=False
            )
        except TrimPomdpError as exc:
            raise click.ClickException(str(exc)) from None
        console.print(rich_table(summary, title=f"Routing metrics: {records.name}"))
        click.echo(f"wrote {out}/summary.json, table.md, curves.csv, curves.png")
        return

    try:
        settings = SweepSettings(
            routers=tuple(r.strip() for r in routers.split(",") if r.strip()),
            n_queries=n_queries,
            n_train=n_train,
            seed=seed,
            train_seed=train_seed,
            lambdas=parse_floats(lambdas, "--lambdas") or DEFAULT_LAMBDAS,
            agg_lambdas=parse_floats(agg_lambdas, "--agg-lambdas") or DEFAULT_AGG_LAMBDAS,
            agg_timesteps=agg_timesteps or DEFAULT_AGG_TIMESTEPS,
            thresholds=parse_floats(thresholds, "--thresholds"),
            pomdp_gate=pomdp_gate,
        )
    except TrimPomdpError as exc:
        raise click.BadParameter(str(exc)) from None
    cross = train_split is not None or eval_split is not None
    if cross and not (train_split and eval_split):
        raise click.UsageError("cross-dataset evaluation needs both --train-split and --eval-split")
    t0 = time.perf_counter()
    console.print(f"[bold yellow]{SIMULATED_NOTE}[/]")
    if "agg" in settings.routers:
        console.print(
            f"TRIM-Agg: PPO for {settings.agg_timesteps} timesteps per λ (λ = "
            f"{', '.join(f'{x:g}' for x in settings.agg_lambdas)}); "
            "raise --agg-timesteps for converged policies."
        )
    try:
        if not cross:
            params = _sim_params(simulator, processbench, split)
            run_evaluation(
                out,
                settings,
                params,
                params,
                title=f"{params.split} (simulated)",
                obs_loader=_obs_loader(observation_model),
                console=console,
            )
        else:
            train = _sim_params(simulator, processbench, train_split)
            tables = []
            for name in _split_list(eval_split):
                ev = _sim_params(simulator, processbench, name)
                title = f"trained on {train.split}, evaluated on {ev.split} (simulated)"
                run_evaluation(
                    out / ev.split,
                    settings,
                    ev,
                    train,
                    title=title,
                    obs_loader=_obs_loader(observation_model),
                    console=console,
                    extra_card={"cross_dataset": {"train_split": train.split, "eval_split": ev.split}},
                    agg_dir=out / f"agg-trained-on-{train.split}",
                )
                tables.append((out / ev.split / "table.md").read_text())
            out.mkdir(parents=True, exist_ok=True)
            (out / "table.md").write_text(
                f"## Cross-dataset generalisation: routers fitted on {train.split}\n\n" + "\n".join(tables)
            )
    except TrimPomdpError as exc:
        raise click.ClickException(str(exc)) from None
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"wrote {out} in {time.perf_counter() - t0:.0f} s (records.csv, summary.json, table.md, curves.*)"
    )
