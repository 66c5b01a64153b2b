"""Every check a command's parameters pass before anything is opened or written: a bad one
found after the study, the parent run or the model exists leaves debris. Each raises a one-line
:class:`ConfigError` (or the data and plugin errors); nothing heavy loads before the cheap ones.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from agehpo import urls
from agehpo.config import parse_samplers, sampler_kwargs_for
from agehpo.errors import ConfigError, quote, quote_path
from agehpo.hpo.cluster import check_cluster, check_scheduler, is_remote

if TYPE_CHECKING:
    from agehpo.config import StudyConfig

# Optuna's RDB storage indexes study names as VARCHAR(512); MLflow stores run names in
# VARCHAR(250) and experiment names up to 500 characters. Parent runs are named after the
# study (``compare-{name}`` for compare), so 200 leaves room for every derived name.
MAX_STUDY_NAME = 200
# MLflow keeps registered model names in VARCHAR(256); compare appends ``-{sampler}-r{k}``.
MAX_MODEL_NAME = 200
DEVICES = ("auto", "cpu", "cuda", "cuda-graph")
MAX_SEED = 2**31 - 1
IMG_SIZE_RANGE = (1, 48)
# SQLAlchemy dialects Optuna's RDBStorage is tested with.
_DIALECTS = ("sqlite", "postgresql", "mysql", "oracle", "mssql")


def check_timeout(value: float, *, shown: object = None) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a finite number of seconds >= 0."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not (number and math.isfinite(value) and value >= 0):
        raise ConfigError(
            f"timeout={quote(value if shown is None else shown)} is not accepted; expected "
            "a number of seconds >= 0 (0: no limit)"
        )


def check_positive_int(name: str, value: object) -> None:
    """Raise :class:`ConfigError` unless ``value`` is an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}={quote(value)} is not accepted; expected an integer >= 1")


def check_img_size(value: object) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a side length the 48x48 faces allow."""
    lo, hi = IMG_SIZE_RANGE
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(
            f"img_size={quote(value)} is not accepted; expected an integer {lo}..{hi} "
            f"(the faces are {hi}x{hi} and are only ever scaled down)"
        )


def _check_name(param: str, value: str, limit: int, reserve: int) -> None:
    """Shared rule of study and model names: non-blank, printable, not too long."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{param}={quote(value)} is empty; expected a name such as 'age-1'")
    if value != value.strip() or not value.isprintable():
        raise ConfigError(
            f"{param}={quote(value)} has leading/trailing spaces or control characters; "
            "expected printable characters only"
        )
    if len(value) + reserve > limit:
        room = f" ({reserve} are kept for the suffix compare adds)" if reserve else ""
        raise ConfigError(
            f"{param}={quote(value)} is {len(value)} characters long; expected at most "
            f"{limit - reserve}{room}"
        )


def check_model_name(value: str, *, reserve: int = 0) -> None:
    """Raise :class:`ConfigError` unless MLflow 3's model registry accepts the name: no '/'
    or ':', nothing a path normalisation would change ('a//b', './a', '..'), 256 characters."""
    import posixpath

    _check_name("model_name", value, MAX_MODEL_NAME, reserve)
    bad = sorted({c for c in value if c in "/:"})
    norm = posixpath.normpath(value)
    if bad or norm != value or norm == "." or norm.startswith(".."):
        what = f"contains {' and '.join(repr(c) for c in bad)}" if bad else "reads as a path"
        raise ConfigError(
            f"model_name={quote(value)} {what}; the MLflow model registry accepts names "
            "without '/' or ':' that are not '.' or '..'; use e.g. 'team-age'"
        )


def validate_storage(url: str, *, must_exist: bool = False) -> None:
    """Check a storage URL's form, and a journal file's lines, without opening it; with
    ``must_exist``, refuse a SQLite or journal file that does not exist (importing from one
    would create an empty store instead)."""
    from agehpo.hpo.journal import check_journal

    if not isinstance(url, str) or not url.strip():
        raise ConfigError(
            f"storage={quote_path(url)} is empty; expected e.g. sqlite:///optuna.db or "
            "optuna.journal"
        )
    path = urls.journal_path(url)
    if path is not None:
        if path.is_dir():
            raise ConfigError(
                f"storage={quote_path(url)} is a folder; expected a journal file path such as "
                "optuna.journal"
            )
        if must_exist and not path.is_file():
            raise _missing_store(url)
        check_journal(path)
        return
    examples = (
        "expected e.g. sqlite:///optuna.db, postgresql://user@host/db, "
        "mysql+pymysql://user@host/db or a path ending in .journal"
    )
    # The dialect is read off the text first: a wrong one is told without loading SQLAlchemy.
    dialect = url.partition("://")[0].partition("+")[0]
    if "://" in url and dialect not in _DIALECTS:
        raise ConfigError(
            f"storage={quote_path(url)} names the database {quote(dialect)}; {examples}"
        )
    parsed = urls.parse(url)
    if parsed is None:
        raise ConfigError(f"storage={quote_path(url)} is not a storage URL; {examples}")
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        if must_exist and not Path(parsed.database).is_file():
            raise _missing_store(url)
        folder = Path(parsed.database).parent
        if not folder.is_dir():
            raise ConfigError(
                f"storage={quote_path(url)}: the folder {quote_path(str(folder))} does not exist; "
                "create it or use a path in an existing folder"
            )


def _missing_store(url: str) -> ConfigError:
    return ConfigError(
        f"storage={quote_path(url)} does not exist; expected an existing Optuna storage (check "
        "the path: a sqlite:/// URL takes three slashes before a relative path, four before "
        "an absolute one)"
    )


def validate_study_config(
    config: StudyConfig, *, samplers: Sequence[str] | None = None, name_reserve: int = 0
) -> None:
    """Check every parameter of a study run before any store is opened; ``samplers``: for
    compare, the ones built instead of ``config.sampler``; ``name_reserve``: characters derived
    study and model names add. Raises a one-line ConfigError, PluginError or DataError."""
    for name in ("n_trials", "n_epochs", "n_samples", "batch_size", "n_workers", "n_jobs"):
        check_positive_int(name, getattr(config, name))
    seed, device = config.seed, config.device
    # numpy seeds samplers with 0..2**32-1; trials and compare's repeats add to the seed.
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"seed={quote(seed)} is not accepted; expected an integer 0..{MAX_SEED}")
    check_img_size(config.img_size)
    check_timeout(config.timeout)
    _check_name("study_name", config.study_name, MAX_STUDY_NAME, name_reserve)
    check_model_name(config.model_name, reserve=name_reserve)
    if device not in DEVICES:  # the names train.resolve_device knows
        raise ConfigError(f"device={quote(device)} is not accepted; expected one of {DEVICES}")
    check_plugin_names(config, samplers)  # before anything heavy is imported
    validate_storage(config.storage)
    check_parallel_storage(config)
    check_cluster(config, os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"))
    check_sampler_and_pruner(config, samplers)
    check_data(config.data)  # the only checks that may take a while: a real CSV, a scheduler
    if is_remote(config.cluster):
        check_scheduler(config.cluster)


def check_parallel_storage(config: StudyConfig) -> None:
    """Refuse SQLite for several worker processes (a ConfigError), with the alternatives."""
    if config.n_workers > 1 and config.storage.startswith("sqlite"):
        raise ConfigError(
            f"storage={quote_path(config.storage)} with n_workers={config.n_workers}: SQLite "
            "serialises writers and Optuna advises against it for parallel workers; use a "
            "journal file (-P storage=optuna.journal) or a database server "
            "(-P storage=postgresql://...)"
        )


def check_plugin_names(config: StudyConfig, samplers: Sequence[str] | None = None) -> None:
    """Refuse (PluginError) a sampler or pruner neither built in nor installed, without Optuna."""
    from agehpo.plugins import find

    for name in samplers if samplers is not None else [config.sampler]:
        find("sampler", name)
    find("pruner", config.pruner)


def check_sampler_and_pruner(config: StudyConfig, samplers: Sequence[str] | None = None) -> None:
    """Build the sampler(s) and the pruner once, as the study will: the only sure test of
    ``sampler_kwargs`` (the skopt sampler checks its ``base_estimator`` only when built)."""
    from agehpo.plugins import create_pruner, create_sampler

    if samplers is None:
        create_sampler(config.sampler, config.sampler_kwargs, seed=config.seed)
    else:
        for name in samplers:
            create_sampler(
                name, sampler_kwargs_for(name, config.sampler_kwargs, samplers), seed=config.seed
            )
    create_pruner(config.pruner)


def check_data(data: str) -> None:
    """Read a data file whole through the validating CSV reader (a bad last row stops the run
    too; a DataError); the table lands in the cache, so the study's own load is a cache hit."""
    if data == "synthetic":
        return
    from agehpo.data.facecsv import read_csv

    read_csv(data)


def validate_compare(config: StudyConfig, samplers_text: str, repeats: int) -> list[str]:
    """Check compare's parameters, the sampler list and derived names; the sampler names."""
    check_positive_int("repeats", repeats)
    samplers = parse_samplers(samplers_text)
    longest = max(len(f"-{name}-r{repeats}") for name in samplers)
    validate_study_config(config, samplers=samplers, name_reserve=longest)
    return samplers
