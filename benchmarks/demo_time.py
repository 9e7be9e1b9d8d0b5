"""`linkhoi demo` wall time: the two VLM pipelines one after the other (--jobs 1) and in two
processes at once (--jobs 2), on one machine in one run.

First a warm-up demo fills a fresh cache (world, random VLM, feature caches), then the two modes
alternate over ``--rounds`` on that warm cache, each writing to a folder of its own; the fastest
round of each counts. Prints each run's wall and CPU seconds (this process's children) and the
last line ``ratio=<jobs 2 / jobs 1 wall time>``. The goals of the project (6 min for the default
demo, 90 s for --quick, on 2 cores) are about the first run of a fresh install; the warm-up's
time is printed too.

    .venv/bin/python benchmarks/demo_time.py [--quick] [--rounds 1]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one ``linkhoi demo`` in a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    cmd = [sys.executable, "-m", "linkhoi.cli", "demo", "--no-progress", *args]
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--quick", action="store_true", help="time `linkhoi demo --quick`")
    ap.add_argument(
        "--rounds", type=int, default=1, help="rounds of --jobs 1 and --jobs 2 (fastest counts)"
    )
    a = ap.parse_args()
    mode = ["--quick"] if a.quick else []
    print(f"{os.cpu_count()} CPU cores; load average {os.getloadavg()[0]:.2f} at the start")
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "LINKHOI_CACHE": str(Path(tmp) / "cache")}
        wall, cpu = run([*mode, "--out", str(Path(tmp) / "warm")], env)
        print(f"first run (fresh cache, --jobs default): {wall:6.1f} s wall, {cpu:6.1f} s CPU")
        best: dict[int, float] = {}
        for r in range(a.rounds):
            for jobs in (1, 2):
                out = Path(tmp) / f"jobs{jobs}_{r}"
                wall, cpu = run([*mode, "--jobs", str(jobs), "--out", str(out)], env)
                best[jobs] = min(best.get(jobs, wall), wall)
                print(f"round {r} --jobs {jobs} (warm cache): {wall:6.1f} s wall, {cpu:6.1f} s CPU")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    print(f"ratio={best[2] / best[1]:.3f}")


if __name__ == "__main__":
    main()
