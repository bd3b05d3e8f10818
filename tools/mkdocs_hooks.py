"""MkDocs hooks: the Python API page joins the site once ``pipeline/api.py`` exists.

Until then ``mkdocstrings`` would fail on ``::: pipeline.api`` (and ``--strict`` with it), so the
page is left out of the files and the nav.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
API_PAGE = "api.md"
API_TITLE = "The Python API"


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
    page = files.get_file_from_path(API_PAGE)
    if page is not None and not api_exists():
        files.remove(page)
    return files
