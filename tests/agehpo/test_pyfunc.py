"""The pyfunc flavor: pickle-free loading, its signature, both input layouts, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.exceptions import MlflowException

from agehpo.data import AGE_RANGES, PIXELS_PER_IMAGE, FaceTable, make_synthetic, preprocess
from agehpo.data import write_csv as write_faces_csv
from agehpo.nn.model import build_model
from agehpo.pyfunc import (
    PARAMS_FILE,
    PROBABILITY_COLUMNS,
    WEIGHTS_FILE,
    AgePredictor,
    PredictionInputError,
    _load_pyfunc,
    save_weights,
    signature,
)

IMG_SIZE = 12
PARAMS: dict[str, Any] = {
    "num_fc_layers": 2,
    "fc_output_feat_0": 24,
    "fc_dropout_0": 0.1,
    "fc_output_feat_1": 16,
    "fc_dropout_1": 0.2,
    "last_fc": 12,
    "optimizer": "Adam",
    "lr": 1e-3,
}
OUTPUT_COLUMNS = ["age_bin", "age_range", "ethnicity", "gender", *PROBABILITY_COLUMNS]

# Runs in a fresh interpreter: only the saved files and agehpo's loader may rebuild the model.
_LOAD_AND_PREDICT = r"""
import json, sys
import numpy as np
import pandas as pd
import mlflow

model_dir, faces_csv, out_dir = sys.argv[1:4]
model = mlflow.pyfunc.load_model(model_dir)
faces = pd.read_csv(faces_csv)
pixels = faces[["pixels"]]
numbers = np.array([row.split() for row in faces["pixels"]], dtype=np.int64)
numeric = pd.DataFrame(numbers, columns=[f"p{i}" for i in range(numbers.shape[1])])
model.predict(pixels).to_csv(f"{out_dir}/from_pixels.csv", index=False)
try:  # MLflow enforces the signature: only the pixels layout passes through it
    model.predict(numeric)
    refused = ""
except mlflow.exceptions.MlflowException as error:
    refused = error.message
print(json.dumps({
    "loader_module": model.metadata.flavors["python_function"].get("loader_module"),
    "input_columns": model.metadata.get_input_schema().input_names(),
    "output_columns": model.metadata.get_output_schema().input_names(),
    "numeric_refused": refused,
}))
"""


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    net = build_model(PARAMS, in_features=IMG_SIZE * IMG_SIZE)
    with torch.no_grad():
        # Spread the random init so that different faces get different age bins.
        for parameter in net.parameters():
            parameter.mul_(3.0)
    return net.eval()


@pytest.fixture(scope="module")
def faces() -> FaceTable:
    return make_synthetic(24, seed=7)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    root = tmp_path_factory.mktemp("pyfunc")
    net = _net()
    weights = root / "weights"
    save_weights(weights, PARAMS, net.state_dict(), IMG_SIZE)
    model_dir = root / "model"
    mlflow.pyfunc.save_model(
        str(model_dir),
        loader_module="agehpo.pyfunc",
        data_path=str(weights),
        signature=signature(),
        input_example=pd.DataFrame({"pixels": [" ".join(["128"] * PIXELS_PER_IMAGE)]}),
    )
    return model_dir, net


@pytest.fixture(scope="module")
def loaded(saved_model: tuple[Path, torch.nn.Module]) -> mlflow.pyfunc.PyFuncModel:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
        return mlflow.pyfunc.load_model(str(saved_model[0]))


def _predictor(model_dir: Path) -> AgePredictor:
    """The model as ``agehpo predict`` loads it: no MLflow schema enforcement in between."""
    return _load_pyfunc(str(next(model_dir.rglob(PARAMS_FILE)).parent))


def _pixels_frame(pixels: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"pixels": [" ".join(map(str, row)) for row in pixels]})


def _expected(net: torch.nn.Module, pixels: np.ndarray) -> tuple[np.ndarray, ...]:
    """What the in-memory network says: age probabilities and the three argmaxes."""
    with torch.no_grad():
        logits = net(preprocess(pixels, IMG_SIZE))
    age = logits.age.softmax(1).numpy()
    return age, age.argmax(1), logits.ethnicity.argmax(1).numpy(), logits.gender.argmax(1).numpy()


def _check_predictions(frame: pd.DataFrame, net: torch.nn.Module, pixels: np.ndarray) -> None:
    assert list(frame.columns) == OUTPUT_COLUMNS
    assert len(frame) == len(pixels)
    probabilities = frame[PROBABILITY_COLUMNS].to_numpy(dtype=np.float64)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    assert (frame["age_bin"].to_numpy() == probabilities.argmax(axis=1)).all()
    assert list(frame["age_range"]) == [AGE_RANGES[b] for b in frame["age_bin"]]
    age, age_bin, ethnicity, gender = _expected(net, pixels)
    np.testing.assert_allclose(probabilities, age, rtol=1e-5, atol=1e-6)
    assert frame["age_bin"].tolist() == age_bin.tolist()
    assert frame["ethnicity"].tolist() == ethnicity.tolist()
    assert frame["gender"].tolist() == gender.tolist()


def test_saved_model_holds_weights_and_params_but_no_pickle(
    saved_model: tuple[Path, torch.nn.Module],
) -> None:
    model_dir, _ = saved_model
    files = {p.name for p in model_dir.rglob("*") if p.is_file()}
    assert {WEIGHTS_FILE, PARAMS_FILE, "MLmodel"} <= files
    assert not [name for name in files if name.endswith((".pkl", ".pickle", ".pt", ".pth"))]
    params = json.loads(next(model_dir.rglob(PARAMS_FILE)).read_text())
    assert params == {**PARAMS, "img_size": IMG_SIZE}


@pytest.mark.slow  # a fresh Python process: end to end
def test_a_fresh_process_loads_without_unpickling_and_enforces_the_signature(
    saved_model: tuple[Path, torch.nn.Module], faces: FaceTable, tmp_path: Path
) -> None:
    model_dir, net = saved_model
    faces_csv = tmp_path / "faces.csv"
    write_faces_csv(faces, faces_csv)
    env = {**os.environ, "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false"}
    done = subprocess.run(
        [sys.executable, "-c", _LOAD_AND_PREDICT, str(model_dir), str(faces_csv), str(tmp_path)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    info = json.loads(done.stdout.strip().splitlines()[-1])
    refused = info.pop("numeric_refused")
    assert info == {
        "loader_module": "agehpo.pyfunc",
        "input_columns": ["pixels"],
        "output_columns": OUTPUT_COLUMNS,
    }
    assert "pixels" in refused, refused

    from_pixels = pd.read_csv(tmp_path / "from_pixels.csv", dtype={"age_range": str})
    _check_predictions(from_pixels, net, faces.pixels)


def test_in_process_predictions_match_the_network(
    loaded: mlflow.pyfunc.PyFuncModel, saved_model: tuple[Path, torch.nn.Module], faces: FaceTable
) -> None:
    model_dir, net = saved_model
    from_pixels = loaded.predict(_pixels_frame(faces.pixels))
    numeric = pd.DataFrame(
        faces.pixels.astype(np.float64), columns=[f"p{i}" for i in range(PIXELS_PER_IMAGE)]
    )
    from_numeric = _predictor(model_dir).predict(numeric)  # agehpo predict's path
    _check_predictions(from_pixels, net, faces.pixels)
    pd.testing.assert_frame_equal(from_pixels, from_numeric)
    # Several faces, several answers: the comparison above is not between constants.
    assert from_pixels["prob_age_20-39"].nunique() > 1


def _bad_inputs(faces: FaceTable) -> dict[str, tuple[pd.DataFrame, list[str]]]:
    """Bad frame -> words its one-line message must contain."""
    good = [" ".join(map(str, row)) for row in faces.pixels[:3]]
    short = [good[0], " ".join(good[1].split()[:-1]), good[2]]
    word = [good[0], good[1].replace(" ", " x ", 1).rsplit(" ", 1)[0], good[2]]
    too_bright = [good[0], good[1], "256 " + good[2].split(" ", 1)[1]]
    numeric = pd.DataFrame(faces.pixels[:2].astype(object))
    numeric.iloc[1, 5] = "dark"
    return {
        "wrong column": (pd.DataFrame({"image": good}), ["image", "pixels", "2304"]),
        "wrong length": (pd.DataFrame({"pixels": short}), ["row 1", "2303", "2304"]),
        "non-numeric": (pd.DataFrame({"pixels": word}), ["row 1", "'x' is not an integer"]),
        "non-numeric column": (numeric, ["row 1", "column '5'", "'dark' is non-numeric", "2304"]),
        "above 255": (
            pd.DataFrame({"pixels": too_bright}),
            ["row 2", "256 is out of range", "0..255"],
        ),
    }


@pytest.mark.parametrize(
    "case", ["wrong column", "wrong length", "non-numeric", "non-numeric column", "above 255"]
)
def test_bad_input_raises_one_clear_line(
    saved_model: tuple[Path, torch.nn.Module], faces: FaceTable, case: str
) -> None:
    frame, words = _bad_inputs(faces)[case]
    with pytest.raises(PredictionInputError) as raised:
        _predictor(saved_model[0]).predict(frame)
    message = raised.value.message
    assert "\n" not in message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


def test_through_mlflow_bad_pixels_are_a_bad_request_with_the_line(
    loaded: mlflow.pyfunc.PyFuncModel, faces: FaceTable
) -> None:
    frame, words = _bad_inputs(faces)["wrong length"]
    with pytest.raises(PredictionInputError) as raised:
        loaded.predict(frame)
    # mlflow models serve answers an MlflowException with its code's status and message.
    assert raised.value.get_http_status_code() == 400
    assert all(word in raised.value.message for word in words)
    with pytest.raises(MlflowException, match="pixels"):  # the signature names the column
        loaded.predict(_bad_inputs(faces)["wrong column"][0])
