"""The dispatcher: every command resolves to a module with the add_arguments/run protocol."""

from __future__ import annotations

import argparse
import importlib

import pytest

from linkhoi.cli import COMMANDS, main


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_module_has_the_protocol(name: str) -> None:
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"linkhoi {name}")
    module.add_arguments(parser)  # must not raise: options are well-formed
    assert callable(module.run)


def test_help_and_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "convert-clip" in capsys.readouterr().out
    assert main([]) == 2  # no command: help, and a non-zero status for scripts
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2
    assert "unknown command 'no-such-command'" in capsys.readouterr().err
