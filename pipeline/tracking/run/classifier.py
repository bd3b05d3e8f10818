"""The logged ``classifier`` model: class probabilities, by class name, for a table of features.

MLflow loads this file as a model ("models from code"), so nothing here is pickled. It wraps the
run's PyTorch model (standardization included) and the names recorded with it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import torch


class ProbabilityClassifier(mlflow.pyfunc.PythonModel):
    """predict(features) -> one probability column per class, named after the class."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.model = mlflow.pytorch.load_model(context.artifacts["torch_model"]).eval()
        names = json.loads(Path(context.artifacts["names"]).read_text())
        self.class_names, self.feature_names = names["classes"], names["features"]

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        if isinstance(model_input, pd.DataFrame) and set(self.feature_names) <= set(model_input):
            model_input = model_input[self.feature_names]
        features = torch.tensor(pd.DataFrame(model_input).to_numpy(dtype="float32"))
        if features.shape[1] != len(self.feature_names):
            raise ValueError(
                f"got {features.shape[1]} feature columns, the model expects "
                f"{len(self.feature_names)}: {', '.join(self.feature_names)}"
            )
        with torch.no_grad():
            probabilities = torch.softmax(self.model(features), dim=1)
        return pd.DataFrame(probabilities.numpy(), columns=self.class_names)


mlflow.models.set_model(ProbabilityClassifier())
