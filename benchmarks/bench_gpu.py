"""GPU fast path: seconds per epoch three ways, concurrent trials, and the seed's whole study.

Run on a machine with CUDA: python benchmarks/bench_gpu.py. Without CUDA it prints "no GPU"
and exits 0. Everything is measured in the same run; the last line is one JSON object.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_epoch import SEED_BEST, SeedStyleDataset, seed_style_epoch

TARGETS = {"graph_vs_seed_style_speedup": 10.0, "seed_study_wall_s": 60.0}


def _time(fn: Callable[[], Any], repeats: int = 2) -> float:
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def per_epoch(data: Any, table: Any, train_index: Any) -> dict[str, float]:
    import numpy as np
    from torch.utils.data import DataLoader

    from agehpo.data import age_to_bin
    from agehpo.nn.cuda_graph import GraphTrainStep
    from agehpo.nn.model import build_model
    from agehpo.nn.train import make_optimizer, train_epoch

    labels = np.stack([age_to_bin(table.age), table.ethnicity, table.gender], 1).astype(np.int64)
    loader = DataLoader(
        SeedStyleDataset(table.pixels[train_index], labels[train_index], 24),
        batch_size=128,
        shuffle=True,
    )
    seed_s = _time(lambda: seed_style_epoch(loader, 24, device="cuda"), repeats=1)
    model = build_model(SEED_BEST, 576).cuda()
    optimizer = make_optimizer("Adam", model.parameters(), SEED_BEST["lr"])
    eager_s = _time(lambda: train_epoch(model, optimizer, data.train, batch_size=128))
    model = build_model(SEED_BEST, 576).cuda()
    optimizer = make_optimizer("Adam", model.parameters(), SEED_BEST["lr"], capturable=True)
    start = time.perf_counter()
    step = GraphTrainStep(
        model, optimizer, data.train, batch_size=128, capture_lock=threading.Lock()
    )
    torch.cuda.synchronize()
    capture_s = time.perf_counter() - start
    graph_s = _time(step.epoch, repeats=3)
    return {"seed_style_s": seed_s, "eager_s": eager_s, "graph_s": graph_s, "capture_s": capture_s}


def concurrent_epochs_per_s(data: Any, n_jobs: int, epochs: int = 10) -> float:
    import optuna

    from agehpo.objective import Objective

    objective = Objective(
        data,
        n_epochs=epochs,
        batch_size=128,
        device=torch.device("cuda"),
        seed=13,
        cuda_graphs=True,
    )
    threads = [
        threading.Thread(target=objective, args=(optuna.trial.FixedTrial(SEED_BEST, number=i),))
        for i in range(n_jobs)
    ]
    torch.cuda.synchronize()
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    torch.cuda.synchronize()
    return n_jobs * epochs / (time.perf_counter() - start)


def seed_study(data: Any, n_jobs: int) -> dict[str, float]:
    """100 trials x 50 epochs, median pruner, skopt, tracking on; time spent in ask and MLflow."""
    from agehpo.cli import format_summary
    from agehpo.config import StudyConfig
    from agehpo.study import run_study
    from optuna_mlflow import MLflowCallback
    from optuna_skopt import SkoptSampler

    spent = {"sampling_s": 0.0, "tracking_s": 0.0}
    lock = threading.Lock()

    def timed(cls: type, name: str, bucket: str) -> None:
        original = getattr(cls, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                with lock:
                    spent[bucket] += time.perf_counter() - start

        setattr(cls, name, wrapper)

    for name in ("sample_relative", "sample_independent", "infer_relative_search_space"):
        timed(SkoptSampler, name, "sampling_s")
    for name in ("__call__", "log_step"):
        timed(MLflowCallback, name, "tracking_s")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        os.chdir(tmp)
        config = StudyConfig(
            sampler="skopt",
            n_trials=100,
            n_epochs=50,
            storage=f"sqlite:///{tmp}/optuna.db",
            n_jobs=n_jobs,
            device="cuda-graph",
        )
        start = time.perf_counter()
        result = run_study(config, track=True, data=data, out=print)
        wall = time.perf_counter() - start
        print(format_summary(result, config))
    return {"wall_s": wall, **spent, "n_complete": result.counts["COMPLETE"]}


def main() -> None:
    if not torch.cuda.is_available():
        print("no GPU")
        return
    from agehpo.data import age_to_bin, make_synthetic, prepare, stratified_split

    table = make_synthetic(23705, seed=13)
    train_index, _, _ = stratified_split(age_to_bin(table.age), seed=13)
    prepared = prepare(table, img_size=24)
    data = type(prepared)(
        train=prepared.train.to("cuda"),
        val=prepared.val.to("cuda"),
        test=prepared.test.to("cuda"),
        img_size=24,
        source=prepared.source,
        digest=prepared.digest,
    )
    epoch = per_epoch(data, table, train_index)
    print(
        f"s/epoch: seed-style {epoch['seed_style_s']:.3f}, eager {epoch['eager_s']:.3f}, "
        f"graph {epoch['graph_s']:.4f} (capture {epoch['capture_s']:.3f} s per trial)"
    )
    speedup = epoch["seed_style_s"] / epoch["graph_s"]
    print(f"graph vs seed-style: {speedup:.1f}x (target >= 10x)")
    scaling = {n: concurrent_epochs_per_s(data, n) for n in (1, 4, 8)}
    for n, rate in scaling.items():
        print(f"{n} concurrent trials: {rate:.1f} epochs/s")
    best_jobs = max(scaling, key=lambda n: scaling[n])
    study = seed_study(data, best_jobs)
    print(
        f"seed study (100 trials, 50 epochs, skopt, median, tracking on, n_jobs={best_jobs}): "
        f"{study['wall_s']:.1f} s wall; sampling {study['sampling_s']:.1f} s, "
        f"tracking {study['tracking_s']:.1f} s (target <= 60 s)"
    )
    print(
        json.dumps(
            {
                **{k: round(v, 4) for k, v in epoch.items()},
                "graph_vs_seed_style_speedup": round(speedup, 2),
                "epochs_per_s": {str(n): round(r, 2) for n, r in scaling.items()},
                "seed_study_n_jobs": best_jobs,
                "seed_study_wall_s": round(study["wall_s"], 2),
                "seed_study_sampling_s": round(study["sampling_s"], 2),
                "seed_study_tracking_s": round(study["tracking_s"], 2),
                "targets": TARGETS,
            }
        )
    )


if __name__ == "__main__":
    main()
