"""Loop-lag measurement for green test runs: a 1 ms ticker, own-wait marking, stall sampling.

While a test body runs green, a ticker task sleeps 1 ms at a time on the loop
and records how late each tick fires. A late tick means the loop thread was
busy or blocked. Part of that may be the test's *own* waits: PyMongo's tests
call ``time.sleep``, ``Thread.join``, ``Event.wait`` (and ``Condition.wait``,
``Queue.get``, ``Future.result``, ``Process.join``, ``os.waitpid`` and
``subprocess`` waits) to wait for background threads and processes. Those are
not motorpatch's business: an application that sleeps on the loop thread
blocks it with or without motorpatch. So they are **marked, not changed**: a
wrapper records the interval of every such wait made on the test's green
greenlet whose nearest caller outside the standard library is not PyMongo,
bson, gridfs or motorpatch (the suite's code, mockupdb, a callback the test
registered); the wait itself is the original call, so the test behaves
exactly as written.

``stall`` = a tick's lateness minus its overlap with own-wait intervals: the
time the loop could not run because PyMongo (or motorpatch, or test code's
CPU work) did not park. A watchdog thread samples the test thread's stack
whenever the loop has not ticked for ``SAMPLE_AFTER`` seconds outside an own
wait, so each long stall is reported with where the thread was.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing.process
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from greenlet import getcurrent

__all__ = ["LoopMonitor", "classify", "install_own_wait_markers"]

TICK = 0.001
SAMPLE_AFTER = 0.05  # seconds without a tick before the watchdog samples the stack
STALL_REPORTED = 0.1  # stalls longer than this keep their stack samples

_LIBRARY = ("pymongo", "bson", "gridfs", "motorpatch")
_perf = time.perf_counter  # the original: own-wait wrappers replace time.sleep only


@dataclass
class Stall:
    seconds: float
    cpu: float  # CPU time the loop thread used meanwhile
    runq: float  # time it was runnable but waited for a CPU (machine load)
    kind: str  # "cpu", "starved" or "blocked" (see _kind)
    where: list[str] = field(default_factory=list)


class ThreadClock:
    """The calling thread's (CPU time, run-queue wait) in seconds, from Linux schedstat.

    The file is opened by the thread it measures and read with ``pread``, a few
    microseconds. Without ``/proc`` (not Linux) the run-queue wait reads as 0.
    """

    def __init__(self) -> None:
        try:
            self._fd: int | None = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        except OSError:
            self._fd = None

    def read(self) -> tuple[float, float]:
        if self._fd is None:
            return time.thread_time(), 0.0
        cpu, runq = os.pread(self._fd, 64, 0).split()[:2]
        return int(cpu) / 1e9, int(runq) / 1e9

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class LoopMonitor:
    """Measures one green test run; ``active`` only while the test body runs."""

    current: LoopMonitor | None = None  # read by the own-wait wrappers

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.thread_id = threading.get_ident()
        self.own: list[tuple[float, float]] = []
        self.own_depth = 0
        self.own_total = 0.0
        self.max_lag = 0.0
        self.lag_total = 0.0
        self.ticks = 0
        self.stalls: list[Stall] = []
        self.max_stall = 0.0
        self.stall_total = 0.0
        self._tick_start = 0.0
        self._samples: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None

    # -- the test's own waits -------------------------------------------------
    def is_test_greenlet(self) -> bool:
        return getattr(getcurrent(), "motorpatch_loop", None) is self.loop

    def _own_overlap(self, start: float, end: float) -> float:
        total = 0.0
        for a, b in self.own:
            total += max(0.0, min(b, end) - max(a, start))
        if self.own_depth and self._own_open is not None:
            total += max(0.0, end - max(self._own_open, start))
        return total

    _own_open: float | None = None

    def own_begin(self) -> None:
        if self.own_depth == 0:
            self._own_open = _perf()
        self.own_depth += 1

    def own_end(self) -> None:
        self.own_depth -= 1
        if self.own_depth == 0 and self._own_open is not None:
            now = _perf()
            self.own.append((self._own_open, now))
            self.own_total += now - self._own_open
            self._own_open = None

    # -- ticker and watchdog --------------------------------------------------
    async def _tick(self) -> None:
        while True:
            self._tick_clock = self._clock.read()
            start = self._tick_start = _perf()
            await asyncio.sleep(TICK)
            self._account(start + TICK, _perf())

    def _account(self, due: float, end: float) -> None:
        self.ticks += 1
        lag = max(0.0, end - due)
        self.lag_total += lag
        self.max_lag = max(self.max_lag, lag)
        if lag < TICK:
            return
        stall = max(0.0, lag - self._own_overlap(due, end))
        self.stall_total += stall
        self.max_stall = max(self.max_stall, stall)
        if stall > STALL_REPORTED:
            cpu0, runq0 = self._tick_clock
            cpu1, runq1 = self._clock.read()
            cpu, runq = cpu1 - cpu0, runq1 - runq0
            where = [f"{n}x {w}" if n > 1 else w for w, n in self._samples.most_common(3)]
            kind = classify(stall, cpu, runq, where)
            self.stalls.append(Stall(stall, cpu, runq, kind, where))
        self._samples.clear()

    def _watch(self) -> None:
        sampled_for = -1.0
        while not self._stop.wait(SAMPLE_AFTER / 2):
            start = self._tick_start
            blocked = _perf() - start
            if self.own_depth or blocked < SAMPLE_AFTER:
                continue
            frame = sys._current_frames().get(self.thread_id)
            if frame is None:
                continue
            where = describe(frame)
            if start != sampled_for and blocked > SAMPLE_AFTER * 2:
                # This thread wakes every SAMPLE_AFTER/2: a first sample this late means
                # it could not get the GIL, so C code held it (e.g. BSON encoding) and
                # the stack shows where the thread was once it let go, not the stall.
                where = f"[first sample after {blocked * 1000:.0f} ms: GIL held] {where}"
            sampled_for = start
            self._samples[where] += 1

    def start(self) -> None:
        LoopMonitor.current = self
        self._clock = ThreadClock()
        self._tick_clock = self._clock.read()
        self._tick_start = _perf()
        self._task = self.loop.create_task(self._tick())
        self._watchdog = threading.Thread(target=self._watch, name="compat-watchdog", daemon=True)
        self._watchdog.start()

    def stop(self) -> None:
        LoopMonitor.current = None
        if self._task is not None:
            self._task.cancel()
            # the tick in flight counts: the loop may have been blocked until now
            self._account(self._tick_start + TICK, _perf())
        self._clock.close()
        self._stop.set()
        if self._watchdog is not None:
            self._watchdog.join()

    def record(self) -> dict[str, Any]:
        return {
            "ticks": self.ticks,
            "max_lag": round(self.max_lag, 4),
            "mean_lag": round(self.lag_total / self.ticks, 5) if self.ticks else 0.0,
            "own_wait": round(self.own_total, 4),
            "max_stall": round(self.max_stall, 4),
            "stall_total": round(self.stall_total, 4),
            "stalls": [
                {"seconds": round(s.seconds, 3), "cpu": round(s.cpu, 3),
                 "runq": round(s.runq, 3), "kind": s.kind, "where": s.where}
                for s in self.stalls
            ],
        }


LOOP_MARK = "[event loop, not green code] "


def classify(stall: float, cpu: float, runq: float, where: list[str]) -> str:
    """Why the loop did not run for ``stall`` seconds: "cpu", "starved" or "blocked".

    ``where`` are the stack samples taken meanwhile. In order:

    - every sample shows the loop itself (its ``select``), not green code: **starved**,
      the loop was ready and waited for the GIL or a CPU;
    - the thread was on a CPU half the time: **cpu**, green code computing between parks;
    - it waited for a CPU (run queue) half the time and barely ran: **starved**, load;
    - on a CPU or runnable 60 % of the time: **cpu**, computing, stretched by load;
    - no sample at all: the watchdog thread, which wakes every 25 ms, could not get the
      GIL either, so another thread of the process held it: **starved**;
    - otherwise: **blocked**, the thread slept in green code outside the test's own
      waits, in a call motorpatch did not park.
    """
    if where and all(LOOP_MARK in w for w in where):
        return "starved"
    if cpu >= 0.5 * stall:
        return "cpu"
    if runq >= 0.5 * stall and cpu < 0.2 * stall:
        return "starved"
    if cpu + runq >= 0.6 * stall:
        return "cpu"
    if not where:
        return "starved"
    return "blocked"


def describe(frame: FrameType) -> str:
    """A one-line summary of a stack: the test frame, the library frame, the innermost frame.

    Green code runs on its greenlet's own stack, whose bottom frame has no
    ``f_back``; a stack that reaches asyncio's ``_run_once`` is the loop's.
    """
    frames = []
    f: FrameType | None = frame
    while f is not None:
        frames.append(f)
        f = f.f_back
    if any(
        x.f_code.co_name == "_run_once" and _module(x) == "asyncio.base_events" for x in frames
    ):
        return LOOP_MARK + _where(frames[0])
    inner = frames[0]
    lib = next((x for x in frames if _module(x).startswith(_LIBRARY)), None)
    test = next((x for x in frames if _is_suite(_module(x))), None)
    other = next((x for x in frames if not _is_stdlib(_module(x))), None)  # e.g. mockupdb
    parts = [_where(x) for x in (test, other, lib, inner) if x is not None]
    return " > ".join(dict.fromkeys(parts))


def _module(frame: FrameType) -> str:
    return str(frame.f_globals.get("__name__", ""))


def _is_suite(module: str) -> bool:
    return module == "test" or module.startswith("test.")


def _where(frame: FrameType) -> str:
    path = frame.f_code.co_filename
    if "/site-packages/" in path:
        path = path.split("/site-packages/", 1)[1]
    elif "/test/" in path:
        path = "test/" + path.rsplit("/test/", 1)[1]
    elif "/lib/python3" in path:
        path = path.split("/lib/python3", 1)[1].split("/", 1)[-1]
    return f"{path}:{frame.f_lineno} {frame.f_code.co_name}"


def _is_stdlib(module: str) -> bool:
    top = module.split(".", 1)[0]
    return top in sys.stdlib_module_names or top.startswith("<frozen") or not module


def _caller_is_suite(frame: FrameType | None) -> bool:
    """True when the nearest caller outside the standard library is not PyMongo (or motorpatch).

    So a wait made by the suite's code, by a test helper library (mockupdb), or by a
    callback the test registered (``addCleanup(thread.join)``) is the test's own; a
    wait PyMongo, bson, gridfs or motorpatch makes is not.
    """
    while frame is not None:
        module = _module(frame)
        if not _is_stdlib(module):
            return not module.startswith(_LIBRARY)
        frame = frame.f_back
    return False


def _marked(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        mon = LoopMonitor.current
        if (
            mon is None
            or mon.own_depth
            or not mon.is_test_greenlet()
            or not _caller_is_suite(sys._getframe(1))
        ):
            return fn(*args, **kwargs)
        mon.own_begin()
        try:
            return fn(*args, **kwargs)
        finally:
            mon.own_end()

    wrapper.__compat_marked__ = True  # type: ignore[attr-defined]
    return wrapper


_TARGETS: list[tuple[Any, str]] = [
    (time, "sleep"),
    (subprocess.Popen, "wait"),
    (subprocess.Popen, "communicate"),
    (os, "waitpid"),
    (threading.Thread, "join"),
    (threading.Event, "wait"),
    (threading.Condition, "wait"),
    (multiprocessing.process.BaseProcess, "join"),
]


def install_own_wait_markers() -> list[str]:
    """Wrap the waits listed in ``_TARGETS`` so own waits are marked (idempotent)."""
    names = []
    for owner, name in _TARGETS:
        original = getattr(owner, name)
        if not getattr(original, "__compat_marked__", False):
            setattr(owner, name, _marked(original))
        names.append(f"{getattr(owner, '__name__', owner)}.{name}")
    return names
