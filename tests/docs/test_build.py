"""The documentation site builds with ``mkdocs build --strict``, and says what the code does.

The build fails on a broken link or anchor, a page missing from the nav, or an
API reference mkdocstrings cannot render; the failure shows MkDocs' output.
The other checks tie pages to the code they describe: the reference renders
every public name, the pages name the tested PyMongo range, "How it works"
names every patched attribute, and the plots are the benchmark's current ones.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import motorpatch
from motorpatch._versions import SUPPORTED
from motorpatch.patches import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
_TOOLS = {"mkdocs": "mkdocs", "material": "mkdocs-material",
          "mkdocstrings_handlers.python": "mkdocstrings[python]"}


def _require_tools() -> None:
    missing = [dist for module, dist in _TOOLS.items() if importlib.util.find_spec(module) is None]
    if missing:
        pytest.fail(f"the docs toolchain is not installed ({', '.join(missing)}): "
                    "run `pip install -e .[docs]` (or `.venv/bin/pip install -e '.[docs]'`)")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once for this module with ``--strict``."""
    _require_tools()
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
         str(ROOT / "mkdocs.yml"), "--site-dir", str(out)],
        cwd=ROOT, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True, text=True, timeout=300, check=False,
    )
    if proc.returncode != 0:
        output = proc.stdout + proc.stderr
        pytest.fail(f"mkdocs build --strict failed ({proc.returncode}):\n{output}")
    return out


def test_strict_build_writes_every_page(site: Path) -> None:
    for page in sorted(DOCS.glob("*.md")):
        if page.name == "README.md":
            continue
        built = site / "index.html" if page.stem == "index" else site / page.stem / "index.html"
        assert built.is_file(), f"{page.name} was not built"


def test_reference_renders_every_public_name(site: Path) -> None:
    html = (site / "reference" / "index.html").read_text(encoding="utf-8")
    rendered = set(re.findall(r'id="motorpatch\.(\w+)"', html))
    missing = sorted(set(motorpatch.__all__) - rendered)
    assert not missing, f"the reference does not document {missing}"
    assert not re.search(r":(class|func|data|meth|exc|mod):", html), "a Sphinx role leaked"


def test_pages_name_the_tested_pymongo_range() -> None:
    (lo_major, lo_minor), (hi_major, hi_minor) = SUPPORTED
    tested = f"{lo_major}.{lo_minor} to {hi_major}.{hi_minor}"
    for page in ("reference.md", "changelog.md"):
        assert f"PyMongo {tested}" in (DOCS / page).read_text(encoding="utf-8") or \
            f"| PyMongo | {tested}" in (DOCS / page).read_text(encoding="utf-8"), \
            f"docs/{page} does not name the tested range PyMongo {tested} (_versions.SUPPORTED)"


def test_how_it_works_names_every_patched_attribute() -> None:
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    missing = [p.target for p in REGISTRY
               if p.target not in text and not (p.module in text and p.attr in text)]
    assert not missing, f"docs/architecture.md does not describe these patches: {missing}"


@pytest.mark.parametrize("plot", ["RESULTS-throughput.png", "RESULTS-lag.png"])
def test_plots_are_the_benchmarks_current_ones(plot: str) -> None:
    assert (DOCS / "assets" / plot).read_bytes() == (ROOT / "bench" / plot).read_bytes(), \
        f"docs/assets/{plot} differs from bench/{plot}: cp bench/{plot} docs/assets/"
