"""The audit's cost on the hot path, side by side: ``python bench/audit_overhead.py``.

Three variants of the same green ``find_one`` loop against bench/responder.py
(canned replies, so the client's own CPU dominates), run in alternation in
fresh processes, ``--rounds`` times each:

- ``before``: motorpatch as it was before the audit's hooks existed (a git
  revision exported to a temporary directory; ``--before-rev``), if given;
- ``off``: this tree, the audit off (the default);
- ``on``: this tree, ``install(audit=...)`` with the default 20 ms threshold.

Prints the median CPU microseconds per operation and operations per second
of each, and their ratios to ``off``. One run takes about
``rounds * variants * (seconds + 1)`` seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

WORKER = r"""
import asyncio, json, sys, tempfile, time, os
import pymongo, motorpatch
from common import drive  # bench/common.py: on PYTHONPATH after the variant's tree
audit = sys.argv[3] == "on"
if audit:
    motorpatch.install(audit=os.path.join(tempfile.mkdtemp(), "audit.json"))
else:
    motorpatch.install()
client = pymongo.MongoClient(f"mongodb://127.0.0.1:{sys.argv[1]}/?directConnection=true")
coll = client.bench.small
seconds, conc = float(sys.argv[2]), int(sys.argv[4])

@motorpatch.green
def op():
    return coll.find_one({})

asyncio.run(drive(op, conc, 0.3))  # warm-up: connections, greenlets
cpu, wall = time.process_time(), time.perf_counter()
n = asyncio.run(drive(op, conc, seconds))
cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
print(json.dumps({"ops": n, "cpu_us_per_op": cpu / n * 1e6, "ops_per_s": n / wall}))
"""


def _export(rev: str) -> str:
    target = tempfile.mkdtemp(prefix="motorpatch-before-")
    archive = subprocess.run(
        ["git", "archive", rev, "motorpatch"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", target], input=archive, check=True)
    return target


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--conc", type=int, default=1)
    p.add_argument("--before-rev", default=None, help="git revision without the audit's hooks")
    args = p.parse_args()
    responder = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "responder.py")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    port = responder.stdout.readline().strip()  # type: ignore[union-attr]
    variants = {"off": str(ROOT), "on": str(ROOT)}
    if args.before_rev:
        variants = {"before": _export(args.before_rev), **variants}
    results: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    try:
        for _ in range(args.rounds):
            for name, path in variants.items():
                env = {**os.environ, "PYTHONPATH": os.pathsep.join([path, str(ROOT / "bench")])}
                out = subprocess.run(
                    [sys.executable, "-c", WORKER, port, str(args.seconds),
                     "on" if name == "on" else "off", str(args.conc)],
                    env=env, capture_output=True, text=True, check=True, cwd=tempfile.gettempdir(),
                )
                results[name].append(json.loads(out.stdout.splitlines()[-1]))
    finally:
        responder.stdin.close()  # type: ignore[union-attr]
        responder.wait(10)
    base = {
        k: statistics.median(r[k] for r in results["off"]) for k in ("cpu_us_per_op", "ops_per_s")
    }
    print(f"green find_one, c={args.conc}, {args.rounds} rounds of {args.seconds:g} s, medians:")
    print(f"{'variant':8} {'CPU us/op':>10} {'vs off':>7} {'ops/s':>9} {'vs off':>7}")
    for name, runs in results.items():
        cpu = statistics.median(r["cpu_us_per_op"] for r in runs)
        ops = statistics.median(r["ops_per_s"] for r in runs)
        print(f"{name:8} {cpu:10.1f} {cpu / base['cpu_us_per_op']:7.3f} {ops:9.0f}"
              f" {ops / base['ops_per_s']:7.3f}")


if __name__ == "__main__":
    main()
