"""``trim-pomdp solve --lambda 5e-4 --out DIR``: build and solve the TRIM-POMDP into policies.

One λ writes ``DIR/policy.npz`` + ``DIR/policy.json``; a list (``1e-4,5e-4``) or log range (``1e-4:1e-3:20``)
writes ``DIR/lambda_<λ>/policy.*`` per value plus ``DIR/summary.json``. A sweep resumes: a λ whose policy
exists with the same configuration is not solved again.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
from pathlib import Path
from typing import Any

import click
import numpy as np

from trim_pomdp.exceptions import TrimPomdpError

__all__ = ["command", "parse_lambdas"]


def parse_lambdas(text: str) -> list[float]:
    """``"5e-4"`` → [5e-4]; ``"1e-4,5e-4"`` → list; ``"1e-4:1e-3:20"`` → 20 log-spaced values (ends
    included).
    """
    text = str(text).strip()
    try:
        if ":" in text:
            parts = text.split(":")
            if len(parts) != 3:
                raise ValueError
            lo, hi, n = float(parts[0]), float(parts[1]), int(parts[2])
            if n < 1:
                raise click.BadParameter(f"the count in {text!r} must be >= 1", param_hint="--lambda")
            if lo <= 0 or hi <= 0:
                raise click.BadParameter(
                    f"a log range needs positive ends, got {text!r}; list 0 explicitly (e.g. '0,1e-4')",
                    param_hint="--lambda",
                )
            vals = [lo] if n == 1 else list(np.geomspace(lo, hi, n))
        else:
            vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a λ value, a comma list (1e-4,5e-4) or a log range LO:HI:N (1e-4:1e-3:20)",
            param_hint="--lambda",
        ) from None
    if not vals:
        raise click.BadParameter("give at least one λ value", param_hint="--lambda")
    for v in vals:
        if not math.isfinite(v) or v < 0:
            raise click.BadParameter(
                f"λ must be finite and >= 0 (price per strong token), got {v}", param_hint="--lambda"
            )
    return list(dict.fromkeys(float(v) for v in vals))  # duplicates would share an output directory


def _load_obs(path: Path | None):
    from trim_pomdp.observation_models.observation import ObservationModel, load_shipped_observation_model

    try:
        return load_shipped_observation_model() if path is None else ObservationModel.load(path)
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    except TrimPomdpError as exc:
        raise click.ClickException(f"cannot load the observation model {path}: {exc}") from None


def _make_solver(
    name: str, precision: float, time_limit: float | None, mode: str, sarsop_backend: str = "sarsop.jl"
):
    if name == "native":
        from trim_pomdp.solvers.finite_horizon import FiniteHorizonSolver

        return FiniteHorizonSolver(precision=precision, time_limit=time_limit, mode=mode)
    module = {"pointbased": "trim_pomdp.solvers.pointbased", "sarsop": "trim_pomdp.solvers.sarsop"}[name]
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise click.ClickException(
            f"the {name} solver is not available in this installation ({module}: {exc}); use --solver native"
        ) from None
    if name == "pointbased":
        return mod.PointBasedSolver(precision=precision, time_limit=time_limit)
    # keep_alive: one Julia worker serves every λ of a sweep (closed after the sweep)
    return mod.SarsopSolver(
        backend=sarsop_backend, timeout=time_limit or 60.0, precision=precision, keep_alive=True
    )


def _config_hash(params_dict: dict, obs_model: Any, solver: str, precision: float, mode: str) -> str:
    h = hashlib.sha256()
    d = dict(params_dict)
    d.pop("card", None)
    d.pop("lam", None)
    h.update(json.dumps(d, sort_keys=True).encode())
    h.update(np.ascontiguousarray(obs_model.bin_probs(False)).tobytes())
    h.update(np.ascontiguousarray(obs_model.bin_probs(True)).tobytes())
    h.update(f"{solver}|{precision}|{mode}".encode())
    return h.hexdigest()[:16]


def _lam_dir(lam: float) -> str:
    return f"lambda_{lam:.6g}"


@click.command("solve")
@click.option(
    "--lambda",
    "lam",
    default=None,
    metavar="Λ",
    help="Price per strong token: a value (5e-4), a list (1e-4,5e-4) or a log range LO:HI:N. "
    "Default: the parameters' λ (5e-4 in the shipped defaults).",
)
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Output directory for policy.npz/policy.json (one sub-directory per λ for several).",
)
@click.option(
    "--obs",
    "obs",
    default=None,
    type=click.Path(exists=True, path_type=Path),
    help="Observation model (observation_model.json/.npz or its folder). Default: the shipped one.",
)
@click.option(
    "--params",
    "params_path",
    default=None,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="TRIM parameters JSON (TrimParams.to_json). Default: the shipped defaults.",
)
@click.option(
    "--weak-generator", default=None, help="Estimate parameters from ProcessBench for this weak generator."
)
@click.option(
    "--strong-generator", default=None, help="... and this strong generator (both required together)."
)
@click.option(
    "--processbench",
    "processbench",
    default=None,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder of ProcessBench <split>.json files for the estimation (default: the hub dataset).",
)
@click.option(
    "--tokenizer",
    default=None,
    help="Hugging Face tokenizer for step lengths in the estimation (default: the ceil(len/4) proxy).",
)
@click.option("--p-w", type=float, default=None, help="Override p_w, the weak model's next-step accuracy.")
@click.option("--p-s", type=float, default=None, help="Override p_s, the strong model's next-step accuracy.")
@click.option("--horizon", type=int, default=None, help="Override the horizon H (number of steps).")
@click.option(
    "--strong-weak-ratio", type=float, default=None, help="Override the strong/weak step-length ratio."
)
@click.option(
    "--precision", type=float, default=1e-3, show_default=True, help="Target gap of the bounds at b0."
)
@click.option("--time-limit", type=float, default=None, help="Seconds per solve (bounds stay certified).")
@click.option(
    "--mode",
    type=click.Choice(["auto", "exact", "grid"]),
    default="auto",
    show_default=True,
    help="Native solver mode.",
)
@click.option(
    "--solver", type=click.Choice(["native", "pointbased", "sarsop"]), default="native", show_default=True
)
@click.option(
    "--sarsop-backend",
    type=click.Choice(["sarsop.jl", "native"]),
    default="sarsop.jl",
    show_default=True,
    help="With --solver sarsop: APPL's SARSOP through SARSOP.jl (as in the paper) or NativeSARSOP.jl.",
)
@click.option(
    "--mc-episodes",
    type=int,
    default=None,
    help="Monte Carlo episodes under the model for accuracy/strong tokens per λ (0: skip). "
    "Default 100000 for one λ, 20000 per λ in a sweep.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--plot", is_flag=True, help="Also write regions.png (regenerate regions per t) per λ (needs matplotlib)."
)
@click.option(
    "--regions/--no-regions", default=True, show_default=True, help="Print the regenerate-region table."
)
def command(
    lam,
    out,
    obs,
    params_path,
    weak_generator,
    strong_generator,
    processbench,
    tokenizer,
    p_w,
    p_s,
    horizon,
    strong_weak_ratio,
    precision,
    time_limit,
    mode,
    solver,
    sarsop_backend,
    mc_episodes,
    seed,
    plot,
    regions,
):
    """Build the TRIM-POMDP and solve it for one or more λ; print bounds, accuracy and strong tokens."""
    from rich.console import Console
    from rich.table import Table

    from trim_pomdp.pomdp import (
        ModelProcess,
        TrimParams,
        TrimPOMDP,
        estimate_params,
        format_region_table,
        load_default_params,
        regenerate_region_table,
        solve_trim,
    )

    console = Console(width=max(Console().width, 110))
    if precision is not None and not precision > 0 and mode != "exact":
        raise click.BadParameter(f"must be > 0, got {precision}", param_hint="--precision")
    if time_limit is not None and not time_limit > 0:
        raise click.BadParameter(f"must be > 0 seconds, got {time_limit}", param_hint="--time-limit")
    if mc_episodes is not None and (mc_episodes < 0 or mc_episodes == 1):
        raise click.BadParameter("must be 0 (skip) or >= 2", param_hint="--mc-episodes")
    for name, v in (("--p-w", p_w), ("--p-s", p_s)):
        if v is not None and not 0.0 <= v <= 1.0:
            raise click.BadParameter(f"is a probability and must lie in [0, 1], got {v}", param_hint=name)
    if horizon is not None and horizon < 1:
        raise click.BadParameter(f"the horizon H must be >= 1, got {horizon}", param_hint="--horizon")
    if (weak_generator is None) != (strong_generator is None):
        raise click.UsageError("give both --weak-generator and --strong-generator (or neither)")
    if params_path is not None and weak_generator is not None:
        raise click.UsageError("--params and --weak/--strong-generator are alternatives; give one")

    try:
        if params_path is not None:
            params = TrimParams.from_json(params_path)
        elif weak_generator is not None:
            from trim_pomdp.datasets.processbench import SPLITS, load_processbench

            splits = (
                SPLITS
                if processbench is None
                else [
                    s
                    for s in SPLITS
                    if (processbench / f"{s}.json").exists() or (processbench / f"{s}.jsonl").exists()
                ]
            )
            if not splits:
                raise click.ClickException(f"no ProcessBench <split>.json files in {processbench}")
            items = load_processbench(splits, data_dir=processbench)
            tok = None
            if tokenizer:
                from trim_pomdp._internal.optional import require

                tok = require("transformers", "hf", "--tokenizer").AutoTokenizer.from_pretrained(tokenizer)
            params = estimate_params(items, weak_generator, strong_generator, tok)
        else:
            params = load_default_params()
        changes = {
            k: v
            for k, v in (
                ("p_w", p_w),
                ("p_s", p_s),
                ("horizon", horizon),
                ("strong_weak_ratio", strong_weak_ratio),
            )
            if v is not None
        }
        if changes:
            params = params.replace(**changes)
        lams = parse_lambdas(lam) if lam is not None else [params.lam]
        obs_model = _load_obs(obs)
        base = TrimPOMDP(params, obs_model)
    except TrimPomdpError as exc:
        raise click.ClickException(str(exc)) from None

    cfg = _config_hash(params.to_dict(), obs_model, solver, precision, mode)
    single = len(lams) == 1
    if mc_episodes is None:
        mc_episodes = 100_000 if single else 20_000
    out.mkdir(parents=True, exist_ok=True)
    console.print(
        f"TRIM-POMDP: p_w={params.p_w:.4f} p_s={params.p_s:.4f} H={params.horizon} "
        f"K={params.n_buckets} bins={int(obs_model.n_bins)}×{int(obs_model.n_bins)} solver={solver}"
    )
    rows: list[dict[str, Any]] = []
    from rich.progress import Progress

    solver_obj = _make_solver(solver, precision, time_limit, mode, sarsop_backend)
    if hasattr(solver_obj, "close"):  # a kept-alive SARSOP worker ends with the command, error or not
        click.get_current_context().call_on_close(solver_obj.close)
    with Progress(console=console, transient=True, disable=single) as progress:
        task = progress.add_task("solving", total=len(lams))
        for lam_v in lams:
            target = out if single else out / _lam_dir(lam_v)
            card_path = target / "policy.json"
            if not single and card_path.exists():
                try:
                    old = json.loads(card_path.read_text())
                    if old.get("config_hash") == cfg and old.get("lambda") == lam_v:
                        rows.append(old["summary"])
                        progress.advance(task)
                        continue
                except (json.JSONDecodeError, KeyError):
                    pass
            tp = base.with_params(lam=lam_v)
            try:
                policy = solve_trim(tp, solver_obj)
            except TrimPomdpError as exc:
                raise click.ClickException(f"solving λ={lam_v:g} failed: {exc}") from None
            info = policy.info
            row: dict[str, Any] = {
                "lambda": lam_v,
                "lower_bound": info.lower_bound,
                "upper_bound": info.upper_bound,
                "gap": info.gap,
                "solve_seconds": info.seconds,
                "converged": info.converged,
                "dir": str(target),
            }
            if mc_episodes:
                from trim_pomdp.routers.rollout import rollout

                mc = rollout(policy, ModelProcess(tp), n=mc_episodes, seed=seed)
                row.update(
                    {
                        "accuracy": mc.accuracy,
                        "accuracy_se": mc.accuracy_se,
                        "strong_tokens": mc.strong_tokens,
                        "strong_tokens_se": mc.strong_tokens_se,
                        "mc_return": mc.ret,
                        "mc_return_se": mc.ret_se,
                        "regenerations": mc.regenerations,
                        "mc_episodes": mc_episodes,
                    }
                )
            policy.card.update(
                {
                    "config_hash": cfg,
                    "summary": row,
                    "mc": {
                        k: row.get(k)
                        for k in (
                            "accuracy",
                            "accuracy_se",
                            "strong_tokens",
                            "strong_tokens_se",
                            "mc_return",
                            "mc_return_se",
                            "mc_episodes",
                        )
                    },
                }
            )
            policy.save(target)
            if plot:
                try:
                    from trim_pomdp.pomdp.regions import plot_regenerate_regions

                    plot_regenerate_regions(policy, path=target / "regions.png", bucket=params.n_buckets // 2)
                except TrimPomdpError as exc:
                    raise click.ClickException(str(exc)) from None
            if single:
                console.print(f"λ = {lam_v:g}: solved in {info.seconds:.3f} s ({info.iterations} passes)")
                console.print(
                    f"V(b0) ∈ [{info.lower_bound:.6f}, {info.upper_bound:.6f}] (gap {info.gap:.2e}, "
                    f"{'converged' if info.converged else 'NOT converged'})"
                )
                if mc_episodes:
                    console.print(
                        f"Monte Carlo under the model ({mc_episodes} episodes): accuracy "
                        f"{row['accuracy']:.4f} ± {row['accuracy_se']:.4f}, strong tokens "
                        f"{row['strong_tokens']:.2f} ± {row['strong_tokens_se']:.2f}, return "
                        f"{row['mc_return']:.4f} ± {row['mc_return_se']:.4f}"
                    )
                if regions:
                    console.print(
                        "Regenerate region (non-final steps): smallest b(S2) on the S0–S2 edge from which "
                        "`regenerate` is chosen, and % of the simplex"
                    )
                    console.print(
                        format_region_table(regenerate_region_table(policy, resolution=30)),
                        highlight=False,
                        markup=False,
                    )
                console.print(f"wrote {target / 'policy.npz'} and {target / 'policy.json'}")
            rows.append(row)
            progress.advance(task)
    if not single:
        table = Table(title=f"TRIM-POMDP policies ({len(rows)} λ values)")
        for col in ("λ", "lower", "upper", "gap", "seconds", "accuracy", "strong tokens"):
            table.add_column(col, justify="right")
        for r in rows:
            table.add_row(
                f"{r['lambda']:.4g}",
                f"{r['lower_bound']:.5f}",
                f"{r['upper_bound']:.5f}",
                f"{r['gap']:.1e}",
                f"{r['solve_seconds']:.3f}",
                f"{r['accuracy']:.4f}" if "accuracy" in r else "-",
                f"{r['strong_tokens']:.1f}" if "strong_tokens" in r else "-",
            )
        console.print(table)
        summary = {
            "params": params.to_dict(),
            "solver": solver,
            "precision": precision,
            "config_hash": cfg,
            "policies": rows,
        }
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
        console.print(f"wrote {len(rows)} policies and {out / 'summary.json'}")
