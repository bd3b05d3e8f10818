"""The trained model in MLflow: ``model`` (PyTorch) and ``classifier`` (class probabilities)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import mlflow
import mlflow.pytorch
import numpy as np
import pandas as pd
import torch
from mlflow.models import infer_signature

from pipeline.tracking.identity import PACKAGE_DIR

CLASSIFIER_CODE = Path(__file__).resolve().parent / "classifier.py"


def log_model(
    model: torch.nn.Module, example: torch.Tensor, class_names: list[str], feature_names: list[str]
) -> None:
    """Log ``model/`` (the PyTorch model) and ``classifier/`` (probabilities by class name).

    Requirements are given, not inferred (inference costs seconds); the PyTorch model is
    pickled so it loads back as the ``nn.Module`` it was, with this package's code beside it.
    """
    model = model.cpu().eval()
    with torch.no_grad():
        logits = model(example)
    requirements = [f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}"]
    torch_model = mlflow.pytorch.log_model(
        model,
        name="model",
        signature=infer_signature(example.numpy(), logits.numpy()),
        input_example=example.numpy(),
        pip_requirements=requirements,
        serialization_format="pickle",
        code_paths=[str(PACKAGE_DIR)],
    )
    example_table = pd.DataFrame(example.double().numpy(), columns=feature_names)  # any float
    probabilities = pd.DataFrame(torch.softmax(logits, dim=1).numpy(), columns=class_names)
    with tempfile.TemporaryDirectory() as tmp:
        names = Path(tmp, "names.json")
        names.write_text(json.dumps({"classes": class_names, "features": feature_names}))
        mlflow.pyfunc.log_model(
            name="classifier",
            python_model=str(CLASSIFIER_CODE),
            artifacts={"torch_model": torch_model.model_uri, "names": str(names)},
            signature=infer_signature(example_table, probabilities),
            input_example=example_table,
            pip_requirements=[*requirements, f"pandas=={pd.__version__}"],
        )
