"""Views under test: green function views, a class-based view, the ORM from green code.

Each PyMongo view does one ``find_one`` through MONGODB_URI (the tests point
it at a fault proxy that delays replies) and answers where it ran: on the
main thread (uvicorn's loop thread) or not, whether a loop runs there, in
green code or not, and the loop-clock times it started and finished.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

import pymongo
from django.db import connection, connections
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import View
from greenlet import getcurrent

import motorpatch
from motorpatch.integrations.django import green_view

_client: pymongo.MongoClient[dict[str, Any]] | None = None


def client() -> pymongo.MongoClient[dict[str, Any]]:
    global _client
    if _client is None:  # made in the serving process, on first use
        _client = pymongo.MongoClient(os.environ["MONGODB_URI"], serverSelectionTimeoutMS=10000)
    return _client


def _where(started: float, **extra: Any) -> dict[str, Any]:
    return {
        "main_thread": threading.current_thread() is threading.main_thread(),
        "loop_running": asyncio._get_running_loop() is not None,
        "green": getattr(getcurrent(), "motorpatch_loop", None) is not None,
        "started": started,
        "finished": time.monotonic(),
        "pid": os.getpid(),
        **extra,
    }


def _find(request: HttpRequest) -> dict[str, Any]:
    started = time.monotonic()
    doc = client().motorpatch_django.things.find_one({"_id": request.GET.get("id", "x")})
    return _where(started, doc=doc)


@green_view
def find(request: HttpRequest) -> HttpResponse:
    return JsonResponse(_find(request))


@motorpatch.green
def find_plain_green(request: HttpRequest) -> HttpResponse:
    """The same view under plain @motorpatch.green, to compare with green_view."""
    return JsonResponse(_find(request))


class FindView(View):
    def get(self, request: HttpRequest) -> HttpResponse:
        return JsonResponse(_find(request))

    def post(self, request: HttpRequest) -> HttpResponse:
        return JsonResponse({"posted": True, **_find(request)})


find_cbv = green_view(FindView.as_view())


async def lag(request: HttpRequest) -> HttpResponse:
    """The loop's worst lag since the last call (the first call starts the probe)."""
    from apps import probe

    if probe.lag._task is None:
        probe.lag.start()
    return JsonResponse(probe.lag.take())


@green_view
def atomic_probe(request: HttpRequest) -> HttpResponse:
    return JsonResponse(_where(time.monotonic(), in_atomic_block=connection.in_atomic_block))


@green_view
def orm_count(request: HttpRequest) -> HttpResponse:
    from django_site.models import Item

    started = time.monotonic()
    try:
        count = Item.objects.count()
    except Exception as exc:  # the test asserts which exception, and where it ran
        return JsonResponse(_where(started, error=type(exc).__name__, message=str(exc)))
    return JsonResponse(_where(started, count=count))


@green_view
def orm_write_read(request: HttpRequest) -> HttpResponse:
    """Create an item named ?name= and count the items of that name (ORM in green code)."""
    from django_site.models import Item

    started = time.monotonic()
    name = request.GET["name"]
    Item.objects.create(name=name)
    count = Item.objects.filter(name=name).count()
    return JsonResponse(_where(started, count=count, wrapper=id(connections["default"])))


@green_view
def orm_via_await(request: HttpRequest) -> HttpResponse:
    """The ORM from green code through Django's async API: it runs on Django's thread."""
    from django_site.models import Item

    started = time.monotonic()
    count = motorpatch.await_(Item.objects.acount())
    return JsonResponse(_where(started, count=count))
