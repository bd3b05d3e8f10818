"""The docs' pictures, made from real runs in a temp store.

- ``cost_curves(path)``: the Getting-started sweep (the reference run, then
  ``-m optim.lr=0.01,0.1 seed=1,2,3``), and the cost-curve figure its parent run logged.
- ``ui_compare(path)``: the MLflow UI's compare view of a 4-run sweep
  (``-m optim.lr=0.01,0.1 seed=1,2 epochs=50``), in headless Chromium through Playwright; None
  where either is missing. ``tests/test_ui.py`` takes the same view with ``open_compare``.

``tools/mkdocs_hooks.py`` makes both when the site is built.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; never `playwright install`
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The UI opens its assistant panel on first load; keep it shut so screenshots show the page.
CLOSE_ASSISTANT = (
    "localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');"
    "localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');"
)
VIEWPORT = {"width": 1600, "height": 1000}
TIMEOUT_MS = 30_000
UI_SWEEP = ["optim.lr=0.01,0.1", "seed=1,2", "epochs=50"]

# In a process of its own (its output kept from the build's): the reference run, the sweep,
# and the figure the sweep's parent run logged, copied to argv[1].
COST_CURVES = """
import shutil, sys
from mlflow import MlflowClient
import pipeline

pipeline.train()  # into ./mlruns, as the page's commands
sweep = pipeline.sweep("optim.lr=0.01,0.1", "seed=1,2,3")
local = MlflowClient(sweep.tracking_uri).download_artifacts(sweep.parent_id, "cost_curves.png")
shutil.copyfile(local, sys.argv[1])
"""


def python_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    path = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return {**env, "PYTHONPATH": path, "MLFLOW_DISABLE_TELEMETRY": "true"}


def run_python(code: str, *args: str, cwd: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, env=python_env(),
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(
            f"{code.strip()}\nfailed ({result.returncode}):\n{result.stderr[-3000:]}"
        )
    return result.stdout


def cost_curves(path: Path) -> bool:
    """The Getting-started sweep's cost curves, as its parent run logged them, at ``path``."""
    with tempfile.TemporaryDirectory() as work:
        run_python(COST_CURVES, str(path), cwd=Path(work))
    if not path.read_bytes().startswith(b"\x89PNG"):
        raise RuntimeError(f"{path} is not a PNG")
    return True


def browser_available() -> bool:
    return CHROMIUM.is_file() and importlib.util.find_spec("playwright") is not None


def compare_url(base: str, run_ids: list[str], experiment_id: str) -> str:
    query = urllib.parse.urlencode(
        {"runs": json.dumps(run_ids), "experiments": json.dumps([experiment_id])},
        quote_via=urllib.parse.quote,
    )
    return f"{base}/#/compare-runs?{query}"


def open_compare(page: Any, base: str, run_ids: list[str], experiment_id: str) -> None:
    """Show the UI's compare view of ``run_ids`` in ``page`` (a Playwright page), once its
    title and its parallel-coordinates plot (an axis per parameter, one for ``cost``) are in."""
    from playwright.sync_api import expect

    page.goto(compare_url(base, run_ids, experiment_id))
    title = f"Comparing {len(run_ids)} Runs from 1 Experiment"
    expect(page.get_by_text(title)).to_be_visible(timeout=TIMEOUT_MS)
    axes = page.locator(".js-plotly-plot .axis-title")
    expect(axes).to_have_text(["optim.lr", "seed", "cost"], timeout=TIMEOUT_MS)


def new_page(playwright: Any) -> tuple[Any, Any]:
    """Headless Chromium (Debian's) and a page in the docs' viewport: (browser, page)."""
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
    context = browser.new_context(viewport=VIEWPORT)
    context.add_init_script(CLOSE_ASSISTANT)
    return browser, context.new_page()


UI_RUNS = """
import json
from mlflow import MlflowClient
import pipeline

sweep = pipeline.sweep(*%r)  # into ./mlruns, where pipeline.ui looks
runs = sorted(sweep.runs, key=lambda run: run.name)
experiment = MlflowClient(sweep.tracking_uri).get_run(sweep.parent_id).info.experiment_id
print(json.dumps({"ids": [run.id for run in runs], "experiment": experiment}))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_up(base: str, server: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"python -m pipeline.ui exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"python -m pipeline.ui did not answer at {base} in {timeout_s:.0f} s")


def ui_compare(path: Path) -> bool:
    """The compare view of a 4-run sweep, at ``path``; False (nothing made) without Chromium or
    Playwright."""
    if not browser_available():
        return False
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        found = json.loads(run_python(UI_RUNS % (UI_SWEEP,), cwd=work).strip().splitlines()[-1])
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with (work / "ui.log").open("w") as log:
            server = subprocess.Popen(
                [sys.executable, "-m", "pipeline.ui", "--port", str(port)], cwd=work,
                env=python_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            wait_up(base, server)
            with sync_playwright() as playwright:
                browser, page = new_page(playwright)
                try:
                    open_compare(page, base, found["ids"], found["experiment"])
                    page.screenshot(path=str(path))
                finally:
                    browser.close()
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
    return True
