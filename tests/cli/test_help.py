"""Golden ``--help`` texts of ``trim-pomdp`` and of every command, and the hidden aliases of old spellings.

A change to an option, a default or a help line shows up here as a diff against ``tests/cli/golden/<cmd>.txt``.
After an intended change, regenerate the snapshots and review the diff::

    TRIM_POMDP_UPDATE_GOLDEN=1 pytest tests/cli
    git diff tests/cli/golden
"""

from __future__ import annotations

import os
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from trim_pomdp.cli import COMMANDS, main

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("TRIM_POMDP_UPDATE_GOLDEN") == "1"
TOP = "trim-pomdp"  # the snapshot of `trim-pomdp --help`


def _help(name: str, columns: int = 80) -> str:
    args = [] if name == TOP else [name]
    result = CliRunner().invoke(
        main, [*args, "--help"], prog_name="trim-pomdp", env={"COLUMNS": str(columns)}
    )
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("name", [TOP, *COMMANDS])
def test_help_matches_golden(name):
    text = _help(name)
    path = GOLDEN / f"{name}.txt"
    if UPDATE:
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"no snapshot {path}: run TRIM_POMDP_UPDATE_GOLDEN=1 pytest tests/cli"
    expected = path.read_text(encoding="utf-8")
    assert text == expected, (
        f"`trim-pomdp {name} --help` changed: TRIM_POMDP_UPDATE_GOLDEN=1 pytest tests/cli"
    )


def test_no_snapshot_without_a_command():
    assert sorted(p.stem for p in GOLDEN.glob("*.txt")) == sorted([TOP, *COMMANDS])


@pytest.mark.parametrize("name", [TOP, "run"])
def test_help_width_does_not_depend_on_the_terminal(name):
    assert _help(name, columns=60) == _help(name, columns=250)


def test_mistyped_command_suggests_the_closest():
    result = CliRunner().invoke(main, ["sovle"], prog_name="trim-pomdp")
    assert result.exit_code == 2 and "did you mean 'solve'?" in result.output


def test_top_level_help_lists_each_command_with_its_line():
    text = _help(TOP)
    for name, (_, line) in COMMANDS.items():
        assert f"{name} " in text and line in " ".join(text.split()), name


# (command, old spelling, canonical spelling): the old spelling keeps working as a hidden alias of the canonical
# option, so scripts written for earlier versions keep running.
ALIASES = [
    ("solve", "--observation-model", "--obs"),
    ("solve", "--processbench", "--data-dir"),
    ("train-agg", "--observation-model", "--obs"),
    ("evaluate", "--observation-model", "--obs"),
    ("evaluate", "--processbench", "--data-dir"),
    ("evaluate", "--lambdas", "--lambda"),
    ("demo", "--lambdas", "--lambda"),
    ("fit-observations", "--processbench", "--data-dir"),
    ("score-processbench", "--processbench", "--data-dir"),
]
ROWS = [pytest.param(*row, id=f"{row[0]} {row[1]}") for row in ALIASES]


def _option(command: str, spelling: str) -> click.Option | None:
    cmd = main.get_command(click.Context(main), command)
    assert cmd is not None, command
    for p in cmd.params:
        if isinstance(p, click.Option) and spelling in (*p.opts, *p.secondary_opts):
            return p
    return None


@pytest.mark.parametrize(("command", "alias", "canonical"), ROWS)
def test_canonical_spelling_exists(command, alias, canonical):
    assert _option(command, canonical) is not None, f"`trim-pomdp {command}` has no {canonical}"


@pytest.mark.parametrize(("command", "alias", "canonical"), ROWS)
def test_old_spelling_is_a_hidden_alias(command, alias, canonical):
    option = _option(command, canonical)
    assert option is not None, f"`trim-pomdp {command}` has no {canonical}"
    assert _option(command, alias) is option, (
        f"{alias} is not an alias of {canonical} in `trim-pomdp {command}`"
    )
    shown = _help(command)
    assert canonical in shown and alias not in shown, f"{alias} is shown in `trim-pomdp {command} --help`"
    # the alias parses: an unknown option fails before --help is handled
    result = CliRunner().invoke(main, [command, alias, "x", "--help"], prog_name="trim-pomdp")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("name", [TOP, *COMMANDS])
def test_help_names_no_workplace_path(name):
    assert "../shared" not in _help(name), (
        "say what the folder holds instead (e.g. ProcessBench's <split>.json files)"
    )


def test_old_solver_names_still_solve(tmp_path):
    """``--solver native`` (the finite-horizon solver's old name) keeps working and is not advertised."""
    assert "[finite-horizon|pointbased|sarsop]" in _help(
        "solve"
    )  # the old name is not among the choices shown
    result = CliRunner().invoke(
        main,
        [
            "solve",
            "--solver",
            "native",
            "--lambda",
            "5e-4",
            "--mc-episodes",
            "0",
            "--out",
            str(tmp_path / "p"),
        ],
        prog_name="trim-pomdp",
    )
    assert result.exit_code == 0, result.output
    assert '"solver": "finite-horizon"' in (tmp_path / "p" / "policy.json").read_text()
