"""FastAPI with OpenTelemetry: FastAPI's instrumentation and PyMongo's command listener.

Spans go to an in-memory exporter in this process; ``GET /spans`` returns
them (name, kind, ids, the ``doc_id`` a PyMongo span queried for, the URL of
of every span). The green handler ``GET /find?doc_id=N`` does one
``find_one({"_id": N})``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.pymongo import PymongoInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import motorpatch
from apps import probe

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)


def tag_doc_id(span: Any, event: Any) -> None:
    """Record which document a find asked for, to match the span to its request."""
    doc_id = (event.command.get("filter") or {}).get("_id")
    if span.is_recording() and doc_id is not None:
        span.set_attribute("test.doc_id", str(doc_id))


PymongoInstrumentor().instrument(request_hook=tag_doc_id)
motorpatch.install()


app = FastAPI(lifespan=probe.lifespan)


@app.get("/find")
@motorpatch.green
def find(doc_id: str) -> dict[str, Any]:
    return probe.find(doc_id)


@app.get("/lag")
async def lag() -> dict[str, float]:
    return probe.lag.take()


@app.get("/spans")
async def spans() -> list[dict[str, Any]]:
    def row(span: Any) -> dict[str, Any]:
        attrs = dict(span.attributes or {})
        return {
            "name": span.name,
            "kind": span.kind.name,
            "trace_id": span.context.trace_id,
            "span_id": span.context.span_id,
            "parent_id": span.parent.span_id if span.parent else None,
            "doc_id": attrs.get("test.doc_id"),
            "attributes": {k: str(v) for k, v in attrs.items()},
        }

    return [row(s) for s in exporter.get_finished_spans()]


FastAPIInstrumentor.instrument_app(app, excluded_urls="spans,lag")
