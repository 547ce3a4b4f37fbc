"""``trim-pomdp train-agg``: train the TRIM-Agg PPO router for one λ."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from trim_pomdp.exceptions import TrimPomdpError


def _model(params_path: str | None, obs_path: str | None, lam: float):
    from trim_pomdp.observation_models.observation import ObservationModel, load_shipped_observation_model
    from trim_pomdp.pomdp import build_trim_pomdp, load_default_params

    if params_path:
        from trim_pomdp.pomdp import TrimParams

        params = TrimParams.from_json(Path(params_path).read_text())
    else:
        params = load_default_params()
    params = params.replace(lam=lam)
    obs = ObservationModel.load(obs_path) if obs_path else load_shipped_observation_model()
    return build_trim_pomdp(params, obs)


def _source_factory(source: str, params_path: str | None, obs_path: str | None, lam: float, split=None):
    """(factory, card, trim_pomdp or None)."""
    if source == "model":
        from trim_pomdp.pomdp import ModelProcess

        trim = _model(params_path, obs_path, lam)

        def factory():
            return ModelProcess(trim)

        card = {
            "type": "ModelProcess",
            "params": params_path or "default",
            "observation_model": obs_path or "shipped",
        }
        return factory, card, trim
    from trim_pomdp.evaluation import Simulator, load_default_simulator_params

    sim_params = load_default_simulator_params(split)

    def factory():
        return Simulator(sim_params)

    card = {"type": "Simulator", "split": sim_params.split, "simulated_prm_scores": True}
    return factory, card, None


@click.command("train-agg")
@click.option(
    "--lambda", "lam", type=float, required=True, help="Price of one M_s output token (in units of R)."
)
@click.option(
    "--out", "out", type=click.Path(file_okay=False), required=True, help="Directory for the router."
)
@click.option(
    "--source",
    type=click.Choice(["model", "simulator"]),
    default="model",
    show_default=True,
    help="Episode source: the TRIM-POMDP's own generative process, or the evaluation simulator.",
)
@click.option(
    "--timesteps",
    type=click.IntRange(min=1),
    default=300_000,
    show_default=True,
    help="PPO environment steps.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--n-envs", type=click.IntRange(min=1), default=8, show_default=True, help="Environments per PPO rollout."
)
@click.option(
    "--params",
    "params_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="TrimParams JSON for --source model (default: the shipped defaults).",
)
@click.option(
    "--observation-model",
    "--obs",
    "obs_path",
    type=click.Path(exists=True),
    default=None,
    help="Observation model (.npz or directory) for --source model (default: the shipped one).",
)
@click.option(
    "--eval-episodes",
    type=click.IntRange(min=0),
    default=10_000,
    show_default=True,
    help="Episodes for the evaluation after training (0: skip).",
)
@click.option(
    "--compare-pomdp/--no-compare-pomdp",
    default=True,
    show_default=True,
    help="With --source model, also evaluate the exact POMDP policy and report the gap.",
)
@click.option(
    "--split",
    type=click.Choice(["gsm8k", "math", "olympiadbench", "omnimath"]),
    default=None,
    help="ProcessBench split whose statistics drive --source simulator (default: the simulator's own).",
)
@click.option("--progress/--no-progress", default=True, show_default=True)
def command(
    lam,
    out,
    source,
    timesteps,
    seed,
    n_envs,
    params_path,
    obs_path,
    eval_episodes,
    compare_pomdp,
    split,
    progress,
):
    """Train TRIM-Agg (PPO, the paper's Table 3) for one λ and save it to OUT.

    Writes OUT/agg_policy.npz, OUT/agg.json, OUT/ppo.zip and OUT/evaluation.json. Training checkpoints to
    OUT/ppo.zip + OUT/checkpoint.json as it goes; running the same command again resumes from there.
    """
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True)
    if lam < 0:
        raise click.BadParameter("must be >= 0", param_hint="--lambda")
    try:
        from trim_pomdp.routers.rl.agg import train_agg
        from trim_pomdp.routers.rollout import rollout

        factory, card, trim = _source_factory(source, params_path, obs_path, lam, split)
        console.print(
            f"training TRIM-Agg for λ={lam:g} on {card['type']} "
            f"({timesteps} steps, {n_envs} envs, seed {seed})"
        )
        out_dir = Path(out)
        ckpt = out_dir / "checkpoint.json"
        if ckpt.exists():
            try:
                done = json.loads(ckpt.read_text()).get("num_timesteps")
            except json.JSONDecodeError:
                done = None
            console.print(f"found a checkpoint in {out_dir} ({done} steps); resuming if it matches this run")
        router = train_agg(
            factory,
            lam,
            timesteps=timesteps,
            seed=seed,
            n_envs=n_envs,
            progress_bar=progress,
            source_card=card,
            checkpoint_dir=out_dir,
        )
        router.save(out_dir)
        console.print(f"saved the router to {out_dir} ({router.card['train_seconds']:.0f} s of training)")
        results: dict[str, Any] = {"lam": lam, "source": card, "train_seconds": router.card["train_seconds"]}
        if eval_episodes:
            reward = float(getattr(getattr(trim, "params", None), "reward", 1.0))
            res = rollout(router, factory(), eval_episodes, lam=lam, reward=reward, seed=seed + 1)
            results["agg"] = res.to_dict()
            rows = [("TRIM-Agg", res)]
            if source == "model" and compare_pomdp:
                from trim_pomdp.pomdp import solve_trim
                from trim_pomdp.routers.belief import BeliefRouter

                t0 = time.perf_counter()
                policy = solve_trim(trim)
                results["pomdp_solve_seconds"] = time.perf_counter() - t0
                pres = rollout(
                    BeliefRouter(policy, trim, gate=False),
                    factory(),
                    eval_episodes,
                    lam=lam,
                    reward=reward,
                    seed=seed + 1,
                )
                results["pomdp"] = pres.to_dict()
                results["relative_gap"] = (pres.ret - res.ret) / abs(pres.ret) if pres.ret else None
                rows.append(("TRIM-POMDP (exact)", pres))
            table = Table(title=f"{eval_episodes} evaluation episodes ({card['type']}, λ={lam:g})")
            for col in ("router", "return", "accuracy", "M_s tokens", "regenerate rate"):
                table.add_column(col)
            for name, r in rows:
                table.add_row(
                    name,
                    f"{r.ret:.4f} ± {r.ret_se:.4f}",
                    f"{r.accuracy:.4f}",
                    f"{r.strong_tokens:.1f}",
                    f"{r.regenerate_rate:.3f}",
                )
            console.print(table)
            if "relative_gap" in results and results["relative_gap"] is not None:
                console.print(f"return gap to the exact POMDP policy: {100 * results['relative_gap']:.2f}%")
        (out_dir / "evaluation.json").write_text(json.dumps(results, indent=2) + "\n")
    except TrimPomdpError as exc:
        raise click.ClickException(str(exc)) from exc
