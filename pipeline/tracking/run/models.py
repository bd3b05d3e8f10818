"""The trained model in MLflow: ``model`` (PyTorch) and ``classifier`` (class probabilities)."""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
import mlflow.pytorch
import numpy as np
import pandas as pd
import torch
from mlflow.models import infer_signature

from pipeline.tracking.resume.identity import PACKAGE_DIR

CLASSIFIER_CODE = Path(__file__).resolve().parent / "classifier.py"
# What unpickling a model imports: its classes (``core``), their config enums (``config``) and
# what those import; not ``tracking`` nor the commands, which only cost copying at every run.
MODEL_CODE = ("__init__.py", "compat.py", "errors.py", "config", "core", "runtime")


def model_code(tmp: Path) -> str:
    """A ``pipeline`` dir in ``tmp`` linking to the parts of the package in ``MODEL_CODE``, for
    ``code_paths`` (MLflow copies what the links point to)."""
    staged = tmp / PACKAGE_DIR.name
    staged.mkdir()
    for name in MODEL_CODE:
        (staged / name).symlink_to(PACKAGE_DIR / name)
    return str(staged)


@contextmanager
def requirements_as_given() -> Iterator[None]:
    """Logging a model, MLflow checks its pip requirements against this environment
    (``warn_dependency_requirement_mismatches``: when it processes them, and when it loads the
    model back to check the input example; no argument or variable turns it off). Its first call
    in a process scans every installed distribution, 0.2-0.3 s. The requirements given here are
    this environment's own versions, so the check is skipped while logging. Loading a logged
    model elsewhere (``predict``, ``mlflow models serve``) still checks: the environment may
    differ there."""
    import mlflow.pyfunc as pyfunc  # the module itself (``mlflow.pyfunc`` is a lazy loader)
    from mlflow.utils import environment

    callers = (environment, pyfunc)  # the modules that call it, by the name they import
    checks = [caller.warn_dependency_requirement_mismatches for caller in callers]
    for caller in callers:
        caller.warn_dependency_requirement_mismatches = lambda requirements: None
    try:
        yield
    finally:
        for caller, check in zip(callers, checks, strict=True):
            caller.warn_dependency_requirement_mismatches = check


def log_model(
    model: torch.nn.Module, example: torch.Tensor, class_names: list[str], feature_names: list[str]
) -> None:
    """Log ``model/`` (the PyTorch model) and ``classifier/`` (probabilities by class name).

    Requirements are given, not inferred (inference costs seconds), and not checked against the
    environment they come from (``requirements_as_given``); the PyTorch model is pickled so it
    loads back as the ``nn.Module`` it was, with the package code it needs beside it
    (``MODEL_CODE``). The classifier has a signature but no input example: MLflow checks an
    example by loading the model it logs, and this one would load the PyTorch model again.
    """
    model = model.cpu().eval()
    with torch.no_grad():
        logits = model(example)
    requirements = [f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}"]
    example_table = pd.DataFrame(example.double().numpy(), columns=feature_names)  # any float
    probabilities = pd.DataFrame(torch.softmax(logits, dim=1).numpy(), columns=class_names)
    with tempfile.TemporaryDirectory() as tmp, requirements_as_given():
        torch_model = mlflow.pytorch.log_model(
            model,
            name="model",
            signature=infer_signature(example.numpy(), logits.numpy()),
            input_example=example.numpy(),
            pip_requirements=requirements,
            serialization_format="pickle",
            code_paths=[model_code(Path(tmp))],
        )
        names = Path(tmp, "names.json")
        names.write_text(json.dumps({"classes": class_names, "features": feature_names}))
        with warnings.catch_warnings():  # no example: MLflow would load the model to check it
            warnings.filterwarnings("ignore", ".*An input example was not provided")
            mlflow.pyfunc.log_model(
                name="classifier",
                python_model=str(CLASSIFIER_CODE),
                artifacts={"torch_model": torch_model.model_uri, "names": str(names)},
                signature=infer_signature(example_table, probabilities),
                pip_requirements=[*requirements, f"pandas=={pd.__version__}"],
            )
