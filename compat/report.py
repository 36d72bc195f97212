"""The comparison report: compat/RESULTS.md and compat/results.json from a run's JSON lines.

Reads ``<run_dir>/<mode>.jsonl`` (one record per test, from ``compat.plugin``)
and ``runs.json`` (exit code and time per mode). A test *drops out* of the
comparison when it did not pass plain (nx-27017 lacks the feature, or the
test needs a topology, fail points or credentials it does not have).
Listed: tests passing plain but not green (with the cause from
``compat/known.py`` when it has been analysed, else the failure), tests
passing green but not plain, and tests whose green run stalled the loop for
more than ``STALL`` seconds outside their own waits (with where the thread was).
Usable on its own: ``python -m compat.report`` prints the report of the last run
(``--write`` also writes RESULTS.md and results.json).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from compat.known import cause_of
from compat.monitor import classify

HERE = Path(__file__).resolve().parent
STALL = 0.1
PASS = ("passed",)


def load(path: Path) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    records: dict[str, dict[str, Any]] = {}
    summary: dict[str, Any] = {}
    if not path.exists():
        return records, summary
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        if rec.get("summary"):
            summary.update(rec)
        elif "start" in rec:
            continue
        elif "collect_error" in rec:
            summary.setdefault("collect_errors", {})[rec["collect_error"]] = rec["message"]
        else:
            records[rec["nodeid"]] = rec
    return records, summary


def rechecks(run_dir: Path, mode: str) -> list[dict[str, dict[str, Any]]]:
    """The records of each re-run of the differing tests in ``mode``, in order."""
    paths = sorted(run_dir.glob(f"{mode}.recheck*.jsonl"), key=lambda p: p.name)
    return [load(p)[0] for p in paths]


def _difference(
    nodeid: str, first: str, runs: dict[str, list[dict[str, dict[str, Any]]]], won: str
) -> dict[str, Any]:
    """How a difference held up when re-run: outcomes per mode, and whether it is consistent."""
    seen = {m: [r.get(nodeid, {}).get("outcome", "not run") for r in rs] for m, rs in runs.items()}
    lost = "green" if won == "plain" else "plain"
    consistent = all(o in PASS for o in seen.get(won, [])) and all(
        o not in PASS for o in seen.get(lost, [])
    )
    return {"rechecks": seen, "consistent": consistent if any(seen.values()) else None,
            "first": first}


def compare(
    plain: dict[str, dict[str, Any]], green: dict[str, dict[str, Any]],
    runs: dict[str, list[dict[str, dict[str, Any]]]] | None = None,
) -> dict[str, Any]:
    ids = sorted(set(plain) | set(green))
    runs = runs or {}
    lost, gained, stalls = [], [], []
    for nodeid in ids:
        p = plain.get(nodeid, {"outcome": "not run"})
        g = green.get(nodeid, {"outcome": "not run"})
        if p["outcome"] in PASS and g["outcome"] not in PASS:
            lost.append({
                "test": nodeid, "green": g["outcome"], "message": g.get("message", ""),
                "cause": cause_of(nodeid) or g.get("message", ""),
                **_difference(nodeid, g["outcome"], runs, won="plain"),
            })
        elif g["outcome"] in PASS and p["outcome"] not in PASS:
            gained.append({
                "test": nodeid, "plain": p["outcome"], "message": p.get("message", ""),
                "cause": cause_of(nodeid) or p.get("message", ""),
                **_difference(nodeid, p["outcome"], runs, won="green"),
            })
        if g.get("max_stall", 0.0) > STALL:
            worst = max(g.get("stalls", []), key=lambda s: s["seconds"], default={})
            if worst:  # classified again: the rules may be newer than the run
                worst["kind"] = classify(worst["seconds"], worst.get("cpu", 0.0),
                                         worst.get("runq", 0.0), worst.get("where", []))
            stalls.append({
                "test": nodeid, "outcome": g["outcome"], "max_stall": g["max_stall"],
                "stall_total": g.get("stall_total", 0.0), "own_wait": g.get("own_wait", 0.0),
                "kind": worst.get("kind", "?"), "cpu": worst.get("cpu", 0.0),
                "runq": worst.get("runq", 0.0),
                "where": worst.get("where", [])[:3],
                "cause": cause_of(nodeid, stall=True) or "",
            })
    return {"tests": len(ids), "lost": lost, "gained": gained, "stalls": stalls}


def _count(records: dict[str, dict[str, Any]]) -> dict[str, int]:
    return dict(Counter(r["outcome"] for r in records.values()))


def build(
    run_dir: Path, *, version: str, files: list[str], modes: list[str], elapsed: float,
    write: bool = True,
) -> tuple[str, dict[str, Any]]:
    data = {m: load(run_dir / f"{m}.jsonl") for m in modes}
    runs_file = run_dir / "runs.json"
    runs = json.loads(runs_file.read_text()) if runs_file.exists() else []
    plain = data.get("plain", ({}, {}))[0]
    green = data.get("green", ({}, {}))[0]
    again = {m: rechecks(run_dir, m) for m in ("plain", "green")}
    cmp = compare(plain, green, again) if plain and green else {
        "tests": len(plain or green), "lost": [], "gained": [], "stalls": []}
    both = sum(1 for k, r in plain.items() if r["outcome"] in PASS
               and green.get(k, {}).get("outcome") in PASS)
    result = {
        "pymongo": version,
        "files": files,
        "counts": {m: _count(recs) for m, (recs, _) in data.items()},
        "passed_both": both,
        "runs": [{k: v for k, v in r.items() if k != "command"} for r in runs],
        "elapsed": round(elapsed, 1),
        "adapters": {m: s.get("adapters", {}) for m, (_, s) in data.items()},
        "collect_errors": {m: s.get("collect_errors", {}) for m, (_, s) in data.items()},
        "green_lag": _lag_summary(green),
        **cmp,
    }
    md = render(result)
    if write:
        (HERE / "results.json").write_text(json.dumps(result, indent=1) + "\n")
        (HERE / "RESULTS.md").write_text(md)
    return md, result


def regressions(result: dict[str, Any]) -> list[str]:
    """Tests that passed plain and failed green, consistently: what fails a CI run."""
    return [x["test"] for x in result["lost"] if x.get("consistent") is not False]


def _lag_summary(green: dict[str, dict[str, Any]]) -> dict[str, Any]:
    ran = [r for r in green.values() if r.get("ticks")]
    if not ran:
        return {}
    stalls = sorted(r.get("max_stall", 0.0) for r in ran)
    return {
        "tests_measured": len(ran),
        "ticks": sum(r["ticks"] for r in ran),
        "median_max_stall": stalls[len(stalls) // 2],
        "p95_max_stall": stalls[min(len(stalls) - 1, int(len(stalls) * 0.95))],
        "own_wait_total": round(sum(r.get("own_wait", 0.0) for r in ran), 2),
        "stall_total": round(sum(r.get("stall_total", 0.0) for r in ran), 2),
    }


KINDS = {
    "blocked": "the loop thread waited in a blocking call outside the test's own waits "
    "(what motorpatch should have parked)",
    "cpu": "green code computing between two parks (BSON encoding, the test's own "
    "work): its thread was on a CPU, or runnable and waiting for one, most of the time",
    "starved": "the loop thread was ready but not running: it waited for a CPU (machine "
    "load) or for the GIL held by another thread (the loop idle in its select, or no "
    "stack sample because the sampling thread could not get the GIL either)",
}


def _rechecked(x: dict[str, Any]) -> str:
    seen = x.get("rechecks") or {}
    if not any(seen.values()):
        return ""
    runs = "; ".join(f"{m} {', '.join(o)}" for m, o in seen.items() if o)
    verdict = "consistent" if x.get("consistent") else "flaky"
    return f" Re-run: {runs} ({verdict})."


def render(r: dict[str, Any]) -> str:
    counts = r["counts"]
    passed = {m: c.get("passed", 0) for m, c in counts.items()}
    consistent = [x for x in r["lost"] if x.get("consistent") is not False]
    flaky = [x for x in r["lost"] + r["gained"] if x.get("consistent") is False]
    blocked = [x for x in r["stalls"] if x["kind"] == "blocked"]
    lines = [
        f"# PyMongo {r['pymongo']}'s own test suite under motorpatch",
        "",
        "Generated by `compat/run.sh` (`python -m compat`); compat/README.md says what the",
        "modes mean and how stalls are measured. Server: nx-27017 (fresh per mode) in a",
        "loopback-only network namespace.",
        "",
        "| PyMongo | files | tests | passed plain | passed green | passed both "
        "| plain-only | stalls > 100 ms (blocked) |",
        "|---|---|---|---|---|---|---|---|",
        f"| {r['pymongo']} | {len(r['files'])} | {r['tests']} | {passed.get('plain', '-')} "
        f"| {passed.get('green', '-')} | {r['passed_both']} | {len(consistent)} "
        f"| {len(r['stalls'])} ({len(blocked)}) |",
        "",
        "*plain-only*: passed plain, not green, and still so when re-run (flaky tests are",
        "listed apart). *stalls*: green tests whose loop stalled > 100 ms outside the test's",
        "own waits; *blocked*: of those, the ones where the loop thread was blocked rather",
        "than computing or starved.",
        "",
        "Outcomes per mode: "
        + "; ".join(
            f"{m}: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items()))
            for m, c in counts.items()
        )
        + ".",
        "",
        "Run time: " + ", ".join(f"{x.get('name', x['mode'])} {x['seconds']} s" for x in r["runs"])
        + f"; total {r['elapsed']} s.",
        "",
        "## Passing plain, not green",
        "",
    ]
    lines += [f"- `{x['test']}` ({x['green']}): {x['cause']}{_rechecked(x)}" for x in consistent]
    lines += [] if consistent else ["None."]
    lines += ["", "## Passing green, not plain", ""]
    gained = [x for x in r["gained"] if x.get("consistent") is not False]
    lines += [f"- `{x['test']}` (plain {x['plain']}): {x['cause']}{_rechecked(x)}" for x in gained]
    lines += [] if gained else ["None."]
    lines += ["", "## Flaky: differed once, not when re-run", ""]
    lines += [f"- `{x['test']}`: first run {x['first']}; {x['cause']}{_rechecked(x)}"
              for x in flaky]
    lines += [] if flaky else ["None."]
    lines += ["", f"## Loop stalls over {int(STALL * 1000)} ms outside the test's own waits", ""]
    lag = r.get("green_lag") or {}
    if lag:
        lines += [
            f"{lag['tests_measured']} green test bodies measured ({lag['ticks']} ticks of a 1 ms "
            f"ticker); per-test worst stall: median {lag['median_max_stall'] * 1000:.1f} ms, "
            f"95th percentile {lag['p95_max_stall'] * 1000:.1f} ms. Own waits excluded: "
            f"{lag['own_wait_total']} s in total.",
            "",
        ]
    for kind, meaning in KINDS.items():
        group = sorted((x for x in r["stalls"] if x["kind"] == kind), key=lambda x: -x["max_stall"])
        lines += [f"### {kind}: {meaning}", ""]
        lines += [] if group else ["None.", ""]
        for x in group:
            where = "; ".join(f"`{w}`" for w in x["where"]) or "no stack sample"
            cause = f" {x['cause']}" if x["cause"] else ""
            lines.append(
                f"- `{x['test']}` ({x['outcome']}): {x['max_stall'] * 1000:.0f} ms; loop thread "
                f"on CPU {x['cpu'] * 1000:.0f} ms, waiting for a CPU {x['runq'] * 1000:.0f} ms."
                f"{cause} Sampled: {where}"
            )
        lines += [""] if group else []
    collect = {k: v for m in r.get("collect_errors", {}).values() for k, v in m.items()}
    if collect:
        lines += ["## Not collected (both modes)", ""]
        lines += [f"- `{k}`: {v}" for k, v in sorted(collect.items())]
        lines.append("")
    adapters = {k: v for a in r["adapters"].values() for k, v in a.items()}
    lines += ["## nx-27017 adapters applied (both modes)", ""]
    lines += [f"- `{k}`: completed {', '.join(v)}" for k, v in sorted(adapters.items())] or [
        "None."
    ]
    lines += ["", "Files: " + ", ".join(f"`{f}`" for f in r["files"])]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Rebuild the report of the last run from its run directory (its spec says what ran)."""
    from compat.fetch import CACHE, installed_version

    ver = installed_version()
    run_dir = CACHE / "runs" / f"pymongo-{ver}"
    spec = json.loads((run_dir / "spec.json").read_text())
    runs = json.loads((run_dir / "runs.json").read_text())
    elapsed = sum(r["seconds"] for r in runs) if not spec.get("parallel") else (
        max(r["seconds"] for r in runs if "." not in r.get("name", r["mode"]))
        + sum(r["seconds"] for r in runs if "." in r.get("name", r["mode"]))
    )
    md, _ = build(run_dir, version=ver, files=spec["files"], modes=spec["modes"],
                  elapsed=elapsed, write="--write" in sys.argv)
    print(md)


if __name__ == "__main__":
    main()
