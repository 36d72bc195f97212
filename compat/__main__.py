"""``python -m compat``: PyMongo's own sync test suite, plain and green, against nx-27017.

Fetches the installed PyMongo's test suite (before isolating the network),
runs the chosen modes inside a loopback-only network namespace
(``compat/inner.py``), then writes ``compat/RESULTS.md`` and
``compat/results.json`` (``compat/report.py``). Exits 1 when a test passes plain
and fails green consistently (stalls are reported, not failed). See compat/README.md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from compat import report
from compat.fetch import CACHE, fetch, installed_version
from compat.netns import enter_command
from compat.suite import QUICK_FILES, sync_files, write_ini


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m compat", description=__doc__)
    p.add_argument("--modes", default="plain,green",
                   help="comma-separated: plain, installed, green (default plain,green)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per test (default 60)")
    p.add_argument("--quick", action="store_true",
                   help="only the subset most relevant to motorpatch (compat/suite.py QUICK_FILES)")
    p.add_argument("--no-report", action="store_true", help="leave RESULTS.md untouched")
    p.add_argument("--parallel", action="store_true",
                   help="run the modes at the same time (each with its own server): about "
                        "half the wall time; loop-lag figures then include CPU contention")
    p.add_argument("--recheck", type=int, default=2,
                   help="run tests whose outcome differs this many more times per mode "
                        "(default 2)")
    p.add_argument("files", nargs="*", help="test files (test_cursor.py or test_cursor); "
                   "default: every synchronous test file (test/test_*.py)")
    p.add_argument("--pytest", dest="pytest_args", default="",
                   help="extra pytest arguments, one string (e.g. \"-k 'pool and not fork'\")")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    version = installed_version()
    suite = fetch(version)
    ini = write_ini(suite, version)
    if args.files:
        files = [f if f.endswith(".py") or (suite / "test" / f).is_dir() else f + ".py"
                 for f in args.files]
    elif args.quick:
        files = QUICK_FILES
    else:
        files = sync_files(suite)
    missing = [f for f in files if not (suite / "test" / f).exists()]
    if missing:
        print(f"compat: not in PyMongo {version}'s test/: {', '.join(missing)}", file=sys.stderr)
        return 2
    run_dir = CACHE / "runs" / f"pymongo-{version}"
    run_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "run_dir": str(run_dir), "suite": str(suite), "ini": str(ini),
        "modes": args.modes.split(","), "timeout": args.timeout, "files": files,
        "extra": shlex.split(args.pytest_args), "recheck": args.recheck,
        "parallel": args.parallel,
    }
    spec_file = run_dir / "spec.json"
    spec_file.write_text(json.dumps(spec, indent=1))
    inner = [sys.executable, "-m", "compat.inner", str(spec_file)]
    started = time.monotonic()
    rc = subprocess.call(enter_command(inner), cwd=Path(__file__).resolve().parent.parent)
    elapsed = time.monotonic() - started
    if rc != 0:
        print(f"compat: the isolated run failed (exit {rc})", file=sys.stderr)
        return rc
    summary, result = report.build(run_dir, version=version, files=files,
                                   modes=args.modes.split(","), elapsed=elapsed,
                                   write=not args.no_report)
    print(summary)
    lost = report.regressions(result)
    if lost:
        print(f"compat: {len(lost)} tests pass plain and fail green", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
