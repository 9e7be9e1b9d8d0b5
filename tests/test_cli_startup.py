"""Listing, showing and help answer without loading torch, torchvision or open_clip (issue 14
item 8: `linkhoi train --list` took 10-32 s on a busy machine when it imported them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import linkhoi

HEAVY = ("torch", "torchvision", "open_clip")

# `demo --help` is left out: linkhoi.demo builds the demo's model at module level (torch).
LIGHT_COMMANDS = [
    ["--help"],
    ["train", "--list"],
    ["train", "--help"],
    ["train", "--show", "synthetic_teacher"],
    ["eval", "--help"],
    ["data", "--help"],
    ["detect", "--help"],
    ["convert-clip", "--help"],
]

_CHILD = """
import contextlib, io, json, sys
from linkhoi.cli import main
argv = json.loads(sys.argv[1])
out = io.StringIO()
try:
    with contextlib.redirect_stdout(out):
        code = main(argv)
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "chars": len(out.getvalue()),
                  "heavy": [m for m in HEAVY if m in sys.modules]}))
""".replace("HEAVY", repr(HEAVY))


def _run(argv: list[str]) -> dict:
    env = dict(os.environ)
    src = str(Path(linkhoi.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(argv)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_listing_show_and_help_do_not_import_torch() -> None:
    for argv in LIGHT_COMMANDS:
        result = _run(argv)
        assert result["code"] == 0, (argv, result)
        assert result["chars"] > 0, argv  # it answered
        assert result["heavy"] == [], f"linkhoi {' '.join(argv)} imported {result['heavy']}"


def _policy_at_torch_import(env_policy: str | None) -> list:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if env_policy is not None:
        env["OMP_WAIT_POLICY"] = env_policy
    src = str(Path(linkhoi.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    code = (
        "import os, sys, json; import linkhoi.cli; before = 'torch' in sys.modules; "
        "import torch; print(json.dumps([before, os.environ.get('OMP_WAIT_POLICY')]))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=300, check=True)  # fmt: skip
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_command_makes_idle_openmp_threads_sleep() -> None:
    # Spinning OpenMP threads slowed the frozen backbone several times on a busy machine
    # (benchmarks/feature_cache_speed.py); torch reads the policy when it is imported.
    assert _policy_at_torch_import(None) == [False, "PASSIVE"]
    assert _policy_at_torch_import("ACTIVE") == [False, "ACTIVE"]  # the user's choice wins
