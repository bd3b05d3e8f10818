"""YAML files that many runs write alike, made from one dump: a sweep's thousand jobs each write
a ``.hydra/hydra.yaml`` (4.6 ms to dump with PyYAML), a ``.hydra/config.yaml`` and two MLmodel
files that differ only in a few values (the job's number, its overrides, its ids).

A ``YamlTemplate`` dumps the structure once with a marker in place of each value that varies,
and then puts each job's values, dumped alone, in place of the markers: the same text the
whole dump gives, byte for byte, where that is certain (a value that is a plain scalar on one
line, and no line that PyYAML would break: a space past column 80). Otherwise ``render`` gives
None and the caller dumps the whole structure as before.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

WIDTH = 80  # PyYAML's line width: past it, a scalar breaks at a space
SCALARS = (str, int, float, bool)
MARK = "yamlTemplateMark{}x"
Path = tuple[Any, ...]  # keys (and list indices) from the root to a value


class YamlTemplate:
    """``dump(structure)`` with the values at ``paths`` given again for each rendering.

    ``structure``: plain dicts, lists and scalars (``OmegaConf.to_container``'s); a value at a
    path is a scalar, or a list of scalars (a list: one line per item)."""

    def __init__(self, structure: Any, paths: Sequence[Path], dump: Callable[[Any], str]):
        self.dump, self.paths = dump, list(paths)
        self.checked = False  # by ``render_checked``, against a whole dump
        self.pieces: list[str] | None = None  # the text between the values' lines
        self.prefixes: list[str] = []  # each value's line up to the value
        self.scalars: dict[tuple[type, str], str | None] = {}
        marked = _copy(structure)
        try:
            self.lists = [isinstance(_get(structure, path), list) for path in self.paths]
            for i, (path, is_list) in enumerate(zip(self.paths, self.lists, strict=True)):
                _set(marked, path, [MARK.format(i)] if is_list else MARK.format(i))
        except (KeyError, IndexError, TypeError):  # no such value: never rendered
            return
        text = dump(marked)
        found = re.split(r"(yamlTemplateMark\d+x)", text)
        marks = found[1::2]
        if sorted(marks) != sorted(MARK.format(i) for i in range(len(self.paths))):
            return  # a marker dumped otherwise, or twice: never rendered
        self.order = [int(mark[len("yamlTemplateMark") : -1]) for mark in marks]
        texts = found[0::2]
        for i, before in enumerate(texts[:-1]):
            line_start = before.rfind("\n") + 1
            self.prefixes.append(before[line_start:])
            texts[i] = before[:line_start]
        self.pieces = texts

    def render_checked(self, values: Sequence[Any], whole: Callable[[], str]) -> str:
        """``render(values)``, or ``whole()`` (the whole dump) where it gives None. The first
        text rendered is checked against ``whole()``: the template is dropped unless equal."""
        text = self.render(values)
        if text is None:
            return whole()
        if not self.checked:
            truth, self.checked = whole(), True
            if text != truth:
                self.pieces = None
                return truth
        return text

    def render(self, values: Sequence[Any]) -> str | None:
        """The dump with ``values`` (one per path) in place, or None where it is not certain to
        equal ``dump`` of the structure with those values."""
        if self.pieces is None:
            return None
        out = [self.pieces[0]]
        for n, (i, prefix) in enumerate(zip(self.order, self.prefixes, strict=True)):
            value = values[i]
            items = value if self.lists[i] else [value]
            if self.lists[i] and not (isinstance(value, list) and value):
                return None  # an empty list dumps as "[]", not as a line per item
            lines = []
            for item in items:
                line = self.scalar(item, prefix)
                if line is None:
                    return None
                lines.append(line)
            out.append("\n".join(lines))
            out.append(self.pieces[n + 1])
        return "".join(out)

    def scalar(self, value: Any, prefix: str) -> str | None:
        """``prefix`` and ``value`` as one line of the dump, or None if unsure."""
        if value is not None and type(value) not in SCALARS:  # not an Enum, nor a container
            return None
        key = (type(value), repr(value))  # repr: -0.0 is not 0.0
        if key not in self.scalars:
            lines = self.dump(value).split("\n")
            alone = lines[0]
            rest = [line for line in lines[1:] if line not in ("", "...")]
            plain = not rest and alone[:1] not in ('"', "|", ">", "!", "&", "*")
            self.scalars[key] = alone if plain else None
        text = self.scalars[key]
        if text is None or (" " in text and len(prefix) + len(text) > WIDTH):
            return None
        return prefix + text


def values_at(structure: Any, paths: Sequence[Path]) -> list[Any] | None:
    """The values at ``paths`` in ``structure``; None if one is not there."""
    try:
        return [_get(structure, path) for path in paths]
    except (KeyError, IndexError, TypeError):
        return None


def _get(structure: Any, path: Path) -> Any:
    for key in path:
        structure = structure[key]
    return structure


def _set(structure: Any, path: Path, value: Any) -> None:
    _get(structure, path[:-1])[path[-1]] = value


def _copy(structure: Any) -> Any:
    if isinstance(structure, dict):
        return {k: _copy(v) for k, v in structure.items()}
    if isinstance(structure, list):
        return [_copy(v) for v in structure]
    return structure
