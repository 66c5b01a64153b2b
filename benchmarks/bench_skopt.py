"""Benchmark SkoptSampler on the app's search space: ask latency and search quality.

Run as ``python benchmarks/bench_skopt.py``. The objective is a cheap synthetic stand-in for
training (a deterministic function of the parameters plus noise derived from the trial
number), so every second measured is sampler time. The last line printed is one JSON object
with all figures.

``--modes`` instead compares SkoptSampler's search-space modes and pruned-trial option on the
same conditional objective, reported over 10 "epochs" under a median pruner (about a minute
on two cores): intersection, union, union with pruned trials told, random and TPE
multivariate+group, best final loss after ``--trials`` (median over ``--seeds``).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from typing import Any

import optuna

from optuna_skopt import SkoptSampler
from optuna_skopt._optimizer import _Optimizer

# What the app passes as its defaults.
SEED_DEFAULTS: dict[str, Any] = {
    "base_estimator": "ET",
    "n_initial_points": 10,
    "acq_func": "EI",
    "acq_func_kwargs": {"xi": 0.02},
}
LATENCY_POINTS = (10, 50, 100)
# Asks at N, N+1 and N+2 completed trials are pooled, so one slow ask does not decide a figure.
LATENCY_WINDOW = 3
TARGET_ASK_LATENCY_S = 1.0
TARGET_BEST_RATIO = 1.0

_OPTIMIZER_PENALTY = {"Adam": 0.0, "Adadelta": 0.3, "RMSprop": 0.1, "SGD": 0.4, "MADGRAD": 0.05}


def objective(trial: optuna.Trial) -> float:
    """A loss-like function over the app's conditional search space; lower is better."""
    n_layers = trial.suggest_int("num_fc_layers", 4, 8)
    loss = 0.1 * abs(n_layers - 6)
    for i in range(n_layers):
        features = trial.suggest_int(f"fc_output_feat_{i}", 8, 64)
        dropout = trial.suggest_float(f"fc_dropout_{i}", 0.0, 0.5)
        loss += (((features - 32) / 56) ** 2 + (dropout - 0.2) ** 2) / n_layers
    loss += ((trial.suggest_int("last_fc", 8, 64) - 48) / 56) ** 2
    optimizer = trial.suggest_categorical("optimizer", list(_OPTIMIZER_PENALTY))
    loss += _OPTIMIZER_PENALTY[optimizer]
    lr = trial.suggest_float("lr", 1e-4, 1e-2, log=True)
    loss += 0.5 * (math.log10(lr) + 2.5) ** 2
    # Noise that differs between trials but is reproducible run to run.
    return loss + 0.01 * math.sin(trial.number * 12.9898)


def run_study(
    sampler: optuna.samplers.BaseSampler, n_trials: int
) -> tuple[optuna.Study, list[float]]:
    """Run ``n_trials`` with ask/tell, timing the sampler's share of each trial.

    Returns:
        The study, and per trial the seconds spent in ``ask`` plus parameter suggestion
        (Optuna computes relative samples lazily, at the first ``suggest_*`` call).
    """
    study = optuna.create_study(sampler=sampler)
    ask_seconds = []
    for _ in range(n_trials):
        start = time.perf_counter()
        trial = study.ask()
        value = objective(trial)
        ask_seconds.append(time.perf_counter() - start)
        study.tell(trial, value)
    return study, ask_seconds


def idle_ask_seconds(study: optuna.Study) -> tuple[float, float]:
    """Time two asks in a row with no result in between, as parallel workers would.

    Returns:
        The first ask (refits on the results since the last ask) and the second (cache hit,
        nothing new to tell, so no refit).
    """
    seconds = []
    for _ in range(2):
        start = time.perf_counter()
        objective(study.ask())
        seconds.append(time.perf_counter() - start)
    return seconds[0], seconds[1]


def rebuild_seconds(study: optuna.Study, sampler: SkoptSampler, n_completed: int) -> float:
    """Time a from-scratch optimizer over the first ``n_completed`` trials, i.e. no cache."""
    trials = study.trials[: n_completed + 1]
    space = sampler.infer_relative_search_space(study, trials[-1])
    start = time.perf_counter()
    optimizer = _Optimizer(space, sampler._skopt_kwargs, random_state=0)
    observations = {}
    for trial in trials[:n_completed]:
        assert trial.value is not None
        observation = optimizer.observe(trial.params, trial.value)
        if observation is not None:
            observations[trial.number] = observation
    optimizer.sync(observations)
    optimizer.ask()
    return time.perf_counter() - start


def _values(study: optuna.Study) -> list[float]:
    return [t.value for t in study.trials if t.value is not None]


def best_after(values: list[float], n: int) -> float:
    return min(values[:n])


MODE_VARIANTS: dict[str, dict[str, Any]] = {
    "skopt_intersection": {"search_space": "intersection"},
    "skopt_union": {"search_space": "union"},
    "skopt_union_pruned": {"search_space": "union", "consider_pruned_trials": True},
}
N_EPOCHS = 10


def pruned_objective(trial: optuna.Trial) -> float:
    """``objective`` as a learning curve: epoch e reports the final loss plus 0.5 / (e + 1)."""
    final = objective(trial)
    for epoch in range(N_EPOCHS):
        trial.report(final + 0.5 / (epoch + 1), epoch)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return final


def mode_sampler(variant: str, seed: int) -> optuna.samplers.BaseSampler:
    """One of ``MODE_VARIANTS``, random or TPE multivariate+group, seeded."""
    if variant == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if variant == "tpe_multivariate":
        return optuna.samplers.TPESampler(multivariate=True, group=True, seed=seed)
    # A smaller acquisition sample than skopt's 10000 keeps the comparison to about a minute.
    skopt_kwargs = {**SEED_DEFAULTS, "acq_optimizer_kwargs": {"n_points": 2000}}
    return SkoptSampler(skopt_kwargs=skopt_kwargs, seed=seed, **MODE_VARIANTS[variant])


def compare_modes(seeds: int, n_trials: int) -> dict[str, Any]:
    """Best final loss per variant and seed (pruned trials never count as a best)."""
    variants = [*MODE_VARIANTS, "random", "tpe_multivariate"]
    best: dict[str, list[float]] = {}
    for variant in variants:
        best[variant] = []
        for seed in range(seeds):
            pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
            study = optuna.create_study(sampler=mode_sampler(variant, seed), pruner=pruner)
            study.optimize(pruned_objective, n_trials=n_trials)
            best[variant].append(study.best_value)
        print(f"{variant:20s} median best {statistics.median(best[variant]):.4f}")
    return {
        "trials": n_trials,
        "seeds": seeds,
        "median_best": {v: round(statistics.median(values), 4) for v, values in best.items()},
        "best": {v: [round(x, 4) for x in values] for v, values in best.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=50, help="trials for the quality check")
    parser.add_argument("--modes", action="store_true", help="compare the sampler's modes")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if args.modes:
        print(json.dumps(compare_modes(args.seeds, args.trials)))
        return

    started = time.perf_counter()
    n_latency_trials = max(LATENCY_POINTS) + LATENCY_WINDOW
    skopt_best, random_best = [], []
    refit_ask = idle_ask = math.nan
    latency: dict[int, float] = {}
    rebuild: dict[int, float] = {}
    for seed in range(args.seeds):
        sampler = SkoptSampler(skopt_kwargs=SEED_DEFAULTS, seed=seed)
        # The first seed's run doubles as the latency run, so it goes on to 100+ trials.
        n_trials = max(args.trials, n_latency_trials) if seed == 0 else args.trials
        study, ask_seconds = run_study(sampler, n_trials)
        skopt_best.append(best_after(_values(study), args.trials))
        if seed == 0:
            for n in LATENCY_POINTS:
                window = range(n, n + LATENCY_WINDOW)
                latency[n] = statistics.median(ask_seconds[i] for i in window)
                rebuild[n] = statistics.median(rebuild_seconds(study, sampler, i) for i in window)
            refit_ask, idle_ask = idle_ask_seconds(study)
        random_study, _ = run_study(optuna.samplers.RandomSampler(seed=seed), args.trials)
        random_best.append(best_after(_values(random_study), args.trials))

    median_skopt = statistics.median(skopt_best)
    median_random = statistics.median(random_best)
    best_ratio = median_skopt / median_random
    for n in LATENCY_POINTS:
        print(
            f"ask latency with {n:3d} completed trials: {latency[n] * 1000:7.1f} ms cached, "
            f"{rebuild[n] * 1000:7.1f} ms rebuilding from scratch "
            f"(cached/rebuild = {latency[n] / rebuild[n]:.2f})"
        )
    print(
        f"two asks with no result in between, at {n_latency_trials} trials: "
        f"{refit_ask * 1000:.1f} ms, then {idle_ask * 1000:.1f} ms (no refit needed)"
    )
    print(
        f"best after {args.trials} trials, median of {args.seeds} seeds: "
        f"skopt {median_skopt:.4f} vs random {median_random:.4f} "
        f"(skopt/random = {best_ratio:.3f}; lower is better)"
    )
    print(f"skopt per seed:  {[round(v, 4) for v in skopt_best]}")
    print(f"random per seed: {[round(v, 4) for v in random_best]}")
    max_latency = max(latency.values())
    figures = {
        "skopt_kwargs": SEED_DEFAULTS,
        "ask_latency_s": {str(n): round(latency[n], 4) for n in LATENCY_POINTS},
        "rebuild_latency_s": {str(n): round(rebuild[n], 4) for n in LATENCY_POINTS},
        "cached_over_rebuild": {str(n): round(latency[n] / rebuild[n], 3) for n in LATENCY_POINTS},
        "ask_latency_s_without_new_results": round(idle_ask, 4),
        "trials": args.trials,
        "seeds": args.seeds,
        "skopt_best": [round(v, 5) for v in skopt_best],
        "random_best": [round(v, 5) for v in random_best],
        "skopt_median_best": round(median_skopt, 5),
        "random_median_best": round(median_random, 5),
        "best_ratio": round(best_ratio, 4),
        "targets": {
            "ask_latency_s_max": TARGET_ASK_LATENCY_S,
            "best_ratio_max": TARGET_BEST_RATIO,
        },
        "met": {
            "ask_latency": max_latency <= TARGET_ASK_LATENCY_S,
            "best_ratio": best_ratio < TARGET_BEST_RATIO,
        },
        "runtime_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
