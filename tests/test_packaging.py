"""The version matrix (tox.ini, ./dev matrix-all) covers every supported PyMongo minor."""

from __future__ import annotations

import re
from pathlib import Path

from motorpatch._versions import SUPPORTED

ROOT = Path(__file__).resolve().parent.parent


def _supported_minors() -> list[str]:
    (major, lo), (_, hi) = SUPPORTED
    return [f"{major}.{minor}" for minor in range(lo, hi + 1)]


def test_tox_has_one_environment_per_supported_minor() -> None:
    text = (ROOT / "tox.ini").read_text()
    pins = dict(re.findall(r"^\s+pymongo(\d+): pymongo==([\d.]+)$", text, re.M))
    minors = [".".join(v.split(".")[:2]) for v in pins.values()]
    assert minors == _supported_minors()
    envlist = re.search(r"pymongo\{([\d,]+)\}", text)
    assert envlist is not None and envlist.group(1).split(",") == list(pins)


def test_dev_matrix_covers_every_older_minor_with_the_tox_pins() -> None:
    dev = (ROOT / "dev").read_text()
    older = re.search(r'^OLDER_PYMONGO="([^"]+)"', dev, re.M)
    assert older is not None
    tox_pins = re.findall(r"pymongo==([\d.]+)$", (ROOT / "tox.ini").read_text(), re.M)
    assert older.group(1).split() == tox_pins[:-1]  # the newest runs in .venv (./dev test)
