"""The seed's search space: one function from an Optuna trial to a params dict."""

from __future__ import annotations

from typing import Any

import optuna

from agehpo.names import OPTIMIZERS


def suggest(trial: optuna.trial.BaseTrial) -> dict[str, Any]:
    """Sample one configuration in the seed's order, names and ranges (conditional: layer
    ``i``'s size and dropout exist only when ``num_fc_layers > i``)."""
    num_fc_layers = trial.suggest_int("num_fc_layers", 4, 8)
    params: dict[str, Any] = {"num_fc_layers": num_fc_layers}
    for i in range(num_fc_layers):
        params[f"fc_output_feat_{i}"] = trial.suggest_int(f"fc_output_feat_{i}", 8, 64)
        params[f"fc_dropout_{i}"] = trial.suggest_float(f"fc_dropout_{i}", 0.0, 0.5)
    params["last_fc"] = trial.suggest_int("last_fc", 8, 64)
    params["optimizer"] = trial.suggest_categorical("optimizer", OPTIMIZERS)
    params["lr"] = trial.suggest_float("lr", 1e-4, 1e-2, log=True)
    return params
