"""Benchmark: how long ``agehpo`` takes to answer when it needs no data.

Run: ``python benchmarks/bench_startup.py [--repeats R]``.

Times, as separate processes, ``agehpo --help``, ``agehpo study --help`` and the one-line
errors of parameters that are checked before anything heavy is imported (a bad number,
device, name, storage URL, sampler or pruner name, JSON). Each figure is the median of
``--repeats`` runs of the installed ``agehpo`` script. Target: every one under 0.5 s.
The last line is one JSON object with the figures and the target.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 0.5
COMMANDS = {
    "--help": ["--help"],
    "study --help": ["study", "--help"],
    "bad n_trials": ["study", "--n-trials", "0"],
    "bad timeout": ["study", "--timeout", "-1"],
    "bad device": ["study", "--device", "tpu"],
    "bad model_name": ["study", "--model-name", "a/b"],
    "bad sampler_kwargs": ["study", "--sampler-kwargs", "{bad"],
    "bad storage": ["study", "--storage", "foo://x"],
    "unknown sampler": ["study", "--sampler", "nope"],
    "unknown pruner": ["study", "--pruner", "nope"],
    "unknown compare sampler": ["compare", "--samplers", "tpe,nope"],
}


def time_once(command: list[str], cwd: str) -> tuple[float, int]:
    """Seconds until the process exited, and its exit status."""
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, check=False)
    return time.perf_counter() - start, done.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    script = Path(sys.executable).with_name("agehpo")  # the venv's own entry point first
    agehpo = str(script) if script.exists() else shutil.which("agehpo")
    if agehpo is None:
        sys.exit("agehpo is not installed: pip install -e .")
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as cwd:  # nothing may be written here either
        for label, argv in COMMANDS.items():
            runs = [time_once([agehpo, *argv], cwd) for _ in range(args.repeats)]
            figures[label] = statistics.median(seconds for seconds, _ in runs)
            status = runs[-1][1]
            print(f"{label:>24}: {figures[label]:.3f} s (exit {status})")
    worst = max(figures, key=figures.__getitem__)
    print(f"slowest: {worst} at {figures[worst]:.3f} s; target < {TARGET_S} s each")
    print(json.dumps({"seconds": figures, "slowest_s": figures[worst], "target_s": TARGET_S}))


if __name__ == "__main__":
    main()
