"""Check that the synthetic faces sit in the required difficulty band.

Run: ``python benchmarks/check_difficulty.py [--epochs 50] [--n-samples 23705]
[--style '{"age_jitter": 0.2}']``. On the default synthetic set (img_size 24, the seed's
stratified split) it trains, with the project's model and training loop:

* the seed's best configuration (5 FC layers 55/53/62/62/28, dropouts .13/.15/.07/.04/.39,
  last_fc 55, Adam lr 0.00268, batch 128): its validation age accuracy after the last epoch
  must lie in [0.62, 0.85] (aim ~0.70);
* the same network with SGD at lr 1e-4: it must stay within 0.05 of the validation
  majority-class rate (~0.50).

Prints progress, then as its last line one JSON object with the figures, the band and
``ok``. Exit status 0 when both points hold, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from agehpo import data
from agehpo.data import synthetic
from agehpo.nn import model, train

BEST_PARAMS = {
    "num_fc_layers": 5,
    **{f"fc_output_feat_{i}": w for i, w in enumerate((55, 53, 62, 62, 28))},
    **{f"fc_dropout_{i}": p for i, p in enumerate((0.13, 0.15, 0.07, 0.04, 0.39))},
    "last_fc": 55,
    "optimizer": "Adam",
    "lr": 0.00268,
}
SGD_PARAMS = {**BEST_PARAMS, "optimizer": "SGD", "lr": 1e-4}
BEST_BAND = (0.62, 0.85)
SGD_MARGIN = 0.05


def fit(
    params: dict, prepared: data.PreparedData, epochs: int, seed: int, label: str
) -> list[float]:
    """Train one configuration; returns the validation age accuracy after every epoch."""
    torch.manual_seed(seed)
    net = model.build_model(params, prepared.img_size**2)
    optimizer = train.make_optimizer(params["optimizer"], net.parameters(), params["lr"])
    generator = torch.Generator().manual_seed(seed)
    history = []
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        loss = train.train_epoch(
            net, optimizer, prepared.train, batch_size=128, generator=generator
        )
        history.append(train.evaluate(net, prepared.val).age_accuracy)
        if epoch % 10 == 0 or epoch == epochs:
            print(
                f"  {label} epoch {epoch:3d}: train loss {loss:.3f}  val age acc {history[-1]:.3f}"
            )
    print(f"  {label}: {(time.perf_counter() - start) / epochs:.2f} s/epoch")
    return history


def main() -> int:
    """Run the check; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--n-samples", type=int, default=23705)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--style", default="{}", help="FaceStyle overrides as JSON")
    parser.add_argument("--skip-sgd", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (shared CPUs)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    style = synthetic.FaceStyle(**json.loads(args.style))
    start = time.perf_counter()
    table = synthetic.make_synthetic(args.n_samples, seed=args.seed, style=style)
    prepared = data.prepare(table, img_size=24, split_seed=args.seed)
    print(f"data: {len(table)} faces in {time.perf_counter() - start:.1f} s, style {style}")
    val_bins = prepared.val.age_bin.numpy()
    majority = float(np.bincount(val_bins, minlength=5).max() / val_bins.size)
    print(f"validation majority-class rate: {majority:.3f}")

    best = fit(BEST_PARAMS, prepared, args.epochs, args.seed, "best-config")
    sgd = [] if args.skip_sgd else fit(SGD_PARAMS, prepared, args.epochs, args.seed, "sgd-1e-4")
    best_ok = BEST_BAND[0] <= best[-1] <= BEST_BAND[1]
    sgd_ok = args.skip_sgd or abs(sgd[-1] - majority) <= SGD_MARGIN
    print(f"best config val age accuracy {best[-1]:.3f} (band {BEST_BAND}): {best_ok}")
    if sgd:
        print(f"SGD lr 1e-4 val age accuracy {sgd[-1]:.3f} (majority {majority:.3f}): {sgd_ok}")
    result = {
        "epochs": args.epochs,
        "n_samples": args.n_samples,
        "best_val_age_accuracy": round(best[-1], 4),
        "best_val_age_accuracy_max": round(max(best), 4),
        "sgd_val_age_accuracy": round(sgd[-1], 4) if sgd else None,
        "majority_rate": round(majority, 4),
        "targets": {"best_band": list(BEST_BAND), "sgd_within_majority": SGD_MARGIN},
        "ok": bool(best_ok and sgd_ok),
    }
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
