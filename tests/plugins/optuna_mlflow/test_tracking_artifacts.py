"""Study-level artifacts and summary metrics on the parent run; dataset inputs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import optuna
import pandas as pd
import pytest
from mlflow import MlflowClient
from om_helpers import make_objective

from optuna_mlflow import PLOTS, MLflowCallback, log_dataset, log_study_artifacts


def _files(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    found: set[str] = set()
    for info in client.list_artifacts(run_id, path):
        found |= _files(client, run_id, info.path) if info.is_dir else {info.path}
    return found


def test_plots_table_best_params_and_counts(
    tracking_uri: str, client: MlflowClient, tmp_path: Path
) -> None:
    cb = MLflowCallback(tracking_uri=tracking_uri, parent_run=True, metric_name="val_age_accuracy")
    study = optuna.create_study(
        study_name="art", direction="maximize", sampler=optuna.samplers.RandomSampler(seed=3)
    )
    study.optimize(make_objective(), n_trials=9, callbacks=[cb], catch=(RuntimeError,))
    skipped = cb.log_study_artifacts(study)
    cb.close()
    assert skipped == {}
    parent = client.get_run(cb.parent_run_id or "")
    expected = {f"plots/{p}.{ext}" for p in PLOTS for ext in ("html", "png")}
    assert _files(client, parent.info.run_id) == expected | {"trials.csv", "best_params.json"}
    assert parent.data.metrics == {
        "n_trials_complete": 3,
        "n_trials_pruned": 3,
        "n_trials_failed": 3,
        "best_val_age_accuracy": study.best_value,
    }
    local = Path(client.download_artifacts(parent.info.run_id, "", str(tmp_path)))
    assert json.loads((local / "best_params.json").read_text()) == study.best_params
    assert len(pd.read_csv(local / "trials.csv")) == 9
    assert (local / "plots/optimization_history.png").read_bytes()[:4] == b"\x89PNG"
    assert "plotly" in (local / "plots/param_importances.html").read_text()


def test_plots_optuna_cannot_draw_are_skipped(client: MlflowClient) -> None:
    study = optuna.create_study(study_name="tiny")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    run_id = client.create_run(client.create_experiment("tiny")).info.run_id
    skipped = log_study_artifacts(study, run_id, client=client)
    assert set(skipped) == {"param_importances", "intermediate_values"}
    assert "2 COMPLETE" in skipped["param_importances"]
    files = _files(client, run_id)
    assert "plots/optimization_history.html" in files
    assert "plots/param_importances.png" not in files
    assert "plots/skipped.txt" in files
    assert client.get_run(run_id).data.metrics["best_value"] == study.best_value


def test_empty_and_multi_objective_studies(client: MlflowClient) -> None:
    exp = client.create_experiment("edge")
    empty = optuna.create_study(study_name="empty")
    run_id = client.create_run(exp).info.run_id
    assert set(log_study_artifacts(empty, run_id, client=client)) == set(PLOTS)
    assert client.get_run(run_id).data.metrics["n_trials_complete"] == 0

    mo = optuna.create_study(study_name="mo", directions=["minimize", "maximize"])
    mo.optimize(lambda t: (t.suggest_float("x", 0, 1), t.suggest_float("y", 0, 1)), n_trials=4)
    run_id = client.create_run(exp).info.run_id
    skipped = log_study_artifacts(
        mo, run_id, client=client, metric_name=["loss", "acc"], plots=("optimization_history",)
    )
    assert skipped == {}
    assert client.get_run(run_id).data.metrics["n_best_trials"] == len(mo.best_trials)


@pytest.mark.parametrize("with_frame", [True, False])
def test_log_dataset(client: MlflowClient, with_frame: bool) -> None:
    run_id = client.create_run(client.create_experiment("data")).info.run_id
    if with_frame:
        frame = pd.DataFrame({"age": [1, 20, 70], "pixels": ["0 1", "2 3", "4 5"]})
        log_dataset(run_id, "faces", df=frame, source="/data/age_gender.csv")
    else:
        log_dataset(
            run_id,
            "faces",
            digest="abc123",
            source="postgresql://u:secret@db/faces",
            profile={"num_rows": 23705},
        )
    (inp,) = client.get_run(run_id).inputs.dataset_inputs
    assert inp.dataset.name == "faces"
    assert [(t.key, t.value) for t in inp.tags] == [("mlflow.data.context", "training")]
    assert "secret" not in inp.dataset.source
    if not with_frame:
        assert inp.dataset.digest == "abc123"
        assert json.loads(inp.dataset.profile) == {"num_rows": 23705}


def test_html_plots_render_offline_and_parallel_coordinate_keeps_few_axes(
    client: MlflowClient, tmp_path: Path
) -> None:
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=1))

    def objective(trial: optuna.Trial) -> float:
        values = [trial.suggest_float(f"x{i}", 0, 1) for i in range(10)]
        return 3 * values[0] + values[1] + 0.01 * sum(values[2:])

    study.optimize(objective, n_trials=20)
    run_id = client.create_run(client.create_experiment("axes")).info.run_id
    assert set(log_study_artifacts(study, run_id, client=client)) == {"intermediate_values"}
    local = Path(client.download_artifacts(run_id, "plots", str(tmp_path)))
    for html in local.glob("*.html"):
        text = html.read_text()
        assert "<script src=" not in text, html.name  # nothing fetched from a CDN
        assert "Plotly.newPlot" in text and len(text) > 1_000_000, html.name  # plotly.js inside
    figure = optuna.visualization.plot_parallel_coordinate(study)  # all ten: the control
    assert len(figure.layout.xaxis.ticktext) == 11  # the objective's axis and ten params
    drawn = (local / "parallel_coordinate.html").read_text()
    ticks = re.search(r'"ticktext":\[([^\]]*)\]', drawn)
    assert ticks is not None
    axes = json.loads(f"[{ticks.group(1)}]")
    assert len(axes) == 7 and {"x0", "x1"} <= set(axes)  # the objective and the top six
