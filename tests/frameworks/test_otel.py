"""Tracing green requests: OpenTelemetry (FastAPI + PyMongo instrumentation) and ddtrace.

OpenTelemetry: 100 concurrent green requests to a FastAPI app under uvicorn,
each ``find_one`` for its own document, replies delayed so that all of them
are in flight together. Every PyMongo span has its own request's server span
as parent (same trace, no cross-talk): green code runs in a copy of the
request's context, where the instrumentation keeps the current span.

ddtrace 4.16: its PyMongo integration fails to patch PyMongo 4.18 and newer
(``Server.run_operation`` is gone); on PyMongo 4.17 (a ``slow`` test, which
builds that environment) its ``pymongo.checkout`` and ``pymongo.cmd`` spans
nest under the request span of their own green call.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.apps import (
    FRAMEWORKS,
    ROOT,
    AppProcess,
    assert_overlap,
    burst,
    serve,
    slow_proxy,
)

pytest.importorskip("opentelemetry.instrumentation.pymongo")
pytest.importorskip("opentelemetry.instrumentation.fastapi")

DELAY = 0.2
REQUESTS = 100


@pytest.fixture(scope="module")
def otel_app(server_address: tuple[str, int]) -> Iterator[AppProcess]:
    with slow_proxy(server_address, DELAY) as proxy, serve("apps.otel_app:app", proxy.uri) as app:
        yield app


def _doc_id_of_request(span: dict[str, Any]) -> str | None:
    found = re.search(r"doc_id=(\w+)", " ".join(span["attributes"].values()))
    return found[1] if found else None


def test_every_pymongo_span_is_a_child_of_its_own_request_span(otel_app: AppProcess) -> None:
    ids = [f"d{i}" for i in range(REQUESTS)]
    bodies = burst([f"{otel_app.url}/find?doc_id={i}" for i in ids], timeout=60)
    assert all(b["green"] and b["main_thread"] for b in bodies), bodies[0]
    assert_overlap(bodies)


    (spans,) = burst(f"{otel_app.url}/spans")
    requests = {_doc_id_of_request(s): s for s in spans if s["kind"] == "SERVER"}
    finds = [s for s in spans if s["kind"] == "CLIENT" and s["doc_id"] is not None]
    assert sorted(s["doc_id"] for s in finds) == sorted(ids)  # one PyMongo span per request
    assert set(requests) >= set(ids)
    wrong = [
        (find["doc_id"], find["parent_id"], requests[find["doc_id"]]["span_id"])
        for find in finds
        if find["parent_id"] != requests[find["doc_id"]]["span_id"]
        or find["trace_id"] != requests[find["doc_id"]]["trace_id"]
    ]
    assert not wrong, f"{len(wrong)} PyMongo spans not under their own request's span: {wrong[:5]}"


# -- ddtrace ----------------------------------------------------------------------------

DDTRACE_RUN = FRAMEWORKS / "apps" / "ddtrace_run.py"
# ddtrace 4.16 wraps Server.run_operation, which PyMongo 4.18 removed: 4.17 is the newest
# PyMongo its integration patches.
DDTRACE_PYMONGO = "4.17.0"


def test_ddtrace_cannot_patch_pymongo_4_18_and_newer(server_uri: str) -> None:
    """The exact failure docs/frameworks.md states, on the PyMongo this suite runs."""
    pytest.importorskip("ddtrace")
    import pymongo

    if pymongo.version_tuple < (4, 18):
        pytest.skip("this PyMongo still has Server.run_operation")
    done = subprocess.run(
        [sys.executable, str(DDTRACE_RUN), server_uri, "2"],
        check=False, cwd=FRAMEWORKS, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": f"{FRAMEWORKS}{os.pathsep}{ROOT}"},
    )  # fmt: skip
    assert done.returncode != 0
    assert "AttributeError: type object 'Server' has no attribute 'run_operation'" in done.stderr


@pytest.mark.slow  # builds a virtual environment with PyMongo 4.17 and ddtrace (about a minute)
def test_ddtrace_spans_nest_under_their_request_on_pymongo_4_17(
    server_address: tuple[str, int],
) -> None:
    venv = ROOT / f".venv-pymongo-{DDTRACE_PYMONGO}"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", f"pymongo=={DDTRACE_PYMONGO}", "greenlet",
         "tornado", "wrapt>=2.5", "ddtrace"], check=True, timeout=600,
    )  # fmt: skip
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "-e", str(ROOT)],
                   check=True, timeout=600)  # fmt: skip
    n = 20
    with slow_proxy(server_address, DELAY) as proxy:
        done = subprocess.run(
            [str(python), str(DDTRACE_RUN), proxy.uri, str(n)],
            check=False, cwd=FRAMEWORKS, capture_output=True, text=True, timeout=120,
            env={**os.environ, "PYTHONPATH": f"{FRAMEWORKS}{os.pathsep}{ROOT}"},
        )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Warning" not in done.stderr, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["pymongo"] == DDTRACE_PYMONGO
    assert_overlap(result["calls"])
    spans = result["spans"]
    by_id = {s["span_id"]: s for s in spans}
    requests = [s for s in spans if s["name"] == "request"]
    assert len(requests) == n
    for request in requests:
        finds = [
            s for s in spans
            if s["name"] == "pymongo.cmd" and s["resource"].startswith("find")
            and s["trace_id"] == request["trace_id"]
        ]  # fmt: skip
        assert len(finds) == 1, (request, finds)
        checkout = by_id[finds[0]["parent_id"]]
        assert checkout["name"] == "pymongo.checkout"
        assert checkout["parent_id"] == request["span_id"]
