"""The `uncia` command: every subcommand has --help; usage mistakes exit non-zero."""

from __future__ import annotations

import subprocess
import sys

import pytest

from uncia.cli import COMMANDS, main


@pytest.mark.parametrize("command", [*COMMANDS, "sim gps", "sim lora"])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([*command.split(), "--help"])
    assert info.value.code == 0
    assert "usage: uncia" in capsys.readouterr().out


def test_no_subcommand_prints_usage_and_exits_2(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().err


def test_unknown_subcommand_exits_2():
    with pytest.raises(SystemExit) as info:
        main(["fly"])
    assert info.value.code == 2


def test_console_script_runs():
    result = subprocess.run([sys.executable, "-m", "uncia", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("uncia ")
