"""The registered model's loader_module: safetensors weights and params JSON, no pickles."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types import ColSpec, Schema
from safetensors.torch import load_file, save_file

from agehpo.data import AGE_RANGES, DataError, preprocess
from agehpo.data.pixels import pixels_from_frame
from agehpo.errors import UserError
from agehpo.nn.model import AgeNet, build_model
from agehpo.nn.train import predict_probabilities

WEIGHTS_FILE = "weights.safetensors"
PARAMS_FILE = "params.json"
PROBABILITY_COLUMNS = [f"prob_age_{age_range}" for age_range in AGE_RANGES]
# What this loader imports besides mlflow (which MLflow adds to the requirements itself).
SERVING_DISTRIBUTIONS = ("torch", "safetensors", "pandas", "numpy")
LOADER_MODULE = "agehpo.pyfunc"


class PredictionInputError(UserError, MlflowException):
    """The input frame is not faces in the pixel format; the message is one line.

    An MlflowException with INVALID_PARAMETER_VALUE, so ``mlflow models serve`` answers 400
    with this line in its ``message`` (any other error becomes a generic one there)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)


def save_weights(
    directory: Path, params: dict[str, Any], state_dict: dict[str, torch.Tensor], img_size: int
) -> None:
    """Write the weights and the params (with ``img_size``) ``_load_pyfunc`` rebuilds from."""
    directory.mkdir(parents=True, exist_ok=True)
    save_file({name: t.contiguous() for name, t in state_dict.items()}, directory / WEIGHTS_FILE)
    (directory / PARAMS_FILE).write_text(json.dumps({**params, "img_size": img_size}, indent=2))


def serving_requirements() -> list[str]:
    """A logged model's pip requirements, pinned to the installed versions less local labels
    (``+cpu``); agehpo itself travels as ``code_paths``."""
    return [f"{name}=={version(name).split('+')[0]}" for name in SERVING_DISTRIBUTIONS]


def signature() -> ModelSignature:
    """A ``pixels`` string column in; labels and age-bin probabilities out.

    MLflow enforces an input schema and drops columns it does not name, so through MLflow
    (``load_model``, ``models serve``) the model takes the ``pixels`` layout; ``agehpo predict``
    also takes 2304 numeric columns."""
    kinds = {"age_bin": "long", "age_range": "string", "ethnicity": "long", "gender": "long"}
    kinds.update(dict.fromkeys(PROBABILITY_COLUMNS, "double"))
    outputs = Schema([ColSpec(kind, name) for name, kind in kinds.items()])
    return ModelSignature(inputs=Schema([ColSpec("string", "pixels")]), outputs=outputs)


class AgePredictor:
    """A trained network and its image side: ``predict(frame)`` returns one row a face."""

    def __init__(self, model: AgeNet, img_size: int) -> None:
        self.model = model.eval()
        self.img_size = img_size

    def predict(
        self, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Columns age_bin, age_range, ethnicity, gender and one probability per age bin, from
        a ``pixels`` column or 2304 numeric columns (``params`` is MLflow's, unused)."""
        try:
            pixels = pixels_from_frame(pd.DataFrame(model_input))
        except DataError as error:
            raise PredictionInputError(str(error)) from None
        return self.predict_pixels(pixels)

    def predict_pixels(self, pixels: np.ndarray) -> pd.DataFrame:
        """:meth:`predict` for decoded uint8 faces (rows, 2304)."""
        p = predict_probabilities(self.model, preprocess(pixels, self.img_size))
        age_bin = p.age.argmax(1).numpy()
        frame = pd.DataFrame({"age_bin": age_bin, "age_range": np.asarray(AGE_RANGES)[age_bin]})
        frame["ethnicity"], frame["gender"] = (a.argmax(1).numpy() for a in (p.ethnicity, p.gender))
        frame[PROBABILITY_COLUMNS] = p.age.numpy().astype(np.float64)
        return frame


def _load_pyfunc(data_path: str) -> AgePredictor:
    """MLflow's loader_module hook: the predictor from the folder ``save_weights`` wrote."""
    directory = Path(data_path)
    params = json.loads((directory / PARAMS_FILE).read_text())
    img_size = int(params["img_size"])
    model = build_model(params, in_features=img_size * img_size)
    model.load_state_dict(load_file(directory / WEIGHTS_FILE))
    return AgePredictor(model, img_size)
