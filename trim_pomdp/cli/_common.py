"""What the ``trim-pomdp`` commands share: option spellings, hidden aliases, help layout and one-line errors.

Every command is a thin wrapper around one library call. The options that several commands take are declared
once here, so that one concept has one spelling everywhere (``--obs``, ``--lambda``, ``--data-dir``,
``--time-limit``, ``--seed``, ``--out``, ``--device``); the spellings of earlier versions stay accepted as hidden
aliases.

The command group (:mod:`trim_pomdp.cli`) uses :data:`CONTEXT_SETTINGS`, so every help text has the same width
on every machine, and runs every command inside :func:`click_errors`, so the package's own errors end as one
``Error: ...`` line instead of a traceback.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from trim_pomdp.exceptions import TrimPomdpError

__all__ = [
    "CONTEXT_SETTINGS",
    "HELP_WIDTH",
    "SECONDS",
    "AliasOption",
    "FiniteFloat",
    "cli_errors",
    "click_errors",
    "data_dir_option",
    "device_option",
    "lambda_option",
    "obs_option",
    "option",
    "out_option",
    "seed_option",
    "time_limit_option",
]

F = TypeVar("F", bound=Callable[..., Any])

#: Columns of every help text, whatever the terminal, so that help reads the same on every machine.
HELP_WIDTH = 100

#: Context settings of the ``trim-pomdp`` group (its sub-commands inherit them).
CONTEXT_SETTINGS: dict[str, Any] = {
    "help_option_names": ["-h", "--help"],
    "max_content_width": HELP_WIDTH,
    "terminal_width": HELP_WIDTH,
}


class AliasOption(click.Option):
    """A click option whose ``hidden_aliases`` are accepted on the command line but not shown in ``--help``."""

    def __init__(self, *args: Any, hidden_aliases: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hidden_aliases = tuple(hidden_aliases)

    def get_error_hint(self, ctx: click.Context | None) -> str:
        shown = [o for o in self.opts if o not in self.hidden_aliases]
        return " / ".join(f"'{o}'" for o in shown) or super().get_error_hint(ctx)

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        saved = self.opts, self.secondary_opts
        self.opts = [o for o in self.opts if o not in self.hidden_aliases]
        self.secondary_opts = [o for o in self.secondary_opts if o not in self.hidden_aliases]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts, self.secondary_opts = saved


def option(*param_decls: str, aliases: Sequence[str] = (), **kwargs: Any) -> Callable[[F], F]:
    """``click.option`` with hidden ``aliases`` (old spellings that keep working but are not advertised)."""
    names = [d for d in param_decls if d.startswith("-")]
    dest = [d for d in param_decls if not d.startswith("-")]
    return click.option(*names, *aliases, *dest, cls=AliasOption, hidden_aliases=tuple(aliases), **kwargs)


@contextlib.contextmanager
def click_errors() -> Iterator[None]:
    """Turn the package's own errors (and missing files) into one-line ``Error: ...`` messages, exit code 1."""
    try:
        yield
    except (TrimPomdpError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None


def cli_errors(fn: F) -> F:
    """:func:`click_errors` around one function (the ``trim-pomdp`` group already applies it to every command)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with click_errors():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def obs_option(
    help: str = "Observation model: a directory or .npz from `trim-pomdp fit-observations`.",
) -> Callable[[F], F]:
    """``--obs PATH`` (alias ``--observation-model``), default ``None`` (the shipped model)."""
    return option(
        "--obs",
        "obs_path",
        aliases=("--observation-model",),
        type=click.Path(exists=True, path_type=Path),
        default=None,
        help=help + " Default: the shipped one.",
    )


def data_dir_option(help: str, aliases: Sequence[str] = ("--processbench",)) -> Callable[[F], F]:
    """``--data-dir DIR`` (alias ``--processbench``): a local folder instead of the Hugging Face hub."""
    return option(
        "--data-dir",
        "data_dir",
        aliases=aliases,
        type=click.Path(exists=True, file_okay=False, path_type=Path),
        default=None,
        help=help,
    )


def device_option(
    help: str = "Device of local models, e.g. cuda, cuda:1, cpu (default: cuda if available).",
) -> Callable[[F], F]:
    """``--device DEVICE``, default ``None`` (CUDA when available)."""
    return click.option("--device", default=None, metavar="DEVICE", help=help)


def lambda_option(help: str, **kwargs: Any) -> Callable[[F], F]:
    """``--lambda SPEC`` (alias ``--lambdas``): one value, a comma list, or ``START:STOP:N`` (log-spaced)."""
    return option("--lambda", "lambda_spec", aliases=("--lambdas",), help=help, **kwargs)


class FiniteFloat(click.FloatRange):
    """A float in a range that is also finite (``nan`` and ``inf`` pass ``click.FloatRange``'s comparisons)."""

    name = "finite float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        rv = super().convert(value, param, ctx)
        if rv is not None and not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return rv


#: Seconds, a finite number > 0.
SECONDS = FiniteFloat(min=0, min_open=True)


def time_limit_option(
    default: float | None,
    help: str = "Wall-clock limit of a solve, in seconds.",
    aliases: Sequence[str] = (),
) -> Callable[[F], F]:
    """``--time-limit SECONDS`` (finite, > 0)."""
    return option(
        "--time-limit",
        "time_limit",
        aliases=aliases,
        type=SECONDS,
        metavar="SECONDS",
        default=default,
        show_default=default is not None,
        help=help,
    )


def seed_option(default: int = 0, help: str = "Random seed.") -> Callable[[F], F]:
    """``--seed N``."""
    return click.option("--seed", type=int, default=default, show_default=True, help=help)


def out_option(help: str, required: bool = True) -> Callable[[F], F]:
    """``--out DIR``: where the command writes its results."""
    return click.option(
        "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=required, help=help
    )
