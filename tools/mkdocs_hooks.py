"""MkDocs hooks.

- The Python API page joins the site once ``pipeline/api.py`` exists. Until then
  ``mkdocstrings`` would fail on ``::: pipeline.api`` (and ``--strict`` with it), so the page is
  left out of the files and the nav.
- Files of the repository that the pages link to (``../examples/tour.ipynb``, a link that works
  where the pages are read on GitHub) are copied into the site at the same path, and the links
  point there.
- The pictures are made from real runs (``tools/doc_pictures.py``) and written into the built
  site, over the committed copies in ``docs/img/`` (which the README shows on GitHub, refreshed
  by the tests with ``PIPELINE_DOCS_PICTURES=1``): the cost curves of the Getting-started sweep
  and, where Chromium and Playwright are installed, the MLflow UI's compare view. The checkout
  is left as it was. ``PIPELINE_DOCS_PICTURES=committed`` keeps the committed ones (a quicker
  build while writing).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
API_PAGE = "api.md"
API_TITLE = "The Python API"
REPO_FILES = ["examples/tour.ipynb"]  # outside docs/, linked from its top-level pages
PICTURES = ["cost_curves.png", "ui-compare.png"]  # in docs/img/, made by tools/doc_pictures.py
_made: dict[str, bytes] = {}  # made once a process (`mkdocs serve` rebuilds on every edit)


def api_exists() -> bool:
    return (ROOT / "pipeline" / "api.py").is_file()


def on_config(config: Any, **kwargs: Any) -> Any:
    if api_exists() and config.nav is not None:
        nav = config.nav
        if not any(isinstance(item, dict) and API_TITLE in item for item in nav):
            at = next(i for i, item in enumerate(nav) if "Reference" in item)
            nav.insert(at, {API_TITLE: API_PAGE})
    return config


def on_files(files: Any, config: Any, **kwargs: Any) -> Any:
    from mkdocs.structure.files import File

    page = files.get_file_from_path(API_PAGE)
    if page is not None and not api_exists():
        files.remove(page)
    for path in REPO_FILES:
        files.append(File(path, str(ROOT), config["site_dir"], config["use_directory_urls"]))
    return files


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    """A top-level page's link to ``../<repository file>`` points to its copy in the site."""
    if "/" in page.file.src_uri:
        return markdown
    for path in REPO_FILES:
        markdown = markdown.replace(f"](../{path})", f"]({path})")
    return markdown


def make_pictures() -> None:
    """Each picture made from its runs, once a process, with a line on what was made."""
    sys.path.insert(0, str(ROOT / "tools"))
    import doc_pictures

    makers = {
        "cost_curves.png": doc_pictures.cost_curves,
        "ui-compare.png": doc_pictures.ui_compare,
    }
    for name, make in makers.items():
        if name in _made:
            continue
        started = time.monotonic()
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / name
            _made[name] = out.read_bytes() if make(out) else b""
        if _made[name]:
            print(f"docs: {name} made from real runs in {time.monotonic() - started:.0f} s")
        else:
            print(f"docs: {name}: no Chromium or Playwright here: docs/img/{name} as committed")


def on_post_build(config: Any, **kwargs: Any) -> None:
    """The pictures made from real runs replace the committed copies in the built site."""
    if os.environ.get("PIPELINE_DOCS_PICTURES") == "committed":
        print("docs: PIPELINE_DOCS_PICTURES=committed: the pictures are docs/img/'s")
        return
    make_pictures()
    for name in PICTURES:
        if _made.get(name):
            (Path(config["site_dir"]) / "img" / name).write_bytes(_made[name])
