"""`agehpo predict` runs nothing a model carries: no pickle, no bundled code, no other loader."""

from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
import torch
import yaml

from agehpo.cli import main
from agehpo.data import make_synthetic, write_csv
from agehpo.nn.model import build_model
from agehpo.pyfunc import PROBABILITY_COLUMNS, save_weights, signature

IMG_SIZE = 12
PARAMS: dict[str, Any] = {
    "num_fc_layers": 1,
    "fc_output_feat_0": 16,
    "fc_dropout_0": 0.1,
    "last_fc": 8,
    "optimizer": "Adam",
    "lr": 1e-3,
}


class _Payload:
    """Unpickling this writes ``marker``: what a planted python_model.pkl would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pickle ran')",))


def _agehpo_model(folder: Path, code_paths: list[str] | None = None) -> Path:
    torch.manual_seed(0)
    net = build_model(PARAMS, in_features=IMG_SIZE * IMG_SIZE)
    save_weights(folder / "weights", PARAMS, net.state_dict(), IMG_SIZE)
    model_dir = folder / "model"
    mlflow.pyfunc.save_model(
        str(model_dir),
        loader_module="agehpo.pyfunc",
        data_path=str(folder / "weights"),
        signature=signature(),
        input_example=pd.DataFrame({"pixels": [" ".join(["9"] * 2304)]}),
        code_paths=code_paths,
        pip_requirements=["torch"],
    )
    return model_dir


def _plant_pickle(model_dir: Path, marker: Path) -> None:
    """Switch a model's MLmodel to the cloudpickle python_model flavor, as an attacker would."""
    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
    mlmodel["flavors"]["python_function"] = {
        "loader_module": "mlflow.pyfunc.model",
        "python_model": "python_model.pkl",
        "cloudpickle_version": "3.0.0",
        "python_version": "3.11.0",
        "env": {"conda": "conda.yaml", "virtualenv": "python_env.yaml"},
    }
    (model_dir / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    (model_dir / "python_model.pkl").write_bytes(pickle.dumps(_Payload(marker)))


@pytest.fixture(scope="module")
def faces_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("faces") / "faces.csv"
    write_csv(make_synthetic(6, seed=1), path)
    return path


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("agehpo: error: ") and "Traceback" not in err
    return lines[0]


def test_the_planted_pickle_really_runs_when_mlflow_loads_it(tmp_path: Path) -> None:
    # The control: without agehpo's check, loading this model runs the payload.
    model_dir = _agehpo_model(tmp_path)
    marker = tmp_path / "control-marker"
    _plant_pickle(model_dir, marker)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
        # (the payload is not a model, so loading fails, but only after it ran)
        with contextlib.suppress(Exception):
            mlflow.pyfunc.load_model(str(model_dir))
    assert marker.read_text() == "pickle ran"


@pytest.mark.slow  # a fresh Python process: end to end
def test_predict_refuses_a_pickle_model_and_never_unpickles_it(
    tmp_path: Path, faces_csv: Path
) -> None:
    model_dir = _agehpo_model(tmp_path)
    marker = tmp_path / "marker"
    _plant_pickle(model_dir, marker)
    env = {**os.environ, "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true"}  # even if allowed
    argv = ["predict", "--model", str(model_dir), "--data", str(faces_csv)]
    done = subprocess.run(
        [sys.executable, "-m", "agehpo", *argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    line = _one_error_line(done.stderr)
    assert "model=" in line and "is refused" in line and "mlflow.pyfunc.model" in line
    assert "python_model.pkl" in line
    assert not marker.exists(), "the pickle payload ran"


def test_predict_never_runs_the_code_a_model_bundles(
    tmp_path: Path, faces_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A model that claims agehpo's loader but ships its own agehpo package (code_paths):
    # mlflow.pyfunc.load_model would import that copy; agehpo predict uses the installed one.
    marker = tmp_path / "code-marker"
    fake = tmp_path / "fake" / "agehpo"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('bundled code ran')\n")
    (fake / "pyfunc.py").write_text("def _load_pyfunc(path):\n    raise SystemExit(99)\n")
    model_dir = _agehpo_model(tmp_path, code_paths=[str(fake)])
    assert (model_dir / "code" / "agehpo" / "__init__.py").exists()
    out = tmp_path / "preds.csv"
    argv = ["predict", "--model", str(model_dir), "--data", str(faces_csv), "--out", str(out)]
    assert main(argv) == 0
    assert not marker.exists(), "the model's bundled code ran"
    predictions = pd.read_csv(out)
    assert len(predictions) == 6 and set(PROBABILITY_COLUMNS) <= set(predictions.columns)
    assert "Age-range accuracy on 6 labelled rows" in capsys.readouterr().out
    assert (
        "MLFLOW_ALLOW_PICKLE_DESERIALIZATION" not in os.environ
        or os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] != "false"
    ), "predict left pickle refusal switched on in the environment"


@pytest.mark.parametrize("loader", [None, "sklearn_loader.evil"])
def test_any_other_loader_is_refused(
    loader: str | None, tmp_path: Path, faces_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir = _agehpo_model(tmp_path)
    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
    if loader is None:
        del mlmodel["flavors"]["python_function"]
    else:
        mlmodel["flavors"]["python_function"]["loader_module"] = loader
    (model_dir / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    capsys.readouterr()
    status = main(["predict", "--model", str(model_dir), "--data", str(faces_csv)])
    assert status == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "is refused" in line and "agehpo.pyfunc" in line


def test_a_data_path_outside_the_model_is_refused(
    tmp_path: Path, faces_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir = _agehpo_model(tmp_path)
    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
    mlmodel["flavors"]["python_function"]["data"] = "../../elsewhere"
    (model_dir / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    capsys.readouterr()
    assert main(["predict", "--model", str(model_dir), "--data", str(faces_csv)]) == 2
    assert "leaves the model folder" in _one_error_line(capsys.readouterr().err)


def test_a_missing_model_gives_one_line(
    tmp_path: Path, faces_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["predict", "--model", str(tmp_path / "nope"), "--data", str(faces_csv)])
    assert status == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "model=" in line and "nope" in line and "cannot be read" in line


@pytest.mark.parametrize("model_uri", ["models:/age-predictor@champion", "runs:/0123/model"])
def test_a_registry_uri_without_its_store_gives_one_line_and_creates_no_file(
    tmp_path: Path, faces_csv: Path, model_uri: str
) -> None:
    # A fresh process in a folder without mlflow.db and without MLFLOW_TRACKING_URI: what a
    # user who left the project folder gets (MLflow alone would create an empty mlflow.db).
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = subprocess.run(
        [sys.executable, "-m", "agehpo", "predict", "--model", model_uri, "--data", str(faces_csv)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    line = _one_error_line(done.stderr)
    assert model_uri in line and "MLFLOW_TRACKING_URI" in line and "mlflow.db" in line
    assert not (tmp_path / "mlflow.db").exists()
