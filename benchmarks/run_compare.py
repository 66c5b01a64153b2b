"""The seed's experiment, measured fairly: samplers on one budget, repeated with new seeds.

Run: ``python benchmarks/run_compare.py --n-trials 20 --n-epochs 10 --repeats 3``
(defaults: samplers skopt,random,tpe; the full 23,705 synthetic faces at 24x24; CPU).
Optuna and MLflow stores live in a temporary folder, so nothing here touches ./optuna.db or
./mlflow.db. ``--probe`` runs a single study (the first sampler, repeat 1) and prints how
long the whole comparison would take, to pick a budget that fits.

Writes ``benchmarks/results/compare_<budget>.md`` (table, verdict, command, date, machine)
and ``.json`` (the numbers). The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from agehpo.compare import _report as report
from agehpo.compare import run_compare
from agehpo.config import StudyConfig, parse_samplers
from agehpo.objective import load_data

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_WALL_S = 25 * 60  # what fits in a session on 2 shared cores


def machine() -> str:
    """CPU model, usable cores and torch threads: enough to compare timings across runs."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"{model}; {cores} usable cores (shared); torch {torch.__version__} "
        f"with {torch.get_num_threads()} threads; Python {platform.python_version()}"
    )


def code_version() -> str:
    """The commit the run used, marked dirty when tracked files differ from it."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + (" (dirty)" if git("status", "--porcelain", "--untracked-files=no") else "")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samplers", default="skopt,random,tpe")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-trials", type=int, default=20)
    parser.add_argument("--n-epochs", type=int, default=10)
    parser.add_argument("--n-samples", type=int, default=23705)
    parser.add_argument("--pruner", default="median")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--no-track", action="store_true", help="skip MLflow (faster)")
    parser.add_argument("--probe", action="store_true", help="time one study, extrapolate")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    samplers = parse_samplers(args.samplers)
    started = time.perf_counter()
    code = code_version()  # now: the tree may change while the comparison runs
    with tempfile.TemporaryDirectory() as tmp:
        # A SQLite tracking store puts artifacts under ./mlruns of the working directory.
        os.chdir(tmp)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        os.environ.pop("MLFLOW_RUN_ID", None)
        config = StudyConfig(
            n_trials=args.n_trials,
            n_epochs=args.n_epochs,
            n_samples=args.n_samples,
            pruner=args.pruner,
            seed=args.seed,
            device="cpu",
            storage=f"sqlite:///{tmp}/optuna.db",
            study_name="compare-bench",
            # Conditional layer params are sampled independently by design; skopt's warning
            # for each of them would drown the progress lines.
            sampler_kwargs={"skopt": {"warn_independent_sampling": False}}
            if "skopt" in samplers
            else {},
        )
        data = load_data(config)
        load_s = time.perf_counter() - started
        run_samplers, run_repeats = (samplers[:1], 1) if args.probe else (samplers, args.repeats)
        result = run_compare(config, run_samplers, run_repeats, track=not args.no_track, data=data)
    total_s = time.perf_counter() - started
    if args.probe:
        study_s = total_s - load_s
        estimate = load_s + study_s * len(samplers) * args.repeats
        print(
            f"one {samplers[0]} study: {study_s:.0f} s (data {load_s:.0f} s); the whole "
            f"comparison would take about {estimate / 60:.1f} min"
        )
        print(json.dumps({"probe_study_s": round(study_s, 1), "estimate_s": round(estimate)}))
        return 0
    budget = f"n{args.n_samples}_t{args.n_trials}_e{args.n_epochs}_r{args.repeats}"
    command = "python benchmarks/run_compare.py " + shlex.join(sys.argv[1:])
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    figures = {
        "budget": {
            "samplers": samplers,
            "repeats": args.repeats,
            "n_trials": args.n_trials,
            "n_epochs": args.n_epochs,
            "n_samples": args.n_samples,
            "img_size": config.img_size,
            "pruner": args.pruner,
            "seed": args.seed,
            "tracked": not args.no_track,
        },
        "command": command,
        "date": date,
        "machine": machine(),
        "code": code,
        "total_wall_s": round(total_s, 1),
        "target_total_wall_s": TARGET_WALL_S,
        "table": json.loads(result.table.to_json(orient="records")),
        "studies": [
            {
                "study_name": s.study_name,
                "sampler": s.sampler,
                "repeat": s.repeat,
                "sampler_seed": s.sampler_seed,
                **report.row_values(s),
                "best_so_far": s.curve,
            }
            for s in result.stats
        ],
        "verdict": result.verdict,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"compare_{budget}.json").write_text(json.dumps(figures, indent=1) + "\n")
    (RESULTS / f"compare_{budget}.md").write_text(
        "\n".join(
            [
                f"# Sampler comparison: {', '.join(samplers)} ({budget})",
                "",
                f"- Command: `{command}`",
                f"- Budget per study: {args.n_trials} trials x up to {args.n_epochs} epochs, "
                f"pruner {args.pruner}; {args.repeats} repeats per sampler (sampler seeds "
                f"{args.seed}..{args.seed + args.repeats - 1}); data: synthetic, "
                f"{args.n_samples} faces at {config.img_size}x{config.img_size}, split and "
                f"training seeds fixed at {args.seed}.",
                f"- Date: {date}; total wall time {total_s / 60:.1f} min.",
                f"- Machine: {figures['machine']}.",
                f"- Code: commit {code}.",
                "",
                result.table_markdown,
                "",
                "## Verdict",
                "",
                result.verdict,
                "",
            ]
        )
    )
    print(
        json.dumps(
            {k: figures[k] for k in ("budget", "total_wall_s", "target_total_wall_s")}
            | {"verdict": result.verdict}
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
