from __future__ import annotations

import subprocess
import sys
from importlib.metadata import EntryPoint
from types import SimpleNamespace

import optuna
import pytest
from optuna.trial import create_trial

from agehpo import plugins
from agehpo.plugins import PluginError, create_pruner, create_sampler, names


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("random", optuna.samplers.RandomSampler),
        ("tpe", optuna.samplers.TPESampler),
        ("tpe_multivariate", optuna.samplers.TPESampler),
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
    assert {"random", "tpe", "tpe_multivariate", "gp", "cmaes", "qmc", "skopt"} <= set(
        names("sampler")
    )
    assert {"median", "hyperband", "successive_halving", "percentile", "none"} <= set(
        names("pruner")
    )


@pytest.mark.slow
def test_unknown_names_fail_before_optuna_is_imported() -> None:
    code = (
        "import sys\nfrom agehpo.plugins import PluginError, create_sampler\n"
        "try:\n    create_sampler('nope')\nexcept PluginError:\n"
        "    print('optuna' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_unknown_names_give_one_line_listing_the_valid_ones() -> None:
    with pytest.raises(PluginError) as sampler_error:
        create_sampler("annealing")
    message = str(sampler_error.value)
    assert "\n" not in message
    assert "sampler='annealing'" in message
    assert all(name in message for name in ("random", "tpe", "skopt", "gp", "cmaes", "qmc"))
    with pytest.raises(PluginError, match=r"pruner='wilcoxon'.*median, none, percentile"):
        create_pruner("wilcoxon")


def test_sampler_kwargs_override_and_unknown_keys_are_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    received: list[dict[str, object]] = []

    def tpe(*, n_startup_trials: int = 10, seed: int | None = None) -> optuna.samplers.TPESampler:
        received.append({"n_startup_trials": n_startup_trials, "seed": seed})
        return optuna.samplers.TPESampler(n_startup_trials=n_startup_trials, seed=seed)

    with pytest.raises(
        PluginError,
        match=r"sampler_kwargs key 'warp' is not accepted by sampler 'tpe'; accepted keys: .*seed",
    ):
        create_sampler("tpe", {"warp": 9})
    entry_point = SimpleNamespace(name="tpe", value="fake:tpe", load=lambda: tpe)
    monkeypatch.setattr(plugins, "entry_points", lambda group: [entry_point])
    assert isinstance(
        create_sampler("tpe", {"n_startup_trials": 3}, seed=1), optuna.samplers.TPESampler
    )
    create_sampler("tpe", {"seed": 5}, seed=1)  # the user's seed wins
    create_sampler("tpe")
    assert received == [
        {"n_startup_trials": 3, "seed": 1},
        {"n_startup_trials": 10, "seed": 5},
        {"n_startup_trials": 10, "seed": None},
    ]


def test_keys_a_wrapper_does_not_take_merge_into_its_librarys_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    received: list[dict[str, object]] = []

    def skopt(
        *,
        search_space: str = "",
        consider_pruned_trials: bool = False,
        skopt_kwargs: dict | None = None,
        seed: int | None = None,
    ) -> object:
        received.append(
            {
                "search_space": search_space,
                "consider_pruned_trials": consider_pruned_trials,
                "skopt_kwargs": skopt_kwargs,
                "seed": seed,
            }
        )
        return optuna.samplers.RandomSampler(seed=seed)

    entry_point = SimpleNamespace(name="skopt", value="fake:skopt", load=lambda: skopt)
    monkeypatch.setattr(
        plugins,
        "entry_points",
        lambda group: [entry_point] if group == plugins.SAMPLER_GROUP else [],
    )
    create_sampler("skopt", {"acq_func": "PI", "acq_func_kwargs": {"kappa": 2}}, seed=3)
    expected = {
        "base_estimator": "ET",
        "n_initial_points": 10,
        "acq_func": "PI",
        "acq_func_kwargs": {"xi": 0.02, "kappa": 2},
    }
    defaults = {"search_space": "union", "consider_pruned_trials": True}
    assert received == [{**defaults, "skopt_kwargs": expected, "seed": 3}]
    assert plugins.SAMPLER_DEFAULTS["skopt"]["skopt_kwargs"]["acq_func"] == "EI"  # not mutated


def test_a_constructor_that_rejects_its_kwargs_is_reported_in_one_line() -> None:
    with pytest.raises(PluginError) as sampler_error:
        create_sampler("qmc", {"qmc_type": "bad"})
    assert str(sampler_error.value) == (
        "sampler 'qmc' rejected sampler_kwargs='{\"qmc_type\": \"bad\"}': The `qmc_type='bad'` "
        "is invalid. Choose either `halton` or `sobol`; fix or drop those keys"
    )
    with pytest.raises(PluginError) as pruner_error:
        create_pruner("median", {"n_startup_trials": -1})
    assert str(pruner_error.value) == (
        "pruner 'median' rejected kwargs='{\"n_startup_trials\": -1}': Number of startup trials "
        "cannot be negative, but got n_startup_trials=-1"
    )


def test_skopt_resolves_through_the_entry_point_group_with_the_seeds_defaults() -> None:
    sampler = create_sampler("skopt", seed=1)
    assert type(sampler).__module__.startswith("optuna_skopt")
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2, n_trials=3)
    assert len(study.trials) == 3


def _conditional(trial: optuna.Trial) -> float:
    n = trial.suggest_int("n", 1, 3)
    return sum(trial.suggest_float(f"x_{i}", -1, 1) ** 2 for i in range(n)) + 0.1 * n


@pytest.mark.parametrize(
    ("kwargs", "modelled"),
    [({}, {"n", "x_0", "x_1", "x_2"}), ({"search_space": "intersection"}, {"n", "x_0"})],
    ids=["union-by-default", "intersection-on-request"],
)
def test_skopt_models_the_seeds_conditional_space_by_default(
    kwargs: dict[str, object], modelled: set[str]
) -> None:
    sampler = create_sampler("skopt", kwargs, seed=0)
    study = optuna.create_study(sampler=sampler)
    x = optuna.distributions.FloatDistribution(-1, 1)
    for n in (1, 3):
        distributions = {"n": optuna.distributions.IntDistribution(1, 3)}
        distributions |= {f"x_{i}": x for i in range(n)}
        params = {"n": n, **{f"x_{i}": 0.5 for i in range(n)}}
        study.add_trial(create_trial(params=params, distributions=distributions, value=n))
    study.optimize(_conditional, n_trials=2)
    assert set(sampler.infer_relative_search_space(study, study.trials[-1])) == modelled


def test_tpe_multivariate_is_tpe_over_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    received: list[dict[str, object]] = []

    class Spy(optuna.samplers.TPESampler):
        def __init__(self, **kwargs: object) -> None:
            received.append(kwargs)
            super().__init__(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(optuna.samplers, "TPESampler", Spy)
    create_sampler("tpe_multivariate", {"n_startup_trials": 4}, seed=2)
    create_sampler("tpe", seed=2)
    assert received == [
        {"multivariate": True, "group": True, "n_startup_trials": 4, "seed": 2},
        {"seed": 2},
    ]


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
    assert "brute" in names("sampler")
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
