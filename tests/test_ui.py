"""``python -m pipeline.ui``: no store is an error; it reads the store while a parallel sweep
writes it (no lock errors, nothing lost); over that sweep, headless Chromium sees the runs table
(the sweep's parent run, its 4 job runs nested under it, their datasets), the compare view and
the ``cost`` chart."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import cost_history, run_cli, sqlite_uri, start_cli, sweep_runs
from helpers.servers import (
    bound_addresses,
    free_port,
    listening,
    live_members,
    start_server,
    stop_group,
)
from pipeline.tracking.store.access import prepare_store

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from doc_pictures import CHROMIUM, TIMEOUT_MS, new_page, open_compare

SWEEP = ("-m", "optim.lr=0.01,0.1", "seed=1,2", "epochs=50")
PARALLEL = ("hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "tracking.flush_every_s=0.2")
PARENT_NAME = "sweep " + " ".join(SWEEP[1:])
NAMES = sorted(f"optim.lr={lr},seed={seed}" for lr in ("0.01", "0.1") for seed in (1, 2))
# docs/getting-started.md shows the compare view: refreshed from here (PIPELINE_DOCS_PICTURES=1).
DOCS_PICTURE = Path(__file__).resolve().parents[1] / "docs" / "img" / "ui-compare.png"


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:  # gone since it was listed
        return ""


@pytest.mark.parametrize("elsewhere", [False, True], ids=["default", "MLFLOW_TRACKING_URI"])
def test_no_store_is_one_line_exit_2_and_nothing_created(tmp_path: Path, elsewhere: bool):
    store = tmp_path / ("elsewhere" if elsewhere else "mlruns")
    env = {"MLFLOW_TRACKING_URI": sqlite_uri(store)} if elsewhere else None
    result = run_cli(module="pipeline.ui", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"No tracking store at {store / 'mlflow.db'}.")
    assert "python -m pipeline.train" in line
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """``python -m pipeline.ui`` on a fresh store, then a parallel sweep (joblib, 2 workers)
    that writes it while this test reads it through the UI's REST API."""
    cwd = tmp_path_factory.mktemp("ui")
    uri = sqlite_uri(cwd / "mlruns")
    experiment_id = prepare_store(uri, "softmax-regression")  # the store a user opens the UI on
    port = free_port()
    log = cwd / "ui.log"
    # Both start at once: the sweep's first run comes after its imports, by when the UI is up.
    sweep = start_cli(*SWEEP, *PARALLEL, cwd=cwd)
    try:
        server = start_server(
            [sys.executable, "-m", "pipeline.ui", "--port", str(port)], cwd, log, port
        )
        base = f"http://127.0.0.1:{port}"
        try:
            bound = bound_addresses(port)
            commands = [command_line(pid) for pid in live_members(server.pid)]
            reads = 0
            while sweep.poll() is None:
                request = urllib.request.Request(
                    f"{base}/api/2.0/mlflow/runs/search",
                    data=json.dumps({"experiment_ids": [experiment_id]}).encode(),
                    headers={"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(request, timeout=30) as response:
                    assert response.status == 200
                reads += 1
                time.sleep(0.5)
            stdout, stderr = sweep.communicate()
            printed = re.search(r"open (\S+)", log.read_text())
            assert printed, log.read_text()
            yield {
                "base": base, "url": printed.group(1), "bound": bound, "reads": reads, "uri": uri,
                "sweep": (sweep.returncode, stdout, stderr), "log": log, "commands": commands,
            }  # fmt: skip
        finally:
            stop_group(server)
            assert not live_members(server.pid), "the UI left processes behind"
            assert not listening(port), f"something still listens on {port}"
    finally:
        sweep.kill()  # a no-op once it has ended; else a failed step would leave it running


@pytest.mark.slow
def test_the_ui_reads_while_a_parallel_sweep_writes(ui: dict):
    status, stdout, stderr = ui["sweep"]
    assert status == 0, stderr
    assert ui["bound"] == {"127.0.0.1"}  # not exposed beyond this machine
    # MLflow's GenAI job runner is off: its 8 consumer processes cost ~20 s of CPU at start
    assert len(ui["commands"]) <= 2, ui["commands"]
    assert not any("huey" in command for command in ui["commands"])
    assert ui["reads"] >= 3
    for text in (stdout, stderr, ui["log"].read_text()):
        assert "database is locked" not in text
        assert "Traceback" not in text
    parent, runs = sweep_runs(ui["uri"])
    assert parent.info.status == "FINISHED"
    assert sorted(r.info.run_name for r in runs) == NAMES
    assert all(r.info.status == "FINISHED" for r in runs)
    assert all(len(cost_history(ui["uri"], r.info.run_id)) == 51 for r in runs)


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"no {CHROMIUM}: apt-get install chromium")
@pytest.mark.skipif(
    importlib.util.find_spec("playwright") is None, reason="no playwright: pip install playwright"
)
def test_ui_shows_the_sweep(ui: dict, tmp_path: Path):
    from playwright.sync_api import expect, sync_playwright

    base, printed_url = ui["base"], ui["url"]
    parent, runs = sweep_runs(ui["uri"])
    assert parent.info.run_name == PARENT_NAME
    assert sorted(r.info.run_name for r in runs) == NAMES
    ids = [r.info.run_id for r in runs]
    (exp_id,) = {r.info.experiment_id for r in [parent, *runs]}
    assert printed_url == f"{base}/#/experiments/{exp_id}/runs?workflowType=machine_learning"
    shots = {
        name: tmp_path / f"ui-{name}.png" for name in ("runs", "compare", "compare-table", "cost")
    }

    with sync_playwright() as playwright:
        browser, page = new_page(playwright)
        try:
            # (a) the runs table (an ag-grid), at the URL the wrapper printed: the sweep is one
            # row, its parent run, collapsed; the "+" button in its name cell shows the 4 jobs
            # as rows nested (indented) under it.
            page.goto(printed_url)
            rows = page.locator(".ag-center-cols-container [role=row]")
            parent_link = page.get_by_role("link", name=PARENT_NAME, exact=True)
            expect(parent_link).to_be_visible(timeout=TIMEOUT_MS)
            expect(page.get_by_text("5 matching runs", exact=True)).to_be_visible()
            expect(rows).to_have_count(1)
            for name in NAMES:
                expect(page.get_by_text(name, exact=True)).to_have_count(0)
            page.get_by_role("row").filter(has=parent_link).get_by_role("button").click()
            for name in NAMES:
                expect(page.get_by_text(name, exact=True)).to_be_visible(timeout=TIMEOUT_MS)
            expect(rows).to_have_count(5)
            digest = runs[0].data.tags["data.digest"][:32]  # the Dataset column: each job's data
            expect(rows.get_by_text(f"toy/train ({digest})", exact=True)).to_have_count(4)
            names = page.locator(".ag-pinned-left-cols-container [role=row]")
            expect(names.first).to_contain_text(PARENT_NAME)  # the jobs are listed below it
            page.screenshot(path=shots["runs"])

            # (b) the compare view: one column per run, in the order of `ids`; its title and
            # the parallel-coordinates plot, an axis per parameter and one for the metric (the
            # view the docs build shoots too: tools/doc_pictures.py)
            open_compare(page, base, ids, exp_id)
            page.screenshot(path=shots["compare"])
            for param in ("optim.lr", "seed"):  # the Parameters table
                header = page.get_by_role("rowheader", name=param, exact=True)
                row = page.get_by_role("row").filter(has=header)
                expect(row.get_by_role("cell")).to_have_text([r.data.params[param] for r in runs])
            cost_link = page.get_by_role("link", name="cost", exact=True)  # the Metrics table
            expect(cost_link).to_be_visible()
            header.scroll_into_view_if_needed()
            page.screenshot(path=shots["compare-table"])

            # (c) the cost chart, reached from the compare view: 4 legend entries, 4 lines
            cost_link.click()
            for name in NAMES:
                expect(page.get_by_text(f"{name} (cost)", exact=True)).to_be_visible(
                    timeout=TIMEOUT_MS
                )
            for run in runs:  # the table under the chart: each run's last cost, at step 50
                link = page.get_by_role("link", name=run.info.run_name, exact=True)
                row = page.get_by_role("row").filter(has=link)
                expect(row).to_contain_text(f"{run.data.metrics['cost']!r} (step=50)")
            # Each run is drawn twice (the line and a faint unsmoothed copy): count distinct paths.
            distinct_lines = """() => new Set([...document.querySelectorAll(
                '.js-plotly-plot .scatterlayer path.js-line')].map(p => p.getAttribute('d'))
                .filter(Boolean)).size"""
            page.wait_for_function(f"({distinct_lines})() >= 4", timeout=TIMEOUT_MS)
            assert page.evaluate(distinct_lines) == 4
            page.screenshot(path=shots["cost"])
        finally:
            browser.close()
    for path in shots.values():
        print(f"screenshot: {path}")
    if os.environ.get("PIPELINE_DOCS_PICTURES") == "1":  # .ci/run: the docs' picture of it
        shutil.copyfile(shots["compare"], DOCS_PICTURE)
