"""The trained model in MLflow: ``model`` (PyTorch) and ``classifier`` (class probabilities).

Both are MLflow 3 LoggedModels of the run (``models:/m-...``, and ``runs:/ID/model``,
``runs:/ID/classifier``). What all runs of one shape share (code, requirements, environment
files, signature, input example) is prepared once per process (``ModelTemplate``); each run's
copy is its pickled model, two MLmodel files and the LoggedModel records: a few ms, not MLflow's
0.15 s of saving, checking and copying per run.
"""

from __future__ import annotations

import atexit
import datetime
import functools
import json
import os
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.entities import LoggedModel, LoggedModelOutput, LoggedModelStatus
from mlflow.models import Model, infer_signature
from mlflow.tracking import MlflowClient
from mlflow.utils.file_utils import local_file_uri_to_path

from pipeline.tracking.resume.identity import PACKAGE_DIR
from pipeline.tracking.run.yaml_text import YamlTemplate
from pipeline.tracking.store import bulk


def import_mlflow_pytorch() -> None:
    """``import mlflow.pytorch`` without importing Lightning. Where Lightning is installed (the
    ``bench`` extra), MLflow imports it for its Lightning autolog, which the pipeline never
    uses: +3.3 s of every training process here. An ImportError is MLflow's "not installed"."""
    hidden = "pytorch_lightning" not in sys.modules
    if hidden:
        sys.modules["pytorch_lightning"] = None  # type: ignore[assignment]
    try:
        import mlflow.pytorch  # noqa: F401
    finally:
        if hidden:
            del sys.modules["pytorch_lightning"]


import_mlflow_pytorch()

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


# Not counted in ``model_size_bytes`` (MLflow writes them after measuring the directory).
UNSIZED = frozenset({"MLmodel", "conda.yaml", "python_env.yaml", "requirements.txt"})
MODEL_DATA = "data/model.pth"
NAMES = ("model", "classifier")  # the run's two LoggedModels, in the order they are logged
# In ``classifier/``, where MLflow puts its two artifacts (``pyfunc.log_model`` numbers them when
# the PyTorch model comes from its ``models:/`` URI), and the file such a download adds.
TORCH_DIR, NAMES_FILE = "artifacts/0", "artifacts/1/names.json"
DOWNLOAD_META = ("registered_model_meta", b"model_name: null\nmodel_version: null\n")


def log_model(
    model: torch.nn.Module, example: torch.Tensor, class_names: list[str], feature_names: list[str]
) -> tuple[str, str]:
    """Log ``model/`` (the PyTorch model) and ``classifier/`` (probabilities by class name) to
    the active run, from this process's template for their shape (``template_for``): the model
    ids (``model``, ``classifier``)."""
    model = model.cpu().eval()
    template = template_for(model, example, class_names, feature_names)
    return template.log(MlflowClient(), mlflow.active_run().info.run_id, model)


TEMPLATES_KEPT = 16  # shapes a process keeps templates of (a sweep over hidden sizes has several)
_templates: dict[tuple, ModelTemplate] = {}


def template_for(
    model: torch.nn.Module, example: torch.Tensor, class_names: list[str], feature_names: list[str]
) -> ModelTemplate:
    """This process's template for models that take ``example`` and give what ``model`` gives
    (shape and type: the signature), of these classes and features; prepared on first use."""
    with torch.no_grad():
        logits = model.cpu().eval()(example)
    key = (
        example.numpy().tobytes(), str(example.dtype), tuple(example.shape),
        str(logits.dtype), tuple(logits.shape), tuple(class_names), tuple(feature_names),
    )  # fmt: skip
    if key not in _templates:
        if len(_templates) >= TEMPLATES_KEPT:
            _templates.pop(next(iter(_templates)))
        _templates[key] = ModelTemplate.prepare(model, example, class_names, feature_names)
    return _templates[key]


@dataclass(frozen=True)
class ModelTemplate:
    """The files and records all runs' models of one shape share, made once (``prepare``), and
    the copy one run gets (``log``): equal to what ``mlflow.pytorch.log_model`` and
    ``mlflow.pyfunc.log_model`` log, but for the run's pickled model, ids and times.

    ``model_files``/``classifier_files``: relative path -> bytes (the run's model and MLmodel
    files excluded); ``*_mlmodel``: the MLmodel files as dicts; ``tags``: the LoggedModels' tags
    (MLflow's context tags: user, source)."""

    model_files: Mapping[str, bytes]
    model_mlmodel: Mapping
    classifier_files: Mapping[str, bytes]
    classifier_mlmodel: Mapping
    tags: Mapping[str, str]
    # Where this process wrote each file all runs share (by content): later runs link to it.
    written: dict[bytes, Path] = field(default_factory=dict, compare=False, repr=False)

    @functools.cached_property
    def shared(self) -> frozenset[bytes]:
        """The contents of the files every run's models have (code, requirements, ...)."""
        contents = [*self.model_files.values(), *self.classifier_files.values()]
        return frozenset([*contents, DOWNLOAD_META[1]])

    @classmethod
    def prepare(
        cls,
        model: torch.nn.Module,
        example: torch.Tensor,
        class_names: list[str],
        feature_names: list[str],
    ) -> ModelTemplate:
        """Save ``model`` (any model of the shape) and its classifier once, as ``log_model``
        would log them, and keep what does not depend on the run.

        Requirements are given, not inferred (inference costs seconds), and not checked against
        the environment they come from (``requirements_as_given``); the PyTorch model is pickled
        so it loads back as the ``nn.Module`` it was, with the package code it needs beside it
        (``MODEL_CODE``). The classifier has a signature but no input example: MLflow checks an
        example by loading the model it logs, and this one would load the PyTorch model again.
        """
        from mlflow.tracking.context import registry as context

        model = model.cpu().eval()
        with torch.no_grad():
            logits = model(example)
        requirements = [f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}"]
        example_table = pd.DataFrame(example.double().numpy(), columns=feature_names)  # any float
        probabilities = pd.DataFrame(torch.softmax(logits, dim=1).numpy(), columns=class_names)
        quiet = warnings.catch_warnings()  # no example: MLflow would load the model to check it
        with tempfile.TemporaryDirectory() as tmp, requirements_as_given(), quiet:
            warnings.filterwarnings("ignore", ".*An input example was not provided")
            torch_dir, classifier_dir = Path(tmp, "model"), Path(tmp, "classifier")
            mlflow.pytorch.save_model(
                model,
                path=torch_dir,
                signature=infer_signature(example.numpy(), logits.numpy()),
                input_example=example.numpy(),
                pip_requirements=requirements,
                serialization_format="pickle",
                code_paths=[model_code(Path(tmp))],
            )
            names = Path(tmp, "names.json")
            names.write_text(json.dumps({"classes": class_names, "features": feature_names}))
            mlflow.pyfunc.save_model(
                path=classifier_dir,
                python_model=str(CLASSIFIER_CODE),
                artifacts={"torch_model": str(torch_dir), "names": str(names)},
                signature=infer_signature(example_table, probabilities),
                pip_requirements=[*requirements, f"pandas=={pd.__version__}"],
            )
            model_files = _files(torch_dir)
            classifier_files = _files(classifier_dir)
            classifier_mlmodel = Model.load(classifier_dir).to_dict()
            saved = classifier_mlmodel["flavors"]["python_function"]["artifacts"]
            classifier_files = {  # MLflow's layout: artifacts/0 (the model), artifacts/1
                path: data
                for path, data in classifier_files.items()
                if not path.startswith("artifacts/")
            } | {NAMES_FILE: names.read_bytes()}
            saved["torch_model"]["path"], saved["names"]["path"] = TORCH_DIR, NAMES_FILE
            return cls(
                model_files={p: d for p, d in model_files.items() if p != MODEL_DATA},
                model_mlmodel=Model.load(torch_dir).to_dict(),
                classifier_files=classifier_files,
                classifier_mlmodel=classifier_mlmodel,
                tags=context.resolve_tags(),
            )

    def log(
        self,
        client: MlflowClient,
        run_id: str,
        model: torch.nn.Module,
        experiment_id: str | None = None,
        params: Mapping[str, str] | None = None,
    ) -> tuple[str, str]:
        """Log ``model`` as run ``run_id``'s ``model`` and ``classifier`` (no active run needed):
        two READY LoggedModels of the run (its outputs list them), with the run's ``params``
        (read from the run when not given, as ``log_model`` does) and this template's files.
        Returns the two model ids (``model``, ``classifier``).

        In a local store that ``bulk`` writes to, the files and then the records in one
        transaction; elsewhere (a tracking server) MLflow's client calls, as ``log_model`` makes.
        """
        if experiment_id is None or params is None:
            run = client.get_run(run_id)
            experiment_id, params = run.info.experiment_id, run.data.params
        uri = client.tracking_uri
        if writes_directly(uri, experiment_id):
            records = self.write_files(uri, run_id, model, experiment_id, params)
            bulk.write_logged_models(uri, records)
            return records[0].model_id, records[1].model_id
        places = [
            Placed.of(client.create_logged_model(experiment_id, name, run_id, dict(self.tags),
                                                 dict(params)))
            for name in NAMES
        ]  # fmt: skip
        for place, files in zip(places, self.files(model, run_id, *places), strict=True):
            _write(client, place, files)
        for place in places:
            client.finalize_logged_model(place.model_id, LoggedModelStatus.READY)
        client.log_outputs(run_id, [LoggedModelOutput(p.model_id, step=0) for p in places])
        return places[0].model_id, places[1].model_id

    def write_files(
        self,
        uri: str,
        run_id: str,
        model: torch.nn.Module,
        experiment_id: str,
        params: Mapping[str, str],
    ) -> list[bulk.ModelRecord]:
        """The files of run ``run_id``'s two models in place, where ``writes_directly(uri,
        experiment_id)``; their records (``model``, ``classifier``) to give
        ``bulk.write_logged_models`` (many runs' in one call: one commit)."""
        location = experiment_location(uri, experiment_id)
        places = [Placed(id_, bulk.model_location(location, id_)) for id_ in
                  (bulk.new_model_id() for _ in NAMES)]  # fmt: skip
        written = dict(self.written)  # and this run's own files, once written
        for place, files in zip(places, self.files(model, run_id, *places), strict=True):
            _write_tree(Path(local_file_uri_to_path(place.artifact_location)), files, written)
        self.written.update((c, p) for c, p in written.items() if c in self.shared)
        return [
            bulk.ModelRecord(place.model_id, experiment_id, name, place.artifact_location, run_id,
                             dict(params), dict(self.tags))
            for name, place in zip(NAMES, places, strict=True)
        ]  # fmt: skip

    def files(
        self, model: torch.nn.Module, run_id: str, torch_place: Placed, classifier_place: Placed
    ) -> tuple[dict[str, bytes], dict[str, bytes]]:
        """The files of the run's ``model`` and ``classifier`` (relative path -> content)."""
        torch_files = {**self.model_files, MODEL_DATA: pickled(model)}
        texts = self.mlmodel_texts
        torch_files["MLmodel"] = _mlmodel(
            self.model_mlmodel, torch_place, run_id, torch_files, texts[0]
        )
        classifier_files = {
            **self.classifier_files,
            **{f"{TORCH_DIR}/{path}": content for path, content in torch_files.items()},
            f"{TORCH_DIR}/{DOWNLOAD_META[0]}": DOWNLOAD_META[1],
        }
        torch_uri = f"models:/{torch_place.model_id}"
        described = _with_torch_uri(self.classifier_mlmodel, torch_uri)
        classifier_files["MLmodel"] = _mlmodel(
            described, classifier_place, run_id, classifier_files, texts[1], [torch_uri]
        )
        return torch_files, classifier_files

    @functools.cached_property
    def mlmodel_texts(self) -> tuple[YamlTemplate, YamlTemplate]:
        """The two MLmodel files' texts with each run's values to put in (``_mlmodel``): PyYAML
        dumps each in ~2 ms."""
        own = [(key,) for key in OWN]
        torch_text = {**self.model_mlmodel, **dict.fromkeys(OWN)}
        classifier_text = {**_with_torch_uri(self.classifier_mlmodel, ""), **dict.fromkeys(OWN)}
        return (
            YamlTemplate(torch_text, own, _safe_dump),
            YamlTemplate(classifier_text, [*own, TORCH_URI], _safe_dump),
        )


@dataclass(frozen=True)
class Placed:
    """A LoggedModel's id and where its files go."""

    model_id: str
    artifact_location: str

    @classmethod
    def of(cls, logged: LoggedModel) -> Placed:
        return cls(logged.model_id, logged.artifact_location)


@functools.cache
def experiment_location(uri: str, experiment_id: str) -> str:
    """The experiment's artifact location (it never changes), asked once per process."""
    return MlflowClient(uri).get_experiment(experiment_id).artifact_location


def is_local(location: str) -> bool:
    return urlparse(location).scheme in ("", "file")


def writes_directly(uri: str, experiment_id: str) -> bool:
    """Whether the store's records are written by ``bulk`` and the experiment's files are on
    this machine's disk (``ModelTemplate.write_files``)."""
    return bulk.writes_directly(uri) and is_local(experiment_location(uri, experiment_id))


def pickled(model: torch.nn.Module) -> bytes:
    """``model`` as ``mlflow.pytorch.save_model`` pickles it, byte for byte (``torch.save``
    names the archive inside after the file: ``model/``, not a buffer's ``archive/``), through
    this process's scratch dir (a temp dir per model cost more than the pickling)."""
    path = _scratch() / str(threading.get_ident()) / Path(MODEL_DATA).name  # a dir a thread
    path.parent.mkdir(exist_ok=True)
    torch.save(model.cpu().eval(), path, pickle_module=mlflow.pytorch.pickle_module)
    return path.read_bytes()


@functools.cache
def _scratch() -> Path:
    scratch = tempfile.TemporaryDirectory(prefix="pipeline-models-")
    atexit.register(scratch.cleanup)
    return Path(scratch.name)


def _files(directory: Path) -> dict[str, bytes]:
    return {
        path.relative_to(directory).as_posix(): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def _with_torch_uri(mlmodel: Mapping, uri: str) -> dict:
    """The classifier's MLmodel naming where its PyTorch model came from, as MLflow records it."""
    flavors = json.loads(json.dumps(mlmodel["flavors"]))  # a deep copy of plain data
    flavors["python_function"]["artifacts"]["torch_model"]["uri"] = uri
    return {**mlmodel, "flavors": flavors}


# What ``_mlmodel`` fills in an MLmodel file for each run; and where the classifier's names the
# PyTorch model it loads.
OWN = ("artifact_path", "model_id", "model_uuid", "run_id", "utc_time_created", "model_size_bytes")
TORCH_URI = ("flavors", "python_function", "artifacts", "torch_model", "uri")


def _safe_dump(structure: object) -> str:
    import yaml

    return yaml.safe_dump(structure, default_flow_style=False)


def _mlmodel(
    template: Mapping,
    logged: Placed,
    run_id: str,
    files: Mapping[str, bytes],
    text: YamlTemplate | None = None,
    more: list[str] | None = None,
) -> bytes:
    """The MLmodel file of ``logged`` made of the template's, as ``Model.log``
    fills it: where it is, its ids, when, its size (files but MLmodel and the environment's).
    From ``text`` (the template's dump, ``more``: its values past ``OWN``) where it can."""
    size = sum(len(content) for path, content in files.items() if path not in UNSIZED)
    own = {
        "artifact_path": logged.artifact_location,
        "model_id": logged.model_id,
        "model_uuid": logged.model_id,
        "run_id": run_id,
        "utc_time_created": str(datetime.datetime.now(datetime.UTC).replace(tzinfo=None)),
        "model_size_bytes": size,
    }
    described = {**template, **own}
    if text is None:
        return _safe_dump(described).encode()
    values = [own[key] for key in OWN] + (more or [])
    return text.render_checked(values, lambda: _safe_dump(described)).encode()


def _write(client: MlflowClient, logged: Placed, files: Mapping[str, bytes]) -> None:
    """The files into the LoggedModel's artifact location: written in place on local disk, else
    uploaded from a temp dir (a tracking server's artifact store)."""
    location = logged.artifact_location
    if is_local(location):
        _write_tree(Path(local_file_uri_to_path(location)), files)
        return
    with tempfile.TemporaryDirectory() as tmp:
        _write_tree(Path(tmp), files)
        client.log_model_artifacts(logged.model_id, tmp)


def _write_tree(
    root: Path, files: Mapping[str, bytes], written: dict[bytes, Path] | None = None
) -> None:
    """``files`` (relative path -> content) under ``root``. With ``written`` (content -> a file
    that has it), a file whose content is there already is a hard link to that file (a few us,
    against ~50 us to write one; a copy where linking fails, e.g. across file systems), and each
    file written is added to it. MLflow never changes a logged file in place, and deleting one
    run's model leaves the others' links whole."""
    made: set[Path] = set()
    for path, content in files.items():
        target = root / path
        if target.parent not in made:
            target.parent.mkdir(parents=True, exist_ok=True)
            made.add(target.parent)
        if written is None:
            target.write_bytes(content)
        elif content not in written or not _linked(written[content], target):
            target.write_bytes(content)
            written[content] = target


def _linked(origin: Path, target: Path) -> bool:
    try:
        os.link(origin, target)
        return True
    except OSError:  # gone, another file system, or links not supported
        return False
