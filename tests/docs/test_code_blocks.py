"""Every ```python block in docs/*.md and README.md runs, as written, against the test server.

Each block is one test (``page#n``): it is written to a file and run with
this interpreter in a subprocess, cwd the repository root, with
``MONGODB_URI`` naming the session's server and a fresh database. It must
exit 0 within the timeout and print no warning (a ``BlockingCallWarning``, a
coroutine "never awaited"...) on stderr.

A block right after an HTML comment ``<!-- not-run: reason -->`` (blank lines
between are allowed) is not collected at all; ``test_not_run_markers_give_a_reason``
checks that every such comment says why.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BLOCK_TIMEOUT = float(os.environ.get("MOTORPATCH_DOCS_BLOCK_TIMEOUT", "120"))

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*?)\s*$")
_NOT_RUN = re.compile(r"^\s*<!--\s*not-run\b\s*:?(?P<reason>.*?)-->\s*$")
_WARNING = re.compile(r"\b\w*Warning\b: ")


@dataclass(frozen=True)
class Block:
    page: str  # path relative to the repository root
    number: int  # 1-based among the page's python blocks
    line: int  # 1-based line of the opening fence
    code: str
    not_run: str | None  # the marker's reason ("" if it gives none); None: the block runs

    @property
    def id(self) -> str:
        return f"{self.page}#{self.number}"


def parse_blocks(text: str, page: str) -> list[Block]:
    """The ```python blocks of a Markdown text, with their not-run markers."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        end = i + 1
        while end < len(lines):
            closing = _FENCE.match(lines[end])
            if (
                closing
                and not closing["info"]
                and closing["fence"][0] == fence[0]
                and len(closing["fence"]) >= len(fence)
                and len(closing["indent"]) <= len(indent)
            ):
                break
            end += 1
        language = opening["info"].split()[0].lower() if opening["info"] else ""
        if language == "python":
            body = [line[len(indent) :] if line.startswith(indent) else line.lstrip()
                    for line in lines[i + 1 : end]]
            blocks.append(Block(page, len(blocks) + 1, i + 1,
                                textwrap.dedent("\n".join(body)) + "\n", _marker(lines, i)))
        i = end + 1
    return blocks


def _marker(lines: list[str], fence: int) -> str | None:
    """The not-run reason on the last non-blank line before line ``fence``, if any."""
    j = fence - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    match = _NOT_RUN.match(lines[j]) if j >= 0 else None
    return match["reason"].strip() if match else None


def pages() -> list[Path]:
    return [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]


def all_blocks() -> list[Block]:
    found: list[Block] = []
    for path in pages():
        found += parse_blocks(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    return found


_RUNNABLE = [b for b in all_blocks() if b.not_run is None]


@pytest.mark.parametrize("block", _RUNNABLE, ids=[b.id for b in _RUNNABLE])
def test_code_block_runs(block: Block, scratch_uri: Callable[[str], str],
                         tmp_path: Path) -> None:
    script = tmp_path / f"{Path(block.page).stem}_{block.number}.py"
    script.write_text(block.code, encoding="utf-8")
    env = {**os.environ, "MONGODB_URI": scratch_uri("docs"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    where = f"{block.page}, line {block.line} (block {block.number})"
    try:
        proc = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env, text=True,
                              capture_output=True, timeout=BLOCK_TIMEOUT, check=False)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{where} did not finish in {BLOCK_TIMEOUT:.0f}s:\n{exc.stdout}\n{exc.stderr}")
    output = f"--- stdout\n{proc.stdout}--- stderr\n{proc.stderr}"
    assert proc.returncode == 0, f"{where} exited with {proc.returncode}\n{output}"
    warnings = [line for line in proc.stderr.splitlines() if _WARNING.search(line)]
    assert not warnings, f"{where} printed warnings:\n{output}"


def test_not_run_markers_give_a_reason() -> None:
    skipped = [b for b in all_blocks() if b.not_run is not None]
    missing = [f"{b.page}, line {b.line}" for b in skipped if not b.not_run]
    assert not missing, "<!-- not-run: reason --> needs a reason before: " + ", ".join(missing)


def test_pages_have_runnable_blocks() -> None:
    """The collection itself works: the hand-written pages' examples are collected and run."""
    runnable = {b.page for b in _RUNNABLE}
    for page in ("docs/index.md", "docs/quickstart.md", "docs/retrofit.md",
                 "docs/migrating-from-motor.md", "docs/troubleshooting.md"):
        assert page in runnable, f"no runnable ```python block collected from {page}"


def test_parser_fences_markers_and_indentation() -> None:
    text = textwrap.dedent("""\
        Intro.

        ```python
        print(1)
        ```

        <!-- not-run: needs Motor -->

        ```python title="motor.py"
        import motor
        ```

        - a list item:

            ```python
            if True:
                print(2)
            ```

        ````markdown
        ```python
        print("inside another fence: not a block")
        ```
        ````

        ```sh
        echo no
        ```
        <!-- not-run -->
        ```python
        print(3)
        ```
        """)
    blocks = parse_blocks(text, "x.md")
    assert [(b.number, b.line, b.not_run) for b in blocks] == [
        (1, 3, None), (2, 9, "needs Motor"), (3, 15, None), (4, 30, "")
    ]
    assert blocks[0].code == "print(1)\n"
    assert blocks[2].code == "if True:\n    print(2)\n"
    compile(blocks[2].code, "x.md", "exec")
