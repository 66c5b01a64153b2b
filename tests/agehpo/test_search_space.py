from __future__ import annotations

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from agehpo.search_space import suggest


def test_the_seeds_names_and_ranges() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    study.optimize(lambda trial: float(len(suggest(trial))), n_trials=30)
    seen_layers = set()
    for trial in study.trials:
        n_layers = trial.params["num_fc_layers"]
        seen_layers.add(n_layers)
        expected = {"num_fc_layers", "last_fc", "optimizer", "lr"}
        expected |= {f"fc_output_feat_{i}" for i in range(n_layers)}
        expected |= {f"fc_dropout_{i}" for i in range(n_layers)}
        assert set(trial.params) == expected
        d = trial.distributions
        assert d["num_fc_layers"] == IntDistribution(4, 8)
        assert d["last_fc"] == IntDistribution(8, 64)
        assert d["fc_output_feat_0"] == IntDistribution(8, 64)
        assert d["fc_dropout_0"] == FloatDistribution(0.0, 0.5)
        assert d["lr"] == FloatDistribution(1e-4, 1e-2, log=True)
        assert d["optimizer"] == CategoricalDistribution(
            ("Adam", "Adadelta", "RMSprop", "SGD", "MADGRAD")
        )
    assert seen_layers == {4, 5, 6, 7, 8}
