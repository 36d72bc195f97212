"""docs/testing.md's test files, run with the plugin as a user would (pytester)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "testing.md"
_BLOCK = re.compile(
    r"<!-- not-run: a pytest test file; tests/testing/test_docs_examples.py[^>]*-->\s*"
    r"```python\n(?P<code>.*?)```",
    re.S,
)


def _files() -> list[str]:
    return [m["code"] for m in _BLOCK.finditer(PAGE.read_text(encoding="utf-8"))]


def _run(pytester: pytest.Pytester, server_uri: str, code: str) -> pytest.RunResult:
    pytester.makepyfile(test_page=code)
    os.environ["MONGODB_URI"] = server_uri
    try:
        return pytester.runpytest_subprocess(
            "-p", "motorpatch.testing", "-p", "no:cacheprovider", "-o", "asyncio_mode=strict",
            "-o", "asyncio_default_fixture_loop_scope=function", timeout=120,
        )
    finally:
        del os.environ["MONGODB_URI"]


def test_the_page_has_its_test_files() -> None:
    assert len(_files()) == 2


@pytest.mark.parametrize("number", [0, 1])
def test_page_test_file_passes(pytester: pytest.Pytester, server_uri: str, number: int) -> None:
    code = _files()[number]
    result = _run(pytester, server_uri, code)
    result.assert_outcomes(passed=code.count("\ndef test_") + code.count("\nasync def test_"))


def test_the_worked_example_fails_when_the_handler_is_not_green(
    pytester: pytest.Pytester, server_uri: str
) -> None:
    code = _files()[0]
    unconverted = code.replace("    @motorpatch.green\n    def get(", "    def get(")
    assert unconverted != code
    result = _run(pytester, server_uri, unconverted)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*20 PyMongo operation(s) ran on the loop's thread outside green code (1 call site(s))*"
        "test_page.py:18 in NoteHandler.get*",
    ])
