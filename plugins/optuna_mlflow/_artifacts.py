"""Study-level data on the parent run: artifacts, summary metrics and dataset inputs."""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT
from optuna.trial import FrozenTrial, TrialState

from optuna_mlflow._compat import dataset_entity
from optuna_mlflow._entities import log_batch_chunked, now_ms
from optuna_mlflow._keys import redact_url, resolve_metric_names, safe_key

if TYPE_CHECKING:
    import pandas as pd

_logger = logging.getLogger(__name__)

_MAX_LEGEND = 20
# Axes of the parallel-coordinate plot: past about six its labels overlap and lines blur.
_MAX_PARALLEL_AXES = 6
PLOTS = ("optimization_history", "param_importances", "parallel_coordinate", "intermediate_values")


def _why_not(name: str, study: optuna.Study) -> str | None:
    """Why Optuna cannot draw plot ``name`` for this study, or None if it can."""
    if name == "intermediate_values":
        reported = any(t.intermediate_values for t in study.get_trials(deepcopy=False))
        return None if reported else "no trial reported intermediate values"
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return "no COMPLETE trial"
    if name == "param_importances":
        if len(complete) < 2:
            return "param importances need at least 2 COMPLETE trials"
        varied = {p for t in complete for p in t.params if t.params[p] != complete[0].params.get(p)}
        if not varied:
            return "no parameter varies across the COMPLETE trials"
    if name == "parallel_coordinate" and not any(t.params for t in complete):
        return "the COMPLETE trials have no params"
    return None


def _draw(name: str, study: optuna.Study, folder: Path, names: Sequence[str]) -> None:
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")  # headless; never steal the backend of an app that chose one
    import matplotlib.pyplot as plt
    import optuna.visualization as vis
    import optuna.visualization.matplotlib as vis_mpl

    kwargs: dict[str, Any] = {}
    if name != "intermediate_values":
        kwargs["target_name"] = names[0]
    if name != "intermediate_values" and len(study.directions) > 1:
        kwargs["target"] = lambda trial: trial.values[0]  # the first objective's
    with warnings.catch_warnings():
        # Experimental-API, importance and layout notices: no news to a plot's reader.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", UserWarning)
        if name == "parallel_coordinate":
            kwargs["params"] = _most_important(study, kwargs.get("target"))
        plotly_fn: Callable[..., Any] = getattr(vis, f"plot_{name}")
        # plotly.js embedded (about 4.7 MB a file): MLflow's UI shows an HTML artifact in a
        # frame of its own, where a CDN script is blank offline and a relative one 404s.
        plotly_fn(study, **kwargs).write_html(folder / f"{name}.html", include_plotlyjs=True)
        axes = getattr(vis_mpl, f"plot_{name}")(study, **kwargs)
        figure = axes.flat[0].figure if hasattr(axes, "flat") else axes.figure
        try:
            for ax in figure.axes:
                legend = ax.get_legend()
                # One entry per trial: unreadable past a few dozen, and most of the cost.
                if legend is not None and len(legend.get_texts()) > _MAX_LEGEND:
                    legend.remove()
            figure.savefig(folder / f"{name}.png", dpi=100)
        finally:
            plt.close(figure)


def _most_important(study: optuna.Study, target: Callable[..., float] | None) -> list[str] | None:
    """The ``_MAX_PARALLEL_AXES`` most important params (Optuna's default evaluator over the
    COMPLETE trials' shared params), or None (every param) when importance is undefined."""
    try:
        ranked = optuna.importance.get_param_importances(study, target=target)
    except (RuntimeError, ValueError):  # too few COMPLETE trials, or no param varies
        return None
    return list(ranked)[:_MAX_PARALLEL_AXES] or None


def _log_summary(
    study: optuna.Study, trials: list[FrozenTrial], run_id: str, client: MlflowClient, metric: str
) -> Any:
    """Log the trial counts and the best value(s); return the best params."""
    counts = {state: sum(t.state == state for t in trials) for state in TrialState}
    summary: dict[str, float] = {
        "n_trials_complete": counts[TrialState.COMPLETE],
        "n_trials_pruned": counts[TrialState.PRUNED],
        "n_trials_failed": counts[TrialState.FAIL],
    }
    best_params: Any = {}
    if counts[TrialState.COMPLETE] and len(study.directions) == 1:
        summary[safe_key(f"best_{metric}")] = study.best_value
        best_params = study.best_params
    elif counts[TrialState.COMPLETE]:
        # Several objectives have no single best point: count the Pareto front instead.
        summary["n_best_trials"] = len(study.best_trials)
        best_params = [
            {"number": t.number, "values": t.values, "params": t.params} for t in study.best_trials
        ]
    stamp = now_ms()
    metrics = [Metric(key, float(v), stamp, 0) for key, v in summary.items()]
    log_batch_chunked(client, run_id, metrics=metrics)
    return best_params


def _plots(
    study: optuna.Study,
    trials: list[FrozenTrial],
    folder: Path,
    names: list[str],
    plots: Sequence[str],
) -> dict[str, str]:
    """Draw the plots into ``folder``; return plot name -> why it was skipped."""
    # Plots read the trials many times; an in-memory snapshot spares the storage.
    snapshot = optuna.create_study(directions=study.directions, study_name=study.study_name)
    snapshot.add_trials([t for t in trials if t.state.is_finished()])
    if study.metric_names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            snapshot.set_metric_names(study.metric_names)
    skipped: dict[str, str] = {}
    for name in plots:
        reason = _why_not(name, snapshot)
        if reason is None:
            try:
                _draw(name, snapshot, folder, names)
            except Exception as exc:  # a plot is a nicety; never fail the study for it
                reason = f"{type(exc).__name__}: {exc}"
        if reason is not None:
            skipped[name] = reason
            _logger.warning("Plot %s skipped: %s", name, reason)
    if skipped:
        text = "".join(f"{name}: {why}\n" for name, why in skipped.items())
        (folder / "skipped.txt").write_text(text)
    return skipped


def log_study_artifacts(
    study: optuna.Study,
    run_id: str,
    *,
    client: MlflowClient | None = None,
    metric_name: str | Sequence[str] = "value",
    plots: Sequence[str] = PLOTS,
) -> dict[str, str]:
    """Log a study's plots, trial table, best params and summary metrics on a run.

    Artifacts: ``plots/{name}.html`` (plotly.js from its CDN) and ``.png``, ``trials.csv``,
    ``best_params.json``. Metrics: ``n_trials_{complete,pruned,failed}``, and
    ``best_{metric}`` (one objective) or ``n_best_trials`` (several).

    Args:
        study: The study.
        run_id: The run to log into (the study's parent run).
        client: Client of the tracking store; None uses MLflow's default.
        metric_name: Name(s) of the objective metric(s), as given to the callback.
        plots: Which plots to draw (see ``PLOTS``).

    Returns:
        Plot name -> why it was skipped, for every plot Optuna could not draw.
    """
    client = client or MlflowClient()
    trials = study.get_trials(deepcopy=False)
    names = resolve_metric_names(metric_name, len(study.directions))
    best_params = _log_summary(study, trials, run_id, client, names[0])
    with tempfile.TemporaryDirectory(prefix="optuna_mlflow_") as tmp:
        root = Path(tmp)
        (root / "plots").mkdir()
        skipped = _plots(study, trials, root / "plots", names, plots)
        study.trials_dataframe().to_csv(root / "trials.csv", index=False)
        (root / "best_params.json").write_text(json.dumps(best_params, indent=2, default=str))
        client.log_artifacts(run_id, tmp)
    return skipped


def log_dataset(
    run_id: str,
    name: str,
    *,
    df: pd.DataFrame | None = None,
    digest: str | None = None,
    source: str = "",
    source_type: str = "local",
    context: str | None = "training",
    schema: Mapping[str, Any] | None = None,
    profile: Mapping[str, Any] | None = None,
    client: MlflowClient | None = None,
) -> Dataset:
    """Log a dataset (a DataFrame, or just its metadata) as an input of a run.

    With ``df`` MLflow computes digest, schema and profile; else ``name``, ``digest`` and
    ``source`` describe the data (a file too large to hash again, seeded synthetic data).

    Args:
        run_id: The run (usually the study's parent run).
        name: Dataset name shown in the UI.
        df: The data itself, optional.
        digest: Content digest; default MLflow's for ``df``, else a hash of the metadata.
        source: Where the data comes from (path, URL without its password, ``synthetic:...``).
        source_type: MLflow source type (``local``, ``http``, ``code``, ...).
        context: Dataset context tag (``training``, ...); None for none.
        schema: JSON-able schema, without ``df``.
        profile: JSON-able profile (e.g. ``{"num_rows": 23705}``), without ``df``.
        client: Client of the tracking store; None uses MLflow's default.

    Returns:
        The logged dataset entity.
    """
    client = client or MlflowClient()
    source = redact_url(source)
    if df is not None:
        from mlflow.data.pandas_dataset import from_pandas

        with warnings.catch_warnings():
            # MLflow's notes on ambiguous source types and integer columns: no news here.
            warnings.filterwarnings("ignore", message=".*can be interpreted in multiple ways")
            warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
            # from_pandas resolves a missing source itself (to the calling code).
            extra: dict[str, Any] = {"source": source} if source else {}
            entity = dataset_entity(from_pandas(df, name=name, digest=digest, **extra))
    else:
        meta = {"name": name, "source": source, "schema": schema, "profile": profile}
        text = json.dumps(meta, sort_keys=True, default=str)
        entity = Dataset(
            name=name,
            digest=digest or hashlib.sha256(text.encode()).hexdigest()[:8],
            source_type=source_type,
            source=json.dumps({"uri": source}),
            schema=json.dumps(schema, default=str) if schema is not None else None,
            profile=json.dumps(profile, default=str) if profile is not None else None,
        )
    tags = [InputTag(MLFLOW_DATASET_CONTEXT, context)] if context else []
    client.log_inputs(run_id, datasets=[DatasetInput(entity, tags=tags)])
    return entity
