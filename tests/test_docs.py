"""The docs cannot rot: the generated reference pages match their sources; every ``bash`` and
``python`` block and every ``$ command`` transcript of the README and of docs/ runs (in one temp
dir, with a temp store), and the output the pages show is what they print (tools/doc_blocks.py
says how the shown output is compared, and how a block the tests cannot run says why).
(``mkdocs build --strict`` runs in .ci/run, after the tests.)
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import ROOT, sqlite_uri
from helpers.zygote import python_shim

sys.path.insert(0, str(ROOT / "tools"))
import gen_docs
from doc_blocks import (
    DOCS,
    RUNNABLE,
    Ids,
    all_blocks,
    blocks_env,
    commands,
    latest,
    renewed,
    run_order,
    run_pages,
    stale_message,
    with_python,
)

PICTURES = os.environ.get("PIPELINE_DOCS_PICTURES") == "1"  # .ci/run: refresh docs/img/


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
    ```text; a block that is not run says why in its first line; a ```text block that shows a
    ``$ command`` starts with it (a transcript, which runs) or says why it is not run."""
    found = all_blocks()
    assert len(found) > 20
    for block in found:
        assert block.lang in RUNNABLE | {"text", "yaml"}, f"{block}: ```{block.lang or ''}"
        if block.lang in RUNNABLE:
            assert block.code.strip(), f"{block}: empty"
        shows_commands = any(line.startswith("$ ") for line in block.code.splitlines())
        if block.lang == "text" and shows_commands and not block.skip_reason:
            assert block.transcript, f"{block}: a transcript starts with its first `$ command`"
    runnable = [b for b in found if b.lang in RUNNABLE and b.skip_reason is None]
    assert len(runnable) >= 10
    transcripts = [b for b in found if b.transcript]
    assert sum(len(commands(b.code)) for b in transcripts) >= 12


def test_a_transcript_is_split_into_its_commands():
    text = "$ a \\\n    b\nout 1\nout 2\n$ c\n"
    assert commands(text) == [("a \\\n    b", "out 1\nout 2"), ("c", "")]


A, B = "98b85077bae84b27bc69080f388e9b50", "0bda1c1fd36249ac95c64b19e39b79d3"
SHOWN = f"""[2026-12-07 15:52:09,772][HYDRA] Run {A}: trained in 0.6 s
...
run        final_cost  run_id
lr=0.1       0.254477  {A}
"""
PRINTED = f"""[2026-12-08 01:02:03,004][HYDRA] Run {B}: trained in 12.5 s
Epoch 1
Epoch 2
run   final_cost  run_id
lr=0.1  0.254477  {B}
"""


def test_a_shown_output_masks_what_varies_and_nothing_else():
    """Ids, dates, times and durations differ, lines are elided, columns are padded otherwise:
    it matches, and the shown id is bound to the printed one; a seeded number that differs,
    or one shown id standing for two printed ones, does not match."""
    ids = Ids()
    assert ids.check(SHOWN, PRINTED)
    assert ids.fill(f"python -m pipeline.diff {A}") == f"python -m pipeline.diff {B}"
    assert not Ids().check(SHOWN, PRINTED.replace("0.254477", "0.254478"))
    assert not Ids().check(SHOWN, PRINTED.replace(f"  {B}", "  " + "f" * 32))
    assert not Ids().check(SHOWN, PRINTED + "one more line\n")


def test_a_stale_output_is_renewed_from_the_printed_one_keeping_its_elision():
    shown = "...\nrun   final_cost  run_id\nlr=0.1  0.1  x\n"
    assert renewed(shown, PRINTED) == "\n".join(["...", *PRINTED.splitlines()[3:]])
    assert renewed("Epoch 1\n...\n", PRINTED) == "\n".join([*PRINTED.splitlines()[:2], "..."])
    assert renewed("a\n...\nb\n", PRINTED) is None  # an elision in the middle: a hand edit


# ---- running the blocks ----------------------------------------------------------------------


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
    env = blocks_env(dict(os.environ))
    return with_python(env, python_shim(tmp_path / "bin", env))


@pytest.mark.slow
def test_every_block_runs(tmp_path: Path, fast_python: dict[str, str]):
    """Each runnable block and transcript command, page after page in the nav's order, in one
    directory sharing one store (as a reader follows the pages): each block ends with exit
    status 0, and each output shown is what it printed."""
    uri = sqlite_uri(tmp_path / "mlruns")

    def after(page: Path) -> None:
        if page.name == "getting-started.md":
            save_cost_curves(uri)

    outcomes = []
    for outcome in run_pages(run_order(), tmp_path, fast_python, uri, after):
        outcomes.append(outcome)
        print(f"{outcome.seconds:5.1f} s  {outcome.block}  {outcome.command[:60]!r}", flush=True)
    stale = [stale_message(outcome) for outcome in outcomes if not outcome.matches]
    assert not stale, "\n\n".join(stale)
    checked = [outcome for outcome in outcomes if outcome.shown is not None]
    assert len(checked) >= 30, len(checked)
    for outcome in sorted(outcomes, key=lambda o: -o.seconds)[:5]:
        print(f"{outcome.seconds:5.1f} s  {outcome.block}")
