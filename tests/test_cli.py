"""The command line's version flag and its one-line errors for mistakes a user can make."""

from __future__ import annotations

from importlib.metadata import version

import pytest
from typer.testing import CliRunner

from empcn.cli import app


def test_version_prints_the_installed_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"empcn {version('empcn')}"


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["train", "--cache", "none.h5", "--model", "no-such-model"], "no-such-model"),
        (["evaluate", "no-such-run"], "no-such-run"),
        (["predict", "no-such-run", "x.xyz"], "no-such-run"),
        (["train", "--resume", "no-such-run"], "no-such-run"),
        (["train", "--out", "run-a", "--resume", "run-b"], "run-b"),
        (["lift", "--dataset", "no-such-set"], "no-such-set"),
        (["cache", "info", "no-such-cache.h5"], "no-such-cache.h5"),
    ],
)
def test_user_errors_are_one_line_with_status_2(tmp_path, monkeypatch, args: list[str], names: str) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and names in lines[0]
    assert "Traceback" not in result.output


def test_the_command_group_is_the_one_place_user_errors_become_a_line(monkeypatch) -> None:
    """A command that lets an EmpcnError rise gets the same one line: nothing per command is needed."""
    import empcn.predict
    from empcn.errors import EmpcnError

    def broken(*args, **kwargs):
        raise EmpcnError("some-input: what is wrong with it")

    monkeypatch.setattr(empcn.predict, "predict_files", broken)
    result = CliRunner().invoke(app, ["predict", "any-run", "x.xyz"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: some-input: what is wrong with it"
