"""Create a virtual environment holding the nx-27017 test server, unless it exists.

nx-27017 needs PyMongo >= 4.18; tox environments that test an older PyMongo
run the server from this separate environment (tox.ini). Usage:
``python tests/support/nx_env.py DIR``.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path


def main(target: str) -> None:
    exe = Path(target) / "bin" / "nx-27017"
    if exe.exists():
        return
    venv.create(target, with_pip=True)
    subprocess.run(
        [str(Path(target) / "bin" / "python"), "-m", "pip", "install", "-q", "nx-27017>=0.8.1"],
        check=True,
    )


if __name__ == "__main__":
    main(sys.argv[1])
