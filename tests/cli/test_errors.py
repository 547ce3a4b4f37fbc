"""What every command shares on failure: one-line errors, no hidden alias in messages, no empty output folder."""

from __future__ import annotations

from pathlib import Path

import click
from click.testing import CliRunner

from trim_pomdp.cli import LazyGroup, main
from trim_pomdp.exceptions import InvalidParameterError


def test_hidden_aliases_do_not_appear_in_error_messages(tmp_path):
    result = CliRunner().invoke(
        main, ["solve", "--obs", str(tmp_path / "nowhere"), "--out", str(tmp_path / "p")]
    )
    assert result.exit_code == 2 and "'--obs'" in result.output and "--observation-model" not in result.output


def test_a_failed_command_leaves_no_empty_output_folder(tmp_path, monkeypatch):
    @click.command("make-and-fail")
    @click.option("--out", type=click.Path())
    @click.option("--fail/--no-fail", default=True)
    def make_and_fail(out, fail):
        Path(out).mkdir(parents=True)
        if fail:
            raise InvalidParameterError("something was wrong")

    monkeypatch.setattr(LazyGroup, "get_command", lambda self, ctx, name: make_and_fail)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(main, ["make-and-fail", "--out", "fresh"])
    assert result.exit_code == 1 and result.output.strip() == "Error: something was wrong"
    assert not (tmp_path / "fresh").exists()
    (tmp_path / "kept").mkdir()  # an existing folder is the user's: never removed
    result = runner.invoke(main, ["make-and-fail", "--out=kept/sub"])
    assert result.exit_code == 1 and not (tmp_path / "kept" / "sub").exists() and (tmp_path / "kept").is_dir()
    result = runner.invoke(main, ["make-and-fail", "--out", "ok", "--no-fail"])
    assert result.exit_code == 0 and (tmp_path / "ok").is_dir()
