"""The ``trim-pomdp`` command line.

Each sub-command lives in its own module of this package and is imported only when it runs, so
``trim-pomdp --help`` stays fast and a command's heavy dependencies load only for that command. The group gives
every command the same help width, a "did you mean" hint for a mistyped command name, and one-line
``Error: ...`` messages for the package's own errors (:func:`trim_pomdp.cli._common.click_errors`).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import click

from trim_pomdp._version import __version__
from trim_pomdp.cli._common import CONTEXT_SETTINGS, click_errors
from trim_pomdp.registry import did_you_mean

__all__ = ["COMMANDS", "main"]

#: command name -> (module in trim_pomdp.cli, one-line help shown by ``trim-pomdp --help``)
COMMANDS: dict[str, tuple[str, str]] = {
    "fit-observations": (
        "fit_observations",
        "Fit class-conditional PRM-score densities on scored solutions.",
    ),
    "evaluate-observations": (
        "evaluate_observations",
        "Score an observation model's belief on scored data it was not fitted on.",
    ),
    "score-processbench": ("score_processbench", "Score ProcessBench steps with a PRM (GPU recommended)."),
    "solve": ("solve", "Build and solve the TRIM-POMDP for one or more λ into policies."),
    "solve-file": ("solve_file", "Solve a .pomdp/.pomdpx file with the point-based solver."),
    "setup-julia": ("setup_julia", "Resolve and precompile the Julia environment of the SARSOP backend."),
    "train-agg": ("train_agg", "Train the TRIM-Agg PPO router for one λ."),
    "metrics": ("metrics", "Compute PGR, CPT and ΔIBC from per-query records."),
    "evaluate": ("evaluate", "Sweep routers on the simulator or on records; write tables and plots."),
    "demo": ("demo", "Fit, solve, evaluate and plot on the shipped defaults."),
    "run": ("run", "Run TRIM end to end with real models (vLLM/OpenAI, Anthropic, PRM)."),
    "merge": ("merge", "Merge the records of sharded `trim-pomdp run` outputs."),
    "serve": ("serve", "Serve routers behind an OpenAI-compatible endpoint (FastAPI/uvicorn)."),
    "calibrate": (
        "calibrate",
        "Pick the λ or knob that meets a strong-token budget, with its interval.",
    ),
}


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported on first use (see :data:`COMMANDS`)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module_name, _ = COMMANDS[name]
        module = importlib.import_module(f"{__name__}.{module_name}")
        return module.command

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            name = args[0] if args else ""
            hint = did_you_mean(name, COMMANDS) if name not in COMMANDS else ""
            if not hint:
                raise
            raise click.UsageError(f"No such command {name!r}{hint}.", exc.ctx) from None

    def invoke(self, ctx: click.Context) -> object:
        args = [*getattr(ctx, "_protected_args", []), *ctx.args]
        fresh = [p for p in _out_dirs(args) if not p.exists()]
        try:
            with click_errors():
                return super().invoke(ctx)
        except BaseException as exc:
            if not (isinstance(exc, SystemExit) and exc.code in (0, None)):
                for p in fresh:  # a failed command leaves no empty output folder behind
                    if p.is_dir() and not any(p.iterdir()):
                        p.rmdir()
            raise

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _out_dirs(args: list[str]) -> list[Path]:
    """The values of ``--out`` in a command line (``--out DIR`` or ``--out=DIR``)."""
    out = []
    for i, a in enumerate(args):
        if a == "--out" and i + 1 < len(args):
            out.append(Path(args[i + 1]))
        elif a.startswith("--out="):
            out.append(Path(a.split("=", 1)[1]))
    return out


@click.group(cls=LazyGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, prog_name="trim-pomdp")
def main() -> None:
    """trim-pomdp: step-level routing between a cheap and an expensive LLM (TRIM) with a POMDP planner."""


if __name__ == "__main__":  # pragma: no cover
    main()
