from __future__ import annotations

from importlib.metadata import EntryPoint

import optuna
import pytest

from agehpo import plugins
from agehpo.plugins import PluginError, create_pruner, create_sampler, pruner_names, sampler_names


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("random", optuna.samplers.RandomSampler),
        ("tpe", optuna.samplers.TPESampler),
        ("gp", optuna.samplers.GPSampler),
        ("cmaes", optuna.samplers.CmaEsSampler),
        ("qmc", optuna.samplers.QMCSampler),
    ],
)
def test_builtin_samplers(name: str, cls: type) -> None:
    assert isinstance(create_sampler(name, seed=1), cls)


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("median", optuna.pruners.MedianPruner),
        ("hyperband", optuna.pruners.HyperbandPruner),
        ("successive_halving", optuna.pruners.SuccessiveHalvingPruner),
        ("percentile", optuna.pruners.PercentilePruner),
        ("none", optuna.pruners.NopPruner),
    ],
)
def test_builtin_pruners(name: str, cls: type) -> None:
    assert isinstance(create_pruner(name), cls)


def test_names_list_builtins_and_installed_plugins() -> None:
    assert {"random", "tpe", "gp", "cmaes", "qmc", "skopt"} <= set(sampler_names())
    assert {"median", "hyperband", "successive_halving", "percentile", "none"} <= set(
        pruner_names()
    )


def test_unknown_names_give_one_line_listing_the_valid_ones() -> None:
    with pytest.raises(PluginError) as sampler_error:
        create_sampler("annealing")
    message = str(sampler_error.value)
    assert "\n" not in message
    assert "sampler='annealing'" in message
    assert all(name in message for name in ("random", "tpe", "skopt", "gp", "cmaes", "qmc"))
    with pytest.raises(PluginError, match=r"pruner='wilcoxon'.*median, none, percentile"):
        create_pruner("wilcoxon")


def test_sampler_kwargs_override_and_unknown_keys_are_named() -> None:
    sampler = create_sampler("tpe", {"n_startup_trials": 3}, seed=1)
    assert isinstance(sampler, optuna.samplers.TPESampler)
    assert sampler._n_startup_trials == 3
    with pytest.raises(
        PluginError, match="sampler_kwargs key 'warp' is not accepted by sampler 'tpe'"
    ):
        create_sampler("tpe", {"warp": 9})


def test_skopt_resolves_through_the_entry_point_group_with_the_seeds_defaults() -> None:
    sampler = create_sampler("skopt", seed=1)
    assert type(sampler).__module__.startswith("optuna_skopt")
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2, n_trials=3)
    assert len(study.trials) == 3


def test_third_party_plugins_register_through_entry_point_groups(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registered = {
        plugins.SAMPLER_GROUP: [
            EntryPoint("brute", "optuna.samplers:BruteForceSampler", plugins.SAMPLER_GROUP)
        ],
        plugins.PRUNER_GROUP: [
            EntryPoint("threshold", "optuna.pruners:ThresholdPruner", plugins.PRUNER_GROUP)
        ],
    }
    monkeypatch.setattr(plugins, "entry_points", lambda group: registered.get(group, []))
    assert "brute" in sampler_names()
    assert isinstance(create_sampler("brute", seed=2), optuna.samplers.BruteForceSampler)
    pruner = create_pruner("threshold", {"lower": 0.2})
    assert isinstance(pruner, optuna.pruners.ThresholdPruner)


def test_a_plugin_that_fails_to_import_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = EntryPoint("broken", "no_such_module_xyz:Sampler", plugins.SAMPLER_GROUP)
    monkeypatch.setattr(
        plugins, "entry_points", lambda group: [broken] if group == plugins.SAMPLER_GROUP else []
    )
    with pytest.raises(
        PluginError, match="sampler 'broken' is registered by 'no_such_module_xyz:Sampler'"
    ):
        create_sampler("broken")
