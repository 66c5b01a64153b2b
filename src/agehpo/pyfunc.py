"""The registered MLflow model: predict age ranges from 48x48 face pixels.

The model is saved as weights (safetensors) plus a params JSON, and loaded through
``loader_module`` (this module's ``_load_pyfunc``), so loading never unpickles anything:
it works with ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false``.

``mlflow.pyfunc.load_model`` runs whatever a model names (its loader module, its bundled
code, a pickled ``python_model``); ``agehpo predict`` loads through
:func:`agehpo.predict.load_checked` instead, which refuses any other loader.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema, TensorSpec
from safetensors.torch import load_file, save_file

from agehpo.data import AGE_RANGES, PIXELS_PER_IMAGE, preprocess
from agehpo.errors import UserError, quote
from agehpo.nn.model import AgeNet, build_model
from agehpo.nn.train import predict_probabilities

WEIGHTS_FILE = "weights.safetensors"
PARAMS_FILE = "params.json"
PROBABILITY_COLUMNS = [f"prob_age_{age_range}" for age_range in AGE_RANGES]
# What this loader imports besides mlflow (which MLflow adds to the requirements itself).
SERVING_DISTRIBUTIONS = ("torch", "safetensors", "pandas", "numpy")
LOADER_MODULE = "agehpo.pyfunc"


class PredictionInputError(UserError, ValueError):
    """The input frame is not faces in the Kaggle pixel format. One-line message."""


def save_weights(
    directory: Path, params: dict[str, Any], state_dict: dict[str, torch.Tensor], img_size: int
) -> None:
    """Write the files ``_load_pyfunc`` reads: weights and the params that rebuild the net."""
    directory.mkdir(parents=True, exist_ok=True)
    save_file({name: t.contiguous() for name, t in state_dict.items()}, directory / WEIGHTS_FILE)
    (directory / PARAMS_FILE).write_text(json.dumps({**params, "img_size": img_size}, indent=2))


def serving_requirements() -> list[str]:
    """The pip requirements of a logged model, pinned to the versions that trained it.

    agehpo itself is not among them: it is not on PyPI, so the model carries its code
    (``code_paths``) and an environment built from these lines (``mlflow models serve``
    with virtualenv or uv) can load it. Local version labels (``+cpu``) are dropped, as
    MLflow does, since PyPI has no such builds.

    Returns:
        ``name==version`` lines.
    """
    from importlib.metadata import version

    return [f"{name}=={version(name).split('+')[0]}" for name in SERVING_DISTRIBUTIONS]


def signature() -> ModelSignature:
    """Output columns only: labels and age-bin probabilities.

    The input is left without a schema on purpose: MLflow would enforce one column layout,
    but the model takes either a ``pixels`` string column or 2304 numeric columns and
    validates them itself (the logged input example shows the ``pixels`` form).
    """
    outputs: list[ColSpec | TensorSpec] = [
        ColSpec("long", "age_bin"),
        ColSpec("string", "age_range"),
    ]
    outputs += [ColSpec("long", "ethnicity"), ColSpec("long", "gender")]
    outputs += [ColSpec("double", column) for column in PROBABILITY_COLUMNS]
    return ModelSignature(inputs=None, outputs=Schema(outputs))


def pixels_from_frame(frame: pd.DataFrame) -> np.ndarray:
    """Read faces from a ``pixels`` string column or from 2304 numeric columns.

    Args:
        frame: The model input.

    Returns:
        uint8 array of shape (rows, 2304).

    Raises:
        PredictionInputError: For a wrong column, a wrong length or non-numeric values.
    """
    if "pixels" in frame.columns:
        empty = np.flatnonzero(frame["pixels"].isna().to_numpy())
        if empty.size:
            raise PredictionInputError(
                f"row {empty[0]}: pixels is empty; expected {PIXELS_PER_IMAGE} "
                "space-separated integers 0..255 (48x48)"
            )
        strings = frame["pixels"].astype(str)
        counts = strings.str.split().str.len().to_numpy()
        bad = np.flatnonzero(counts != PIXELS_PER_IMAGE)
        if bad.size:
            raise PredictionInputError(
                f"row {bad[0]}: pixels has {counts[bad[0]]} values, expected {PIXELS_PER_IMAGE} "
                "space-separated integers 0..255 (48x48)"
            )
        try:
            values = np.array(" ".join(strings).split(), dtype=np.float64)
        except ValueError as error:
            value = str(error).rpartition(": ")[2].strip("'")
            raise PredictionInputError(
                f"pixels holds a non-numeric value {quote(value, 30)}; expected integers 0..255"
            ) from error
        values = values.reshape(len(frame), PIXELS_PER_IMAGE)
    elif frame.shape[1] == PIXELS_PER_IMAGE:
        try:
            values = frame.to_numpy(dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise PredictionInputError(
                f"the {PIXELS_PER_IMAGE} pixel columns hold a non-numeric value; expected 0..255"
            ) from error
    else:
        raise PredictionInputError(
            f"input has columns {list(frame.columns)[:5]}{'...' if frame.shape[1] > 5 else ''} "
            f"({frame.shape[1]} in all); expected a 'pixels' column of space-separated values "
            f"or {PIXELS_PER_IMAGE} numeric columns"
        )
    if not np.all(np.isfinite(values)) or values.min(initial=0) < 0 or values.max(initial=0) > 255:
        raise PredictionInputError("pixel values must be numbers within 0..255")
    return np.rint(values).astype(np.uint8)


class AgePredictor:
    """A loaded model: ``predict(frame)`` returns one row of labels per face.

    Args:
        model: The trained network.
        img_size: The side length it was trained on.
    """

    def __init__(self, model: AgeNet, img_size: int) -> None:
        self.model = model.eval()
        self.img_size = img_size

    def predict(
        self, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Predict age range, ethnicity and gender.

        Args:
            model_input: A ``pixels`` column or 2304 numeric columns.
            params: Unused; part of MLflow's pyfunc interface.

        Returns:
            Columns age_bin, age_range, ethnicity, gender and one probability per age bin.
        """
        return self.predict_pixels(pixels_from_frame(pd.DataFrame(model_input)))

    def predict_pixels(self, pixels: np.ndarray) -> pd.DataFrame:
        """:meth:`predict` for faces already read by :func:`pixels_from_frame`."""
        x = preprocess(pixels, self.img_size)
        probabilities = predict_probabilities(self.model, x)
        age_bin = probabilities.age.argmax(1).numpy()
        frame = pd.DataFrame(
            {
                "age_bin": age_bin,
                "age_range": np.asarray(AGE_RANGES)[age_bin],
                "ethnicity": probabilities.ethnicity.argmax(1).numpy(),
                "gender": probabilities.gender.argmax(1).numpy(),
            }
        )
        frame[PROBABILITY_COLUMNS] = probabilities.age.numpy().astype(np.float64)
        return frame


def _load_pyfunc(data_path: str) -> AgePredictor:
    """MLflow's loader_module hook: rebuild the network from its weights and params."""
    directory = Path(data_path)
    params = json.loads((directory / PARAMS_FILE).read_text())
    img_size = int(params["img_size"])
    model = build_model(params, in_features=img_size * img_size)
    model.load_state_dict(load_file(directory / WEIGHTS_FILE))
    return AgePredictor(model, img_size)
