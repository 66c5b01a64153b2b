"""Benchmark: import an existing Optuna study of 100 trials x 50 steps into MLflow.

Run: ``python benchmarks/bench_import.py [--n-trials N] [--n-steps S] [--repeats R]``.

Builds a SQLite Optuna storage in a temporary folder with one study (the seed's search
space, a deterministic curve reported every step, TPESampler(seed=13), MedianPruner, so a
realistic mix of COMPLETE and PRUNED trials; every 10th trial FAILs), then times
``optuna_mlflow.import_study`` into a fresh SQLite tracking store (schema created before
the clock starts): the whole import, plots and ``trials.csv`` on the parent included. The
repeat import (nothing to write) is timed too. Each figure is the best of ``--repeats``
imports, each into its own fresh store, after an untimed warm-up import of a tiny study
that loads matplotlib/plotly once per process (its time is printed too). Target: the
import of the 100-trial study < 5 s.
The last line is one JSON object with the figures and the target.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
import warnings
from pathlib import Path

import optuna
from mlflow import MlflowClient

from optuna_mlflow import import_study

TARGET_S = 5.0
OPTIMIZERS = ["Adam", "Adadelta", "RMSprop", "SGD", "MADGRAD"]


def objective_for(n_steps: int):  # type: ignore[no-untyped-def]
    """The seed's search space with a cheap deterministic learning curve."""

    def objective(trial: optuna.Trial) -> float:
        n_layers = trial.suggest_int("num_fc_layers", 4, 8)
        for i in range(n_layers):
            trial.suggest_int(f"fc_output_feat_{i}", 8, 64)
            trial.suggest_float(f"fc_dropout_{i}", 0.0, 0.5)
        last_fc = trial.suggest_int("last_fc", 8, 64)
        opt = trial.suggest_categorical("optimizer", OPTIMIZERS)
        lr = trial.suggest_float("lr", 1e-4, 1e-2, log=True)
        speed = 0.02 + 10 * lr * (1 + OPTIMIZERS.index(opt) / 4)
        ceiling = 0.45 + 0.1 * math.tanh(last_fc / 32)
        best = 0.0
        for step in range(n_steps):
            acc = ceiling * (1 - math.exp(-speed * (step + 1)))
            best = max(best, acc)
            trial.report(acc, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        if trial.number % 10 == 9:
            raise RuntimeError("diverged")
        return best

    return objective


def build_storage(path: Path, n_trials: int, n_steps: int) -> optuna.Study:
    study = optuna.create_study(
        study_name="bench-import",
        storage=f"sqlite:///{path}",
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=13),
        # Fewer pruned trials than the default: more steps to import, the harder case.
        pruner=optuna.pruners.MedianPruner(n_startup_trials=20, n_warmup_steps=25),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["val_age_accuracy"])
    study.optimize(objective_for(n_steps), n_trials=n_trials, catch=(RuntimeError,))
    return study


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-trials", type=int, default=100)
    parser.add_argument("--n-steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)

    with tempfile.TemporaryDirectory(prefix="bench_import_") as tmp:
        # A SQLite tracking store puts artifacts under ./mlruns of the working directory.
        os.chdir(tmp)
        root = Path(tmp)
        study = build_storage(root / "optuna.db", args.n_trials, args.n_steps)
        trials = study.trials
        steps = sum(len(t.intermediate_values) for t in trials)
        states = {s.name: sum(t.state == s for t in trials) for s in optuna.trial.TrialState}
        print(f"study: {len(trials)} trials ({states}), {steps} intermediate values")
        # A first, untimed import of a 2-trial study loads matplotlib, plotly and the
        # importance code (~1-2 s, once per process); its time is printed, not targeted.
        warm = build_storage(root / "warmup.db", 2, 3)
        client = MlflowClient(f"sqlite:///{root}/mlflow-warmup.db")
        client.search_experiments()
        start = time.perf_counter()
        import_study(root / "warmup.db", warm.study_name, client=client)
        cold = time.perf_counter() - start
        print(f"first import in this process (2 trials, loads plotting code): {cold:.2f} s")
        firsts, repeats = [], []
        for attempt in range(args.repeats):
            uri = f"sqlite:///{root}/mlflow-{attempt}.db"
            client = MlflowClient(uri)
            client.search_experiments()  # schema creation is not part of an import
            start = time.perf_counter()
            (report,) = import_study(root / "optuna.db", client=client)
            firsts.append(time.perf_counter() - start)
            start = time.perf_counter()
            (again,) = import_study(root / "optuna.db", client=client)
            repeats.append(time.perf_counter() - start)
            assert report.created == len(trials) and again.created == again.updated == 0
            print(f"attempt {attempt}: import {firsts[-1]:.2f} s, repeat {repeats[-1]:.2f} s")
        best, best_repeat = min(firsts), min(repeats)
        print(
            f"import of {len(trials)} trials x {args.n_steps} steps: {best:.2f} s "
            f"(target < {TARGET_S} s); repeat import: {best_repeat:.2f} s"
        )
        print(
            json.dumps(
                {
                    "n_trials": len(trials),
                    "n_steps": args.n_steps,
                    "intermediate_values": steps,
                    "states": states,
                    "import_s": round(best, 3),
                    "warmup_import_s": round(cold, 3),
                    "repeat_import_s": round(best_repeat, 3),
                    "target_import_s": TARGET_S,
                    "met": best < TARGET_S,
                    "runs": {
                        "import": [round(t, 3) for t in firsts],
                        "repeat": [round(t, 3) for t in repeats],
                    },
                }
            )
        )


if __name__ == "__main__":
    main()
