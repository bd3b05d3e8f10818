"""The docs cannot rot: the generated reference pages match their sources, every ``bash`` and
``python`` block of the README and of docs/ runs (in one temp dir, with a temp store).
(``mkdocs build --strict`` runs in .ci/run, after the tests.)

A block the tests cannot run (it installs packages, or needs a team server, PostgreSQL or Slurm)
says so in its first line, visibly: ``# not run by the tests: <why>``. Placeholders in a block
(``<RUN_ID>``, ``<SWEEP_RUN_ID>``, ``<RUN_A>``, ``<RUN_B>``, ``<CV_RUN_ID>``) are replaced with the
ids of the runs the blocks before it made, as a reader copies them from the UI.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from conftest import EXPERIMENT, ROOT, cli_env, sqlite_uri
from helpers.zygote import python_shim
from pipeline.tags import CV_FOLD, SWEEP_METRIC

sys.path.insert(0, str(ROOT / "tools"))
import gen_docs

DOCS = ROOT / "docs"
SKIP = re.compile(r"^# not run by the tests: (\S.*)$")
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```$", re.M | re.S)
RUNNABLE = {"bash", "python"}
PICTURES = os.environ.get("PIPELINE_DOCS_PICTURES") == "1"  # .ci/run: refresh docs/img/


@dataclass
class Block:
    page: Path
    line: int
    lang: str
    code: str

    @property
    def skip_reason(self) -> str | None:
        match = SKIP.match(self.code.splitlines()[0]) if self.code.strip() else None
        return match.group(1) if match else None

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def nav_pages() -> list[Path]:
    """The site's pages in the order of mkdocs.yml's nav (the API page last), then the README."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())

    def walk(items: list) -> list[str]:
        found = []
        for item in items:
            value = next(iter(item.values())) if isinstance(item, dict) else item
            found += walk(value) if isinstance(value, list) else [value]
        return found

    pages = [DOCS / name for name in walk(config["nav"])]
    if (ROOT / "pipeline" / "api.py").is_file():
        pages.append(DOCS / "api.md")
    return [*pages, ROOT / "README.md"]


def blocks(page: Path) -> list[Block]:
    text = page.read_text()
    return [
        Block(page, text.count("\n", 0, match.start()) + 1, match.group(1), match.group(2))
        for match in FENCE.finditer(text)
    ]


def all_blocks() -> list[Block]:
    return [block for page in nav_pages() for block in blocks(page)]


# ---- generated pages, fenced blocks ----------------------------------------------------------


STALE = "{} is stale. Fix: python tools/gen_docs.py"


def test_the_configuration_and_errors_pages_are_current():
    """The configuration page equals what tools/gen_docs.py makes of the schemas, conf/ and the
    value rules; the errors page, of the "Fix:" messages in the code."""
    assert gen_docs.CONFIG_PAGE.read_text() == gen_docs.config_reference(), STALE.format("config")
    assert gen_docs.ERRORS_PAGE.read_text() == gen_docs.errors_reference(), STALE.format("errors")


@pytest.mark.slow  # `train --help` is a process: ~4 s of imports
def test_the_commands_page_is_current():
    """The commands page equals each command's --help."""
    page = gen_docs.COMMANDS_PAGE.read_text()
    assert page == gen_docs.commands_reference(), STALE.format(gen_docs.COMMANDS_PAGE)


def test_the_config_reference_names_every_schema_key():
    page = gen_docs.CONFIG_PAGE.read_text()
    for group, _name, node in gen_docs.schema.SCHEMAS:
        for field in gen_docs.dataclasses.fields(node):
            if field.name != "_target_":
                assert f"`{group}.{field.name}`" in page, (group, field.name)
    for key in ("epochs", "tracking.flush_every_s", "sweep.metric", "checkpoint.every_s"):
        assert f"| `{key}` |" in page
    for group in gen_docs.USER_GROUPS:  # each option of a group, not only its default
        for option in (gen_docs.CONF_DIR / group).glob("*.yaml"):
            assert f"### `{group}={option.stem}`" in page, (group, option.stem)
    assert "scheduler" in gen_docs.USER_GROUPS


def test_every_block_is_runnable_or_says_why_not():
    """Shell and Python blocks are ```bash or ```python (so the docs test finds them); output is
    ```text; a block that is not run says why in its first line."""
    found = all_blocks()
    assert len(found) > 20
    for block in found:
        assert block.lang in RUNNABLE | {"text", "yaml"}, f"{block}: ```{block.lang or ''}"
        if block.lang in RUNNABLE:
            assert block.code.strip(), f"{block}: empty"
    runnable = [b for b in found if b.lang in RUNNABLE and b.skip_reason is None]
    assert len(runnable) >= 10


# ---- running the blocks ----------------------------------------------------------------------


def latest(uri: str, parents: bool, skip: int = 0) -> str:
    """The newest FINISHED run (``parents``: the newest sweep's parent run)."""
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs(
        [experiment.experiment_id], "attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
    )  # fmt: skip
    chosen = [r for r in runs if (SWEEP_METRIC in r.data.tags) == parents]
    return chosen[skip].info.run_id


def latest_cv(uri: str) -> str:
    """The newest cross-validated run: the run its newest fold run is nested under."""
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    folds = client.search_runs(
        [experiment.experiment_id], f"tags.`{CV_FOLD}` = '1'",
        order_by=["attributes.start_time DESC"], max_results=1,
    )  # fmt: skip
    return folds[0].data.tags["mlflow.parentRunId"]


def filled(code: str, uri: str) -> str:
    """``code`` with its run-id placeholders replaced by the store's runs."""
    places = {
        "<RUN_ID>": lambda: latest(uri, parents=False),
        "<RUN_B>": lambda: latest(uri, parents=False),
        "<RUN_A>": lambda: latest(uri, parents=False, skip=1),
        "<SWEEP_RUN_ID>": lambda: latest(uri, parents=True),
        "<CV_RUN_ID>": lambda: latest_cv(uri),
    }
    for place, value in places.items():
        if place in code:
            code = code.replace(place, value())
    return code


def run_block(block: Block, cwd: Path, env: dict[str, str], uri: str) -> str:
    code = filled(block.code, uri)
    if block.lang == "bash":
        command = ["bash", "-euo", "pipefail", "-c", code]
    else:
        command = [shutil.which("python", path=env["PATH"]) or "python", "-c", code]
    result = subprocess.run(
        command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, (
        f"{block} failed ({result.returncode}):\n{code}\n--- stdout\n{result.stdout[-3000:]}"
        f"\n--- stderr\n{result.stderr[-3000:]}"
    )
    return result.stdout + result.stderr


def save_cost_curves(uri: str) -> None:
    """The Getting-started sweep's cost curves, as the parent run logged them: docs/img/."""
    client = MlflowClient(tracking_uri=uri)
    parent = latest(uri, parents=True)
    local = Path(client.download_artifacts(parent, "cost_curves.png"))
    assert local.read_bytes().startswith(b"\x89PNG")
    if PICTURES:
        shutil.copyfile(local, DOCS / "img" / "cost_curves.png")


@pytest.fixture
def fast_python(tmp_path: Path) -> dict[str, str]:
    """The blocks' environment, where ``python`` is the zygote's client (tests/helpers/
    zygote.py: a process that imported the pipeline once forks each command), so each command
    skips ~4 s of imports."""
    env = cli_env({"PYTHONPATH": str(ROOT), "COLUMNS": "100"})
    env.pop("HYDRA_FULL_ERROR", None)
    shim = python_shim(tmp_path / "bin", env)
    path = os.pathsep.join([str(shim.parent), str(Path(sys.executable).parent), env["PATH"]])
    return {**env, "PATH": path, "ZYGOTE_PYTHON": str(shim)}


@pytest.mark.slow
def test_every_block_runs(tmp_path: Path, fast_python: dict[str, str]):
    """Each runnable block, page after page in the nav's order, in one directory sharing one
    store (as a reader follows the pages), ends with exit status 0."""
    uri = sqlite_uri(tmp_path / "mlruns")
    env = fast_python
    timings, done = [], set()
    for page in nav_pages():
        for block in blocks(page):
            if block.lang not in RUNNABLE or block.skip_reason or block.code in done:
                continue  # the home page repeats the README's tour: run once
            done.add(block.code)
            started = time.perf_counter()
            run_block(block, tmp_path, env, uri)
            timings.append((time.perf_counter() - started, str(block)))
            print(f"{timings[-1][0]:5.1f} s  {block}", flush=True)
        if page.name == "getting-started.md":
            save_cost_curves(uri)
    for seconds, where in sorted(timings, reverse=True)[:5]:
        print(f"{seconds:5.1f} s  {where}")
