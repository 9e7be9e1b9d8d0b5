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


@pytest.mark.parametrize("unbuffered", ["", "1"])
def test_output_cut_short_by_the_reader_is_quiet(unbuffered: str) -> None:
    # `linkhoi train --list | head -1`: the reader has gone; no traceback, the shell's 141.
    import os
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)  # every write of the child meets a closed pipe
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = unbuffered
    code = "import sys; from linkhoi.cli import main; sys.exit(main(['train', '--list']))"
    proc = subprocess.run(
        [sys.executable, "-c", code], stdout=write_end, stderr=subprocess.PIPE, env=env
    )
    os.close(write_end)
    assert proc.returncode == 141 and proc.stderr.decode() == ""
