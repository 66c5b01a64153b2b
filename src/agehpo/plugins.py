"""Samplers and pruners by name: built-ins, plus factories taking keyword arguments that
packages register as entry points in the ``agehpo.samplers`` or ``agehpo.pruners`` group."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import optuna

from agehpo.errors import UserError, quote

SAMPLER_GROUP = "agehpo.samplers"
PRUNER_GROUP = "agehpo.pruners"

Factories = Mapping[str, Callable[..., Any]]
_BUILTIN_SAMPLERS: Factories = {
    "random": optuna.samplers.RandomSampler,
    "tpe": optuna.samplers.TPESampler,
    "gp": optuna.samplers.GPSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
    "qmc": optuna.samplers.QMCSampler,
}
_BUILTIN_PRUNERS: Factories = {
    "median": optuna.pruners.MedianPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "percentile": lambda **kw: optuna.pruners.PercentilePruner(**{"percentile": 25.0, **kw}),
    "none": optuna.pruners.NopPruner,
}
# The seed's skopt settings: Extra-Trees surrogate, 10 random starts, EI with xi 0.02.
SAMPLER_DEFAULTS: dict[str, dict[str, Any]] = {
    "skopt": {
        "skopt_kwargs": {
            "base_estimator": "ET",
            "n_initial_points": 10,
            "acq_func": "EI",
            "acq_func_kwargs": {"xi": 0.02},
        }
    },
}
# Where a sampler wraps another library, keys it does not take itself go to that library.
_NESTED_KWARGS = ("skopt_kwargs",)


class PluginError(UserError, ValueError):
    """A sampler or pruner name or its arguments were not accepted. The message is one line."""


def _plugins(kind: str) -> dict[str, EntryPoint]:
    group = SAMPLER_GROUP if kind == "sampler" else PRUNER_GROUP
    return {entry_point.name: entry_point for entry_point in entry_points(group=group)}


def sampler_names() -> list[str]:
    """All sampler names: built-in ones and those registered under ``agehpo.samplers``."""
    return sorted({*_BUILTIN_SAMPLERS, *_plugins("sampler")})


def pruner_names() -> list[str]:
    """All pruner names: built-in ones and those registered under ``agehpo.pruners``."""
    return sorted({*_BUILTIN_PRUNERS, *_plugins("pruner")})


def _resolve(kind: str, name: str, builtins: Factories) -> Callable[..., Any]:
    plugins = _plugins(kind)
    # Plugins win over built-ins so a package can replace a default implementation.
    if name in plugins:
        try:
            factory: Callable[..., Any] = plugins[name].load()
        except ImportError as error:
            raise PluginError(
                f"{kind} {name!r} is registered by {plugins[name].value!r} but could not be "
                f"imported ({_reason(error)}); reinstall it: pip install -e ."
            ) from error
        return factory
    if name in builtins:
        return builtins[name]
    valid = ", ".join(sorted({*builtins, *plugins}))
    hint = " (it comes with the optuna_skopt plugin: pip install -e .)" if name == "skopt" else ""
    raise PluginError(f"{kind}={quote(name)} is not installed{hint}; valid names: {valid}")


def _accepted_keywords(factory: Callable[..., Any]) -> set[str] | None:
    """Keyword names ``factory`` takes, or None when it takes any (``**kwargs``)."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters if p.kind is not inspect.Parameter.VAR_POSITIONAL}


def _build_kwargs(
    kind: str, name: str, factory: Callable[..., Any], kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    accepted = _accepted_keywords(factory)
    if accepted is None:
        return dict(kwargs)
    merged: dict[str, Any] = {}
    nested = next((key for key in _NESTED_KWARGS if key in accepted), None)
    for key, value in kwargs.items():
        if key in accepted:
            merged[key] = value
        elif nested is not None:
            merged[nested] = {**merged.get(nested, {}), key: value}
        else:
            raise PluginError(
                f"{kind}_kwargs key {quote(key)} is not accepted by {kind} {name!r}; "
                f"accepted keys: {', '.join(sorted(accepted))}"
            )
    return merged


def _reason(error: BaseException) -> str:
    """An exception's text as one short printable line (third-party texts can be long)."""
    text = " ".join(str(error).split()).rstrip(".") or "no reason given"
    return text if len(text) <= 200 and text.isprintable() else quote(text, 200)


def _merge(defaults: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    nested = {
        key: _merge(defaults[key], value)
        for key, value in overrides.items()
        if isinstance(value, Mapping) and isinstance(defaults.get(key), Mapping)
    }
    return {**defaults, **overrides, **nested}


def _create(
    kind: str, name: str, builtins: Factories, kwargs: Mapping[str, Any] | None, seed: int | None
) -> Any:
    """Resolve ``name``, check and complete its keyword arguments, and call the factory."""
    factory = _resolve(kind, name, builtins)
    user_kwargs = dict(kwargs or {})
    accepted = _accepted_keywords(factory)
    if seed is not None and "seed" not in user_kwargs and (accepted is None or "seed" in accepted):
        user_kwargs["seed"] = seed
    built = _build_kwargs(kind, name, factory, user_kwargs)
    if is_sampler := kind == "sampler":
        built = _merge(SAMPLER_DEFAULTS.get(name, {}), built)
    try:
        return factory(**built)
    except Exception as error:  # any plugin's constructor: its only input is the user's
        shown = quote(json.dumps(dict(kwargs or {}), default=str))
        label, hint = (
            ("sampler_kwargs", "; fix or drop those keys") if is_sampler else ("kwargs", "")
        )
        raise PluginError(
            f"{kind} {name!r} rejected {label}={shown}: {_reason(error)}{hint}"
        ) from error


def create_sampler(
    name: str, kwargs: Mapping[str, Any] | None = None, *, seed: int | None = None
) -> optuna.samplers.BaseSampler:
    """Build a sampler by name.

    Args:
        name: A name from :func:`sampler_names`.
        kwargs: Constructor overrides (``sampler_kwargs``); keys a sampler wrapping a library
            (skopt) does not take go to that library.
        seed: Passed as ``seed`` when the sampler takes one and ``kwargs`` sets none.

    Returns:
        The sampler.

    Raises:
        PluginError: For an unknown name or a key the sampler does not accept.
    """
    return _create("sampler", name, _BUILTIN_SAMPLERS, kwargs, seed)


def create_pruner(name: str, kwargs: Mapping[str, Any] | None = None) -> optuna.pruners.BasePruner:
    """Build a pruner by name.

    Args:
        name: A name from :func:`pruner_names`.
        kwargs: Constructor overrides.

    Returns:
        The pruner.

    Raises:
        PluginError: For an unknown name or a key the pruner does not accept.
    """
    return _create("pruner", name, _BUILTIN_PRUNERS, kwargs, None)
