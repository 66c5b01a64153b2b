"""Benchmark: cost of tracking a study in MLflow, ours against the optuna_integration recipe.

Run: ``python benchmarks/bench_tracking.py [--n-trials N] [--n-epochs E] [--repeats R]``.

One synthetic study (the seed's search space, a cheap deterministic learning curve per trial
instead of training, MedianPruner, TPESampler(seed=13)) is optimized three ways in the same
process, each against its own fresh SQLite tracking store in a temporary folder:

1. no tracking;
2. ``optuna_mlflow.MLflowCallback``: per epoch ``trial.report`` plus
   ``log_step(train_loss, val_loss, val_age_accuracy)``; at trial end the callback writes
   params, value, intermediate values and tags (one run per trial, built the
   optuna_integration way and never closed: the layout the recipe writes);
3. the usual recipe with the deprecated ``optuna_integration.MLflowCallback``: the objective
   wrapped in ``@mlflow_cb.track_in_mlflow()`` and, per epoch, the same three metrics with
   ``mlflow.log_metric`` (one call per metric, as the recipe's examples do).

The stores' schemas are created before timing (that one-off ~2 s is the same for both and
not what the issue is about). The cheap ways (none, ours) are timed ``--repeats`` times and
the recipe ``--recipe-repeats`` times; the minimum counts (the machine is shared, and a load
spike during a 3 s run would otherwise decide the ratio). Overhead = way - no tracking.
Target: ours <= 25 % of the recipe's.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import optuna
from mlflow import MlflowClient

from agehpo.names import OPTIMIZERS
from agehpo.search_space import suggest
from optuna_mlflow import MLflowCallback

TARGET = 0.25


def curve(params: dict[str, Any], epoch: int) -> tuple[float, float, float]:
    """A deterministic learning curve: (train_loss, val_loss, val_age_accuracy)."""
    speed = 0.02 + 10 * params["lr"] * (1 + OPTIMIZERS.index(params["optimizer"]) / 4)
    ceiling = 0.45 + 0.1 * math.tanh(params["last_fc"] / 32) - 0.05 * params["fc_dropout_0"]
    acc = ceiling * (1 - math.exp(-speed * (epoch + 1)))
    train_loss = 2.5 * math.exp(-speed * (epoch + 1)) + 0.3
    return train_loss, train_loss + 0.1 * epoch / 50, acc


Logger = Callable[[optuna.Trial, int, tuple[float, float, float]], None]


def make_objective(n_epochs: int, log: Logger | None) -> Callable[[optuna.Trial], float]:
    """Objective reporting the curve per epoch, pruned by the study's pruner."""

    def objective(trial: optuna.Trial) -> float:
        params = suggest(trial)
        best = 0.0
        for epoch in range(n_epochs):
            point = curve(params, epoch)
            best = max(best, point[2])
            trial.report(point[2], epoch)
            if log is not None:
                log(trial, epoch, point)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return best

    return objective


def new_study() -> optuna.Study:
    return optuna.create_study(
        study_name="bench-tracking",
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=13),
        pruner=optuna.pruners.MedianPruner(),
    )


def fresh_store(root: Path, name: str) -> str:
    (root / name).mkdir()
    uri = f"sqlite:///{root / name}/mlflow.db"
    MlflowClient(uri).search_experiments()  # create the schema before the clock starts
    return uri


def way_none(n_trials: int, n_epochs: int, root: Path, tag: str) -> tuple[float, optuna.Study]:
    study = new_study()
    start = time.perf_counter()
    study.optimize(make_objective(n_epochs, None), n_trials=n_trials)
    return time.perf_counter() - start, study


def way_ours(n_trials: int, n_epochs: int, root: Path, tag: str) -> tuple[float, optuna.Study]:
    uri = fresh_store(root, f"ours-{tag}")
    study = new_study()
    start = time.perf_counter()
    cb = MLflowCallback(tracking_uri=uri, metric_name="val_age_accuracy")

    def log(trial: optuna.Trial, epoch: int, point: tuple[float, float, float]) -> None:
        metrics = dict(zip(("train_loss", "val_loss", "val_age_accuracy"), point, strict=True))
        cb.log_step(trial, epoch, metrics)

    study.optimize(make_objective(n_epochs, log), n_trials=n_trials, callbacks=[cb])
    elapsed = time.perf_counter() - start
    check(uri, n_trials)
    return elapsed, study


def way_recipe(n_trials: int, n_epochs: int, root: Path, tag: str) -> tuple[float, optuna.Study]:
    from optuna_integration import MLflowCallback as LegacyCallback

    uri = fresh_store(root, f"recipe-{tag}")
    study = new_study()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlflow_cb = LegacyCallback(tracking_uri=uri, metric_name="val_age_accuracy")

        def log(trial: optuna.Trial, epoch: int, point: tuple[float, float, float]) -> None:
            mlflow.log_metric("train_loss", point[0], step=epoch)
            mlflow.log_metric("val_loss", point[1], step=epoch)
            mlflow.log_metric("val_age_accuracy", point[2], step=epoch)

        objective = mlflow_cb.track_in_mlflow()(make_objective(n_epochs, log))
        study.optimize(objective, n_trials=n_trials, callbacks=[mlflow_cb])
    elapsed = time.perf_counter() - start
    check(uri, n_trials)
    return elapsed, study


def check(uri: str, n_trials: int) -> None:
    """Every trial landed, one run each, none left RUNNING."""
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("bench-tracking")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], max_results=5000)
    assert len(runs) == n_trials, len(runs)
    assert all(r.info.status != "RUNNING" for r in runs)


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-trials", type=int, default=100)
    parser.add_argument("--n-epochs", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3, help="runs of none and ours")
    parser.add_argument("--recipe-repeats", type=int, default=1, help="runs of the recipe")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    times: dict[str, list[float]] = {"none": [], "ours": [], "recipe": []}
    studies: dict[str, optuna.Study] = {}
    ways = {"none": way_none, "ours": way_ours, "recipe": way_recipe}
    with tempfile.TemporaryDirectory(prefix="bench_tracking_") as tmp:
        # A SQLite tracking store puts artifacts under ./mlruns of the working directory.
        os.chdir(tmp)
        for attempt in range(max(args.repeats, args.recipe_repeats)):
            for name, way in ways.items():
                limit = args.recipe_repeats if name == "recipe" else args.repeats
                if attempt >= limit:
                    continue
                elapsed, studies[name] = way(args.n_trials, args.n_epochs, Path(tmp), str(attempt))
                times[name].append(elapsed)
                print(f"attempt {attempt}: {name:6s} {elapsed:7.2f} s")

    signature = {
        name: [(t.params, t.state.name, len(t.intermediate_values)) for t in s.trials]
        for name, s in studies.items()
    }
    assert signature["none"] == signature["ours"] == signature["recipe"], "studies differ"
    trials = studies["none"].trials
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in trials)
    epochs = sum(len(t.intermediate_values) for t in trials)
    best = {name: min(v) for name, v in times.items()}
    ours_over = best["ours"] - best["none"]
    recipe_over = best["recipe"] - best["none"]
    ratio = ours_over / recipe_over if recipe_over > 0 else float("inf")
    print(f"study: {len(trials)} trials, {pruned} pruned, {epochs} reported epochs in all")
    print(f"no tracking:          {best['none']:7.2f} s")
    print(f"optuna_mlflow:        {best['ours']:7.2f} s  (overhead {ours_over:6.2f} s)")
    print(f"optuna_integration:   {best['recipe']:7.2f} s  (overhead {recipe_over:6.2f} s)")
    print(f"overhead ratio ours/recipe: {ratio:.3f} (target <= {TARGET})")
    print(
        json.dumps(
            {
                "n_trials": len(trials),
                "n_epochs": args.n_epochs,
                "n_pruned": pruned,
                "reported_epochs": epochs,
                "none_s": round(best["none"], 3),
                "ours_s": round(best["ours"], 3),
                "recipe_s": round(best["recipe"], 3),
                "ours_overhead_s": round(ours_over, 3),
                "recipe_overhead_s": round(recipe_over, 3),
                "overhead_ratio": round(ratio, 4),
                "target_ratio": TARGET,
                "met": ratio <= TARGET,
                "ours_logs": "report + log_step(train_loss, val_loss, val_age_accuracy)",
                "recipe_logs": "3x mlflow.log_metric per epoch in track_in_mlflow",
                "runs": {name: [round(t, 3) for t in v] for name, v in times.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
