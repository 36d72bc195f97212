"""ddtrace's PyMongo integration under green code; run as a script by test_otel.py.

    python ddtrace_run.py MONGODB_URI N

Patches PyMongo with ddtrace (``patch(pymongo=True)``: wrappers on
``Server.checkout``, ``Server.run_operation`` and the connection's command
methods), installs motorpatch, and on asyncio runs N concurrent green
``find_one`` calls, each under its own ``request`` span. Finished spans are
kept by a trace filter (nothing is sent to an agent). Prints one JSON line:
the PyMongo version, the spans (name, ids, the request each belongs to) and
the calls' start and finish times.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import ddtrace
from ddtrace.trace import TraceFilter, tracer

ddtrace.patch(pymongo=True)

import pymongo  # noqa: E402

import motorpatch  # noqa: E402

finished: list[Any] = []


class Keep(TraceFilter):  # type: ignore[misc]
    def process_trace(self, trace: list[Any]) -> None:
        finished.extend(trace)
        # dropped: nothing to send


tracer.configure(trace_processors=[Keep()])


async def main(uri: str, n: int) -> dict[str, Any]:
    motorpatch.install()
    client: Any = pymongo.MongoClient(uri, serverSelectionTimeoutMS=10000, maxPoolSize=n)
    coll = client.motorpatch_frameworks.ddtrace

    @motorpatch.green
    def request(i: int) -> dict[str, float]:
        with tracer.trace("request") as span:
            span.set_tag("request.n", str(i))
            started = time.monotonic()
            coll.find_one({"_id": f"r{i}"})
            return {"started": started, "finished": time.monotonic()}

    calls = await asyncio.gather(*(request(i) for i in range(n)))
    await motorpatch.green(client.close)()
    tracer.flush()
    spans = [
        {"name": s.name, "span_id": s.span_id, "parent_id": s.parent_id,
         "trace_id": s.trace_id, "request": s.get_tag("request.n"),
         "resource": s.resource}
        for s in finished
    ]  # fmt: skip
    return {"pymongo": pymongo.version, "calls": calls, "spans": spans}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], int(sys.argv[2])))))
