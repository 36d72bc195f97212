"""The part of a compat run that executes inside the loopback-only network namespace.

For each mode: a fresh nx-27017 on a free loopback port (``tests/support/servers.py``
``NxServer``), then PyMongo's suite in its own pytest process with
``DB_IP``/``DB_PORT`` pointing at it and ``compat.plugin`` loaded; the server
is stopped after. Then the tests whose outcome differs between plain and green
are run again ``recheck`` times in each mode, alone, to tell a consistent
difference from a flaky test. Usage (normally via ``python -m compat``)::

    unshare -n python -m compat.inner SPEC.json

SPEC: ``run_dir``, ``suite``, ``ini``, ``modes``, ``timeout``, ``files``, ``extra``
(pytest arguments), ``recheck``, ``parallel`` (run the modes at the same time).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from compat.netns import bring_up_loopback, verify_isolated
from tests.support.servers import NxServer  # run from the repository root, as python -m

ROOT = Path(__file__).resolve().parent.parent

MAX_RESTARTS = 5


@dataclass
class Job:
    run_dir: Path
    suite: Path
    ini: Path
    timeout: float
    targets: list[str]  # test files (test/x.py) or node ids
    extra: list[str]


def run_mode(mode: str, job: Job, name: str | None = None) -> dict[str, object]:
    """Run the targets in ``mode``; if pytest dies in a test, record it and resume after it."""
    name = name or mode
    out = job.run_dir / f"{name}.jsonl"
    out.unlink(missing_ok=True)
    skip = job.run_dir / f"{name}.done"
    log = job.run_dir / f"{name}.log"
    log.unlink(missing_ok=True)
    started = time.monotonic()
    crashed: list[str] = []
    for attempt in range(MAX_RESTARTS + 1):
        resume = [f"--compat-skip-file={skip}"] if attempt else []
        rc = _pytest(mode, job, resume, out, log)
        if rc in (0, 1, 5):  # passed, some failed, none collected
            break
        dead = _crashed_in(out)
        if dead is None:
            break
        crashed.append(dead)
        with out.open("a") as fh:
            fh.write(json.dumps({"nodeid": dead, "mode": mode, "outcome": "crashed",
                                 "message": f"pytest process died (exit {rc})"}) + "\n")
        skip.write_text("\n".join(_finished(out)) + "\n")
    seconds = round(time.monotonic() - started, 1)
    print(f"compat: {name}: pytest exit {rc} in {seconds}s (log {log})", flush=True)
    return {"mode": mode, "name": name, "exit": rc, "seconds": seconds, "crashed": crashed,
            "log": str(log)}


def _pytest(mode: str, job: Job, resume: list[str], out: Path, log: Path) -> int:
    server = NxServer().start()  # a fresh, empty server for every mode (and restart)
    env = {
        **os.environ,
        "DB_IP": "127.0.0.1",
        "DB_PORT": str(server.port),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    cmd = [
        sys.executable, "-m", "pytest", "-c", str(job.ini), "--rootdir", str(job.suite),
        # PyMongo's sync suite under its own ini: the project's pytest-asyncio options are not
        # there, and pytest-asyncio (installed for the project's tests) is not needed.
        "-p", "no:asyncio",
        "-p", "compat.plugin", f"--compat-mode={mode}", f"--compat-out={out}",
        f"--compat-timeout={job.timeout:g}", "-q", "--no-header", "-rfE", "--tb=short",
        "--continue-on-collection-errors", *job.targets, *resume, *job.extra,
    ]
    try:
        with log.open("a") as fh:
            fh.write(f"$ {' '.join(cmd)}\n")
            fh.flush()
            return subprocess.call(
                cmd, cwd=job.suite, env=env, stdout=fh, stderr=subprocess.STDOUT
            )
    finally:
        server.cleanup()


def _lines(out: Path) -> list[dict[str, object]]:
    if not out.exists():
        return []
    return [json.loads(x) for x in out.read_text().splitlines() if x.strip()]


def _crashed_in(out: Path) -> str | None:
    """The test that started last and has no record: the one the process died in."""
    last = None
    for rec in _lines(out):
        if "start" in rec:
            last = rec["start"]
        elif rec.get("nodeid") == last:
            last = None
    return str(last) if last else None


def _finished(out: Path) -> list[str]:
    return [str(r["nodeid"]) for r in _lines(out) if "nodeid" in r]


def differing(run_dir: Path) -> list[str]:
    """Node ids that passed in exactly one of plain and green."""
    outcome = {
        m: {str(r["nodeid"]): r["outcome"] for r in _lines(run_dir / f"{m}.jsonl") if "nodeid" in r}
        for m in ("plain", "green")
    }
    ids = set(outcome["plain"]) | set(outcome["green"])
    return sorted(
        i for i in ids
        if (outcome["plain"].get(i) == "passed") != (outcome["green"].get(i) == "passed")
    )


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    bring_up_loopback()
    verify_isolated()
    run_dir = Path(spec["run_dir"])
    for old in run_dir.glob("*.recheck*.jsonl"):
        old.unlink()
    job = Job(run_dir, Path(spec["suite"]), Path(spec["ini"]), float(spec["timeout"]),
              [f"test/{f}" for f in spec["files"]], spec["extra"])
    if spec.get("parallel"):
        with ThreadPoolExecutor(len(spec["modes"])) as pool:
            runs = list(pool.map(lambda m: run_mode(m, job), spec["modes"]))
    else:
        runs = [run_mode(m, job) for m in spec["modes"]]
    diff = differing(run_dir) if {"plain", "green"} <= set(spec["modes"]) else []
    if diff:
        print(f"compat: {len(diff)} tests differ; running them again", flush=True)
    for n in range(1, spec["recheck"] + 1 if diff else 1):
        runs += [run_mode(m, replace(job, targets=diff), f"{m}.recheck{n}")
                 for m in ("plain", "green")]
    (run_dir / "runs.json").write_text(json.dumps(runs, indent=1))
    broken = [r for r in runs if r["exit"] not in (0, 1)]  # 1: some tests failed, reported
    for r in broken:
        print(f"compat: {r['name']}: pytest could not run the suite (exit {r['exit']}): "
              f"an error before or between tests, not a test result; see {r['log']}",
              file=sys.stderr, flush=True)
    return 1 if broken else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
