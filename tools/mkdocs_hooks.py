"""MkDocs hooks.

- The Python API page joins the site once ``pipeline/api.py`` exists. Until then
  ``mkdocstrings`` would fail on ``::: pipeline.api`` (and ``--strict`` with it), so the page is
  left out of the files and the nav.
- Files of the repository that the pages link to (``../examples/tour.ipynb``, a link that works
  where the pages are read on GitHub) are copied into the site at the same path, and the links
  point there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
API_PAGE = "api.md"
API_TITLE = "The Python API"
REPO_FILES = ["examples/tour.ipynb"]  # outside docs/, linked from its top-level pages


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
