"""The seed's experiment, measured fairly: samplers on one budget, repeated with new seeds.

Run: ``python benchmarks/run_compare.py --n-trials 20 --n-epochs 10 --repeats 3``
(defaults: samplers skopt,random,tpe; the full 23,705 synthetic faces at 24x24; CPU).
Optuna and MLflow stores live in a temporary folder, so nothing here touches ./optuna.db or
./mlflow.db. ``--probe`` runs a single study (the first sampler, repeat 1) and prints how
long the whole comparison would take, to pick a budget that fits.

A long comparison can be split over processes and merged: each process runs some repeats of
one sampler variant (``--samplers skopt --label skopt_seed --sampler-kwargs '{...}'
--first-repeat 3 --repeats 1 --save part.pkl``), and ``--merge part*.pkl`` writes the report.
The report also gives, per sampler, the trials each repeat needed to reach random's median
final best (when random is among them).

Writes ``benchmarks/results/compare_<budget>.md`` (table, verdict, command, date, machine),
``.json`` (the numbers) and the plots' PNGs in ``compare_<budget>/``. The last line printed
is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import pickle
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import torch

from agehpo.compare import _report as report
from agehpo.compare import run_compare
from agehpo.compare._plots import write_plots
from agehpo.compare._stats import StudyStats
from agehpo.config import StudyConfig, parse_samplers
from agehpo.objective import load_data

RESULTS = Path(__file__).resolve().parent / "results"


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
    parser.add_argument("--first-repeat", type=int, default=1)
    parser.add_argument("--n-trials", type=int, default=20)
    parser.add_argument("--n-epochs", type=int, default=10)
    parser.add_argument("--n-samples", type=int, default=23705)
    parser.add_argument("--pruner", default="median")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument(
        "--sampler-kwargs", type=json.loads, default={}, help="JSON for every sampler given"
    )
    parser.add_argument("--label", help="the one sampler's name in the report, e.g. skopt_seed")
    parser.add_argument("--no-track", action="store_true", help="skip MLflow (faster)")
    parser.add_argument("--probe", action="store_true", help="time one study, extrapolate")
    parser.add_argument("--save", type=Path, help="pickle the studies here instead of reporting")
    parser.add_argument("--merge", type=Path, nargs="+", help="report on --save pickles")
    return parser.parse_args()


def run_studies(args: argparse.Namespace) -> int:
    """Run the studies; report, print the probe's estimate, or save them for ``--merge``."""
    samplers = parse_samplers(args.samplers)
    if args.label and len(samplers) != 1:
        raise SystemExit(f"--label names one sampler; --samplers={args.samplers!r} has more")
    started = time.perf_counter()
    code = code_version()  # now: the tree may change while the comparison runs
    skopt_quiet = {"skopt": {"warn_independent_sampling": False}} if "skopt" in samplers else {}
    save = args.save.resolve() if args.save else None  # before the chdir below
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
            # Conditional layer params may be sampled independently (skopt's intersection
            # mode); a warning for each of them would drown the progress lines.
            sampler_kwargs={
                name: {**skopt_quiet.get(name, {}), **args.sampler_kwargs} for name in samplers
            },
        )
        data = load_data(config)
        load_s = time.perf_counter() - started
        run_samplers, run_repeats = (samplers[:1], 1) if args.probe else (samplers, args.repeats)
        result = run_compare(
            config,
            run_samplers,
            run_repeats,
            track=not args.no_track,
            data=data,
            first_repeat=args.first_repeat,
        )
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
    stats = [dataclasses.replace(s, sampler=args.label or s.sampler) for s in result.stats]
    part = {
        "args": vars(args),
        "code": code,
        "machine": machine(),
        "total_wall_s": total_s,
        "img_size": config.img_size,
    }
    if save:
        save.write_bytes(pickle.dumps(part | {"stats": stats}))
        print(f"saved {len(stats)} studies to {save}")
        return 0
    command = "python benchmarks/run_compare.py " + shlex.join(sys.argv[1:])
    return write_report(stats, [part], command)


def merge(paths: list[Path]) -> int:
    """Report on studies saved by several ``--save`` runs of one budget."""
    parts = [pickle.loads(path.read_bytes()) for path in paths]
    budgets = {json.dumps(budget_of(part["args"])) for part in parts}
    if len(budgets) != 1:
        raise SystemExit(f"--merge: the parts ran different budgets: {sorted(budgets)}")
    stats = [s for part in parts for s in part["stats"]]
    order = list(dict.fromkeys(s.sampler for s in stats))
    stats.sort(key=lambda s: (order.index(s.sampler), s.repeat))
    lines = dict.fromkeys("python benchmarks/run_compare.py " + part_command(p) for p in parts)
    command = "; ".join([*lines, "python benchmarks/run_compare.py --merge PART..."])
    return write_report(stats, parts, command)


def budget_of(args: dict) -> dict:
    return {k: args[k] for k in ("n_trials", "n_epochs", "n_samples", "pruner", "seed")}


def part_command(part: dict) -> str:
    """The command line of one saved part, its repeat and file left as placeholders."""
    args = part["args"]
    flags = [f"--samplers {args['samplers']}"]
    flags += [f"--label {args['label']}"] if args["label"] else []
    if args["sampler_kwargs"]:
        flags.append(f"--sampler-kwargs '{json.dumps(args['sampler_kwargs'])}'")
    flags += [f"--{key.replace('_', '-')} {value}" for key, value in budget_of(args).items()]
    flags += ["--no-track"] if args["no_track"] else []
    return " ".join([*flags, "--first-repeat K --repeats 1 --save PART"])


def trials_to_reach(stats: list[StudyStats], target: float) -> dict[str, list[int | None]]:
    """Per sampler and repeat, the trials run until a COMPLETE one reached ``target``."""
    reached: dict[str, list[int | None]] = {}
    for s in stats:
        hit = next((i + 1 for i, v in enumerate(s.curve) if v is not None and v >= target), None)
        reached.setdefault(s.sampler, []).append(hit)
    return reached


def median_trials(hits: list[int | None]) -> float:
    """The median, a repeat that never reached the target counting as infinitely many."""
    return float(pd.Series([math.inf if h is None else h for h in hits]).median())


def reach_section(stats: list[StudyStats]) -> tuple[str, dict]:
    """Markdown and figures: trials each sampler needed to reach random's median final best."""
    finals = [s.best_at[100] for s in stats if s.sampler == "random"]
    finals = [v for v in finals if v is not None]
    if not finals:
        return "", {}
    target = float(pd.Series(finals).median())
    reached = trials_to_reach(stats, target)
    lines = [
        f"## Trials to reach random's median final best ({100 * target:.2f} %)",
        "",
        "| sampler | median trials | per repeat |",
        "|---|---|---|",
    ]
    figures: dict = {"target": target, "samplers": {}}
    for sampler, hits in reached.items():
        median = median_trials(hits)
        shown = "not reached" if math.isinf(median) else f"{median:g}"
        per_repeat = ", ".join("—" if h is None else str(h) for h in hits)
        lines.append(f"| {sampler} | {shown} | {per_repeat} |")
        figures["samplers"][sampler] = {
            "median": None if math.isinf(median) else median,
            "per_repeat": hits,
        }
    lines += [
        "",
        f"—: the repeat's {stats[0].n_trials} trials never reached it; such a repeat counts as "
        "infinitely many in the median.",
    ]
    return "\n".join(lines), figures


def write_report(stats: list[StudyStats], parts: list[dict], command: str) -> int:
    """Write the table, verdict, trials-to-reach, plots and numbers under benchmarks/results."""
    args = parts[0]["args"]
    samplers = list(dict.fromkeys(s.sampler for s in stats))
    repeats = max(sum(s.sampler == name for s in stats) for name in samplers)
    budget = f"n{args['n_samples']}_t{args['n_trials']}_e{args['n_epochs']}_r{repeats}"
    table = report.build_table(stats)
    markdown = report.format_table(table, args["n_trials"])
    verdict = report.verdict(table)
    reach_md, reach = reach_section(stats)
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    process_s = sum(part["total_wall_s"] for part in parts)
    codes = sorted({part["code"] for part in parts})
    figures = {
        "budget": budget_of(args)
        | {
            "samplers": samplers,
            "repeats": repeats,
            "img_size": parts[0]["img_size"],
            "tracked": not args["no_track"],
        },
        "command": command,
        "date": date,
        "machine": parts[0]["machine"],
        "code": codes,
        "process_wall_s": round(process_s, 1),
        "table": json.loads(table.to_json(orient="records")),
        "trials_to_reach_random_median": reach,
        "studies": [
            {
                "study_name": s.study_name,
                "sampler": s.sampler,
                "repeat": s.repeat,
                "sampler_seed": s.sampler_seed,
                **report.row_values(s),
                "best_so_far": s.curve,
            }
            for s in stats
        ],
        "verdict": verdict,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"compare_{budget}.json").write_text(json.dumps(figures, indent=1) + "\n")
    seeds = f"{args['seed']}..{args['seed'] + repeats - 1}"
    (RESULTS / f"compare_{budget}.md").write_text(
        "\n".join(
            [
                f"# Sampler comparison: {', '.join(samplers)} ({budget})",
                "",
                f"- Command: `{command}`",
                f"- Budget per study: {args['n_trials']} trials x up to {args['n_epochs']} "
                f"epochs, pruner {args['pruner']}; {repeats} repeats per sampler (sampler seeds "
                f"{seeds}); data: synthetic, {args['n_samples']} faces at "
                f"{parts[0]['img_size']}x{parts[0]['img_size']}, split and training seeds "
                f"fixed at {args['seed']}.",
                f"- Date: {date}; {len(parts)} process(es), {process_s / 60:.1f} min in all.",
                f"- Machine: {figures['machine']}.",
                f"- Code: commit {', '.join(codes)}.",
                "",
                markdown,
                "",
                "## Verdict",
                "",
                verdict,
                "",
                reach_md,
                "",
            ]
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        write_plots(stats, Path(tmp))
        plots = RESULTS / f"compare_{budget}"
        plots.mkdir(exist_ok=True)
        for png in Path(tmp).glob("*.png"):  # the HTML embeds plotly.js: 4.8 MB each
            shutil.copy(png, plots / png.name)
    print(json.dumps({"budget": figures["budget"], "verdict": verdict} | {"reach": reach}))
    return 0


def main() -> int:
    args = parse_args()
    return merge(args.merge) if args.merge else run_studies(args)


if __name__ == "__main__":
    sys.exit(main())
