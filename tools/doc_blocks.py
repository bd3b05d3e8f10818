"""The docs' fenced blocks, run as a reader runs them, and their shown output checked.

A page is read top to bottom, in one directory sharing one store (as a reader follows the
pages). What runs:

- every ```bash and ```python block (exit status 0);
- every ```text block that is a terminal transcript: ``$ command`` lines (a line ending in
  ``\\`` continues on the next), each followed by what it prints. A command may fail (an error
  message is what a transcript often shows).

What is checked: a transcript's output, and a ```text block that directly follows a run block
(nothing but blank lines between): that block's output. The shown text must equal the real
output (stdout and stderr as a terminal interleaves them) once what legitimately varies is
masked: run ids and other 32-hex ids, dates and times, durations, temp paths, PIDs and ports.
A line ``...`` stands for any lines, ``...`` inside a line for any text, and two or more spaces
for any run of spaces (table columns). Seeded numbers are not masked: they must match.

A 32-hex id shown in an output is bound to the real id in the same place; a later command
that shows the shown id runs with the real one, as a reader copies ids from their own
terminal. A block the tests cannot run says so in its first line, visibly:
``# not run by the tests: <why>``. Placeholders (``<RUN_ID>``, ``<SWEEP_RUN_ID>``, ``<RUN_A>``,
``<RUN_B>``, ``<CV_RUN_ID>``) are replaced with the ids of the runs the blocks before made.

``python tools/gen_docs.py --outputs`` runs the pages and rewrites each stale output block from
the real output (a block with ``...`` elisions is reported for a hand edit instead).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXPERIMENT = "softmax-regression"
SKIP = re.compile(r"^# not run by the tests: (\S.*)$")
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```$", re.M | re.S)
RUNNABLE = {"bash", "python"}
HEX_ID = re.compile(r"\b[0-9a-f]{32}\b")
# What varies from run to run, in the order it is masked: (pattern, what matches it).
VARYING = [
    (
        re.compile(r"\d{4}-\d\d-\d\d[ T_]\d\d[:-]\d\d[:-]\d\d(?:[,.]\d+)?"),
        r"\d{4}-\d\d-\d\d[ T_]\d\d[:-]\d\d[:-]\d\d(?:[,.]\d+)?",
    ),
    (re.compile(r"\d{4}-\d\d-\d\d"), r"\d{4}-\d\d-\d\d"),
    (re.compile(r"\b\d\d[:-]\d\d[:-]\d\d\b"), r"\d\d[:-]\d\d[:-]\d\d"),
    (re.compile(r"\b\d+(?:\.\d+)? ?(?:s|ms|min)\b"), r"\d+(?:\.\d+)? ?(?:s|ms|min)"),
    (re.compile(r"/tmp/\S+"), r"/\S+"),
    (re.compile(r"(?<=process )\d+|(?<=pid )\d+|(?<=PID )\d+"), r"\d+"),
    (re.compile(r"(?<=127\.0\.0\.1:)\d+|(?<=localhost:)\d+"), r"\d+"),
]
ELIDED = "..."
# What pipeline.tracking sets at import, which a zygote's forked child (tests/helpers/zygote.py)
# does not inherit: the commands' environment sets it, so that they print what a process prints.
ZYGOTE_ENV = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}


def blocks_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` as the blocks run in it (the docs test's and ``gen_docs.py --outputs``'): no
    tracking URI (the page's store), no ``COLUMNS`` (tables printed whole, as to a wide
    terminal), no ``HYDRA_FULL_ERROR``; the checkout first on ``PYTHONPATH``."""
    dropped = ("MLFLOW_TRACKING_URI", "COLUMNS", "HYDRA_FULL_ERROR")
    kept = {k: v for k, v in env.items() if k not in dropped}
    return kept | {"PYTHONPATH": str(ROOT)} | ZYGOTE_ENV


def with_python(env: dict[str, str], shim: Path) -> dict[str, str]:
    """``env`` where ``python`` is the zygote's client ``shim``, then this venv's tools
    (``mlflow``, ``pip``) on ``PATH``."""
    path = os.pathsep.join([str(shim.parent), str(Path(sys.executable).parent), env["PATH"]])
    return {**env, "PATH": path, "ZYGOTE_PYTHON": str(shim)}


@dataclass
class Block:
    page: Path
    line: int
    lang: str
    code: str
    after_blank: bool = False  # only blank lines between this block and the one before

    @property
    def skip_reason(self) -> str | None:
        match = SKIP.match(self.code.splitlines()[0]) if self.code.strip() else None
        return match.group(1) if match else None

    @property
    def transcript(self) -> bool:
        return self.lang == "text" and self.code.startswith("$ ")

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def run_order() -> list[Path]:
    """The pages in the order the tests run them: the nav's, but the home page (whose tour
    repeats Getting started's first blocks) after the others, with the README (which repeats
    the home page): their blocks then run once, and their outputs are checked against those."""
    pages = nav_pages()
    home = DOCS / "index.md"
    return [page for page in pages if page not in (home, ROOT / "README.md")] + [
        home,
        ROOT / "README.md",
    ]


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
    found: list[Block] = []
    end = None
    for match in FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        between = text[end : match.start()] if end is not None else "x"
        found.append(Block(page, line, match.group(1), match.group(2), not between.strip()))
        end = match.end()
    return found


def all_blocks() -> list[Block]:
    return [block for page in nav_pages() for block in blocks(page)]


# ---- transcripts and the comparison ----------------------------------------------------------


def commands(transcript: str) -> list[tuple[str, str]]:
    """A transcript's ``$ command`` lines, each with the output shown after it."""
    found: list[tuple[list[str], list[str]]] = []
    continued = False
    for line in transcript.splitlines():
        if continued:
            found[-1][0].append(line)
        elif line.startswith("$ "):
            found.append(([line[2:]], []))
        else:
            found[-1][1].append(line)
        continued = line.endswith("\\") and not found[-1][1]
    return [("\n".join(command), "\n".join(output)) for command, output in found]


@dataclass
class Ids:
    """Shown 32-hex ids bound to the real ids that stood in their place."""

    real: dict[str, str] = field(default_factory=dict)

    def pattern(self, shown: str) -> tuple[str, dict[str, str]]:
        """A regex for the shown output, and the group name of each id not bound yet."""
        groups: dict[str, str] = {}
        lines = []
        for line in shown.rstrip("\n").splitlines():
            line = line.rstrip()
            if line == ELIDED:
                lines.append(r"(?:[^\n]*\n)*?")
                continue
            lines.append(self._line(line, groups) + r"[ \t]*\n")
        return "".join(lines), groups

    def _line(self, line: str, groups: dict[str, str]) -> str:
        tokens = [HEX_ID, re.compile(re.escape(ELIDED)), re.compile(r" {2,}")]
        tokens += [pattern for pattern, _ in VARYING]
        out, at = [], 0
        while at < len(line):
            hits = [(m.start(), -len(m.group()), i, m) for i, t in enumerate(tokens)
                    if (m := t.search(line, at))]  # fmt: skip
            if not hits:
                out.append(re.escape(line[at:]))
                break
            start, _, which, match = min(hits, key=lambda hit: hit[:3])
            out.append(re.escape(line[at:start]))
            out.append(self._token(which, match.group(), groups))
            at = match.end()
        return "".join(out)

    def _token(self, which: int, text: str, groups: dict[str, str]) -> str:
        if which == 0:  # a 32-hex id
            if text in self.real:
                return re.escape(self.real[text])
            if text in groups:
                return f"(?P={groups[text]})"
            groups[text] = f"id{len(groups)}"
            return f"(?P<{groups[text]}>[0-9a-f]{{32}})"
        if which == 1:
            return r"[^\n]*?"
        if which == 2:
            return " +"
        return VARYING[which - 3][1]

    def check(self, shown: str, real: str) -> bool:
        """Whether ``real`` is what ``shown`` shows; binds the shown ids when it is."""
        pattern, groups = self.pattern(shown)
        text = printed(real) + "\n"
        match = re.fullmatch(pattern, text)
        if match:
            self.real |= {shown_id: match.group(name) for shown_id, name in groups.items()}
        else:  # stale: bind the ids in the order they appear, so the pages can go on
            shown_ids = list(dict.fromkeys(HEX_ID.findall(shown)))
            real_ids = list(dict.fromkeys(HEX_ID.findall(text)))
            if len(shown_ids) == len(real_ids):
                pairs = zip(shown_ids, real_ids, strict=True)
                self.real |= {s: r for s, r in pairs if s not in self.real}
        return match is not None

    def fill(self, command: str) -> str:
        """``command`` with each shown id replaced by the real id bound to it."""
        return HEX_ID.sub(lambda m: self.real.get(m.group(), m.group()), command)


# ---- running the pages -----------------------------------------------------------------------


def latest(uri: str, parents: bool, skip: int = 0) -> str:
    """The newest FINISHED run (``parents``: the newest sweep's parent run)."""
    from mlflow.tracking import MlflowClient

    from pipeline.tags import SWEEP_METRIC

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
    from mlflow.tracking import MlflowClient

    from pipeline.tags import CV_FOLD

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


@dataclass
class Outcome:
    """One run block or transcript command: where, how long, and its output against the shown."""

    block: Block
    command: str
    seconds: float
    output: str
    shown: str | None  # None: no output shown for it
    matches: bool = True
    shown_in: Block | None = None  # the ```text block that shows the output


class BlockFailed(AssertionError):
    pass


def execute(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    result = subprocess.run(
        command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=240,
    )  # fmt: skip
    return result.returncode, result.stdout


def run_pages(
    pages: list[Path], cwd: Path, env: dict[str, str], uri: str,
    after_page: Callable[[Path], None] | None = None, ids: Ids | None = None,
    strict: bool = True,
) -> Iterator[Outcome]:  # fmt: skip
    """Run every runnable block and transcript of ``pages`` in order, yielding each outcome.
    A run block that exits with a status other than 0 raises ``BlockFailed``, and so does
    (``strict``) a command naming an id that no output before it showed."""
    ids, done = ids or Ids(), dict[str, Outcome]()
    for page in pages:
        found = blocks(page)
        for at, block in enumerate(found):
            if block.skip_reason:
                continue
            following = found[at + 1] if at + 1 < len(found) else None
            shown = (
                following
                if following and following.lang == "text" and following.after_blank
                and not following.transcript and not following.skip_reason
                else None
            )  # fmt: skip
            if block.lang in RUNNABLE and block.code in done:  # the README repeats the home
                first = done[block.code]  # page's tour: run once, its output shown twice
                if shown is not None:
                    matches = ids.check(shown.code, first.output)
                    yield Outcome(
                        block, first.command, 0.0, first.output, shown.code, matches, shown
                    )
            elif block.lang in RUNNABLE:
                done[block.code] = run_block(block, shown, cwd, env, uri, ids)
                yield done[block.code]
            elif block.transcript:
                for command, output in commands(block.code):
                    yield run_command(block, command, output, cwd, env, uri, ids, strict)
        if after_page:
            after_page(page)


def run_block(
    block: Block, output_block: Block | None, cwd: Path, env: dict[str, str], uri: str, ids: Ids
) -> Outcome:
    code = ids.fill(filled(block.code, uri))
    if block.lang == "bash":
        command = ["bash", "-euo", "pipefail", "-c", code]
    else:
        command = [shutil.which("python", path=env["PATH"]) or "python", "-c", code]
    started = time.perf_counter()
    status, output = execute(command, cwd, env)
    if status != 0:
        raise BlockFailed(f"{block} failed ({status}):\n{code}\n--- output\n{output[-6000:]}")
    seconds = time.perf_counter() - started
    shown = output_block.code if output_block else None
    matches = shown is None or ids.check(shown, output)
    return Outcome(block, code, seconds, output, shown, matches, output_block)


def run_command(
    block: Block, command: str, shown: str, cwd: Path, env: dict[str, str], uri: str, ids: Ids,
    strict: bool = True,
) -> Outcome:  # fmt: skip
    code = ids.fill(filled(command, uri))
    unbound = [shown for shown in HEX_ID.findall(command) if shown not in ids.real]
    if unbound and strict:
        raise BlockFailed(
            f"{block}: `{command}` names {unbound[0]}, which no output before it shows. "
            "Fix: show the output that printed it, or use a placeholder"
        )
    started = time.perf_counter()
    _status, output = execute(["bash", "-o", "pipefail", "-c", code], cwd, env)
    seconds = time.perf_counter() - started
    return Outcome(block, code, seconds, output, shown, ids.check(shown, output), block)


def stale_message(outcome: Outcome) -> str:
    return (
        f"{outcome.block}: the output shown for `{outcome.command}` is not what it prints. "
        f"Fix: python tools/gen_docs.py --outputs\n--- shown\n{outcome.shown}\n"
        f"--- printed\n{outcome.output}"
    )


# ---- rewriting stale outputs -----------------------------------------------------------------


def printed(output: str) -> str:
    """The output as a terminal shows it: a carriage return overwrites its line."""
    lines = output.rstrip("\n").split("\n")
    return "\n".join(line.rstrip("\r").rsplit("\r", 1)[-1].rstrip() for line in lines)


def renewed(shown: str, output: str) -> str | None:
    """The shown output made from the real one, keeping a leading or trailing ``...`` line;
    None where the elision is elsewhere (a hand edit)."""
    lines, real = shown.rstrip("\n").splitlines(), printed(output).splitlines()
    inner = lines[1:-1] if len(lines) > 2 else []
    if any(ELIDED in line for line in inner) or len(lines) < 2:
        return None if any(ELIDED in line for line in lines) else "\n".join(real)
    head, tail = lines[0] == ELIDED, lines[-1] == ELIDED
    if head == tail:
        return None if head or ELIDED in lines[0] + lines[-1] else "\n".join(real)
    edge = lines[1] if head else lines[-2]  # the shown line next to the elision
    pattern = Ids()._line(edge.rstrip(), {})
    at = [i for i, line in enumerate(real) if re.fullmatch(pattern, line)]
    if not at:
        return None
    return "\n".join([ELIDED, *real[at[0] :]] if head else [*real[: at[-1] + 1], ELIDED])


def rewrite(outcomes: list[Outcome], ids: Ids) -> list[str]:
    """Rewrite each stale output block of the pages from the real output, then every shown id
    with its real one; returns the blocks left for a hand edit."""
    by_block: dict[tuple[Path, int], list[Outcome]] = {}
    for outcome in outcomes:
        if outcome.shown_in is not None:
            key = (outcome.shown_in.page, outcome.shown_in.line)
            by_block.setdefault(key, []).append(outcome)
    left, texts, renamed = [], {}, set()
    for (page, line), found in sorted(by_block.items(), key=lambda item: -item[0][1]):
        if all(outcome.matches for outcome in found):
            continue
        block = found[0].shown_in
        assert block is not None
        if block.transcript:
            parts = []
            for (command, shown), outcome in zip(commands(block.code), found, strict=True):
                new = shown if outcome.matches else renewed(shown, outcome.output)
                if new is None:
                    left.append(f"{block}: `{command}`")
                parts.append(f"$ {command}\n{shown if new is None else new}".rstrip("\n"))
            code = "\n".join(parts) + "\n"
        else:
            new = renewed(block.code, found[0].output)
            if new is None:
                left.append(str(block))
                continue
            code = new + "\n"
        text = texts.get(page) or page.read_text()
        texts[page] = replace_block(text, line, code)
        renamed |= set(HEX_ID.findall(block.code))  # now the real ids: so everywhere
    for page in nav_pages():
        text = texts.get(page) or page.read_text()
        text = HEX_ID.sub(
            lambda m: ids.real.get(m.group(), m.group()) if m.group() in renamed else m.group(),
            text,
        )
        if text != page.read_text():
            page.write_text(text)
            print(f"wrote {page.relative_to(ROOT)}")
    return left


def replace_block(text: str, line: int, code: str) -> str:
    """``text`` with the fenced block that starts at ``line`` holding ``code``."""
    for match in FENCE.finditer(text):
        if text.count("\n", 0, match.start()) + 1 == line:
            return text[: match.start(2)] + code + text[match.end(2) :]
    raise ValueError(f"no block at line {line}")
