"""Django views decorated with ``green_view``, under ASGI, WSGI and ATOMIC_REQUESTS; the ORM.

The project is ``tests/frameworks/django_site``. Served for real by uvicorn
(ASGI) and gunicorn's sync worker (WSGI) against the session's server behind
a fault proxy that delays every reply by ``DELAY``; and in-process through
``django.test.Client`` (WSGI handler) and ``AsyncClient`` (ASGI handler, on
this test's loop), where settings can be changed per test.

- Under ASGI the views run as green code on the loop thread, a burst of them
  overlaps and the loop's worst lag meanwhile stays below one reply's delay;
  function views and a class-based view alike.
- Under WSGI (gunicorn, the test client) they run plainly and answer 200.
  A plain ``@motorpatch.green`` view is a coroutine function: under ASGI it
  runs green like ``green_view``; under WSGI Django runs it through
  ``async_to_sync`` (green, on a loop asgiref starts for the request); with
  ATOMIC_REQUESTS Django refuses it.
- With ATOMIC_REQUESTS Django runs them inside ``transaction.atomic`` on its
  worker thread (plainly); exempted with ``non_atomic_requests`` they run green.
- The ORM (django-mongodb-backend) in green code raises
  ``SynchronousOnlyOperation``; through ``await_(Model.objects.acount())`` it
  works, on Django's thread. With Django's guard off (DJANGO_ALLOW_ASYNC_UNSAFE)
  the ORM runs in green views and its queries overlap.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.apps import (
    FRAMEWORKS,
    AppProcess,
    assert_green_burst,
    assert_overlap,
    burst,
    python,
)
from tests.support.proxy import FaultProxy

pytest.importorskip("django_mongodb_backend")

DELAY = 0.5  # a blocked loop shows as lag >= DELAY; framework CPU on a busy machine stays below
BURST = 10
DB_NAME = f"motorpatch_django_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def slow(server_address: tuple[str, int]) -> Iterator[FaultProxy]:
    proxy = FaultProxy(server_address[1], server_address[0]).start()
    proxy.delay = DELAY
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture(scope="module")
def asgi(slow: FaultProxy) -> Iterator[AppProcess]:
    app = AppProcess(
        python("-m", "uvicorn", "django_site.asgi:application", "--host", "127.0.0.1",
               "--port", "{port}", "--lifespan", "off", "--no-access-log"),
        env={"MONGODB_URI": slow.uri, "DJANGO_DB_NAME": DB_NAME},
    )  # fmt: skip
    try:
        yield app
    finally:
        app.stop()


@pytest.mark.parametrize("path", ["find", "find-cbv", "find-plain-green"])
def test_asgi_green_views_overlap_on_the_loop_thread(asgi: AppProcess, path: str) -> None:
    assert_green_burst(asgi, BURST, DELAY, path=f"/{path}?id=x")


def test_orm_in_green_code_with_djangos_guard_off(slow: FaultProxy) -> None:
    """DJANGO_ALLOW_ASYNC_UNSAFE=true (process-wide): the ORM runs in green views on the
    loop; each green call gets its own DatabaseWrapper (Django keeps connections per
    context on a loop thread) over the backend's one shared MongoClient."""
    app = AppProcess(
        python("-m", "uvicorn", "django_site.asgi:application", "--host", "127.0.0.1",
               "--port", "{port}", "--lifespan", "off", "--no-access-log"),
        env={"MONGODB_URI": slow.uri, "DJANGO_DB_NAME": DB_NAME,
             "DJANGO_ALLOW_ASYNC_UNSAFE": "true"},
    )  # fmt: skip
    try:
        names = [f"{uuid.uuid4().hex[:8]}-{i}" for i in range(BURST)]
        bodies = burst([f"{app.url}/orm-write-read?name={n}" for n in names])
    finally:
        app.stop()
    assert all(b["green"] and b["main_thread"] and b["count"] == 1 for b in bodies), bodies
    assert_overlap(bodies)
    assert len({b["wrapper"] for b in bodies}) == BURST


def test_wsgi_gunicorn_sync_worker_runs_green_views_plainly(slow: FaultProxy) -> None:
    app = AppProcess(
        python("-m", "gunicorn", "-w", "1", "-k", "sync", "-b", "127.0.0.1:{port}",
               "django_site.wsgi:application"),
        env={"MONGODB_URI": slow.uri, "DJANGO_DB_NAME": DB_NAME},
    )  # fmt: skip
    try:
        for path in ("find", "find-cbv"):
            (body,) = burst(f"{app.url}/{path}")
            assert body["doc"] is None
            assert not body["green"] and not body["loop_running"], body
        # Plain @green is a coroutine function: Django runs it through async_to_sync, on
        # a loop asgiref starts in another thread for the request.
        (body,) = burst(f"{app.url}/find-plain-green")
        assert body["green"] and body["loop_running"] and not body["main_thread"], body
    finally:
        app.stop()


# -- in process: Django's test clients, settings per test ---------------------------------


@pytest.fixture(scope="module")
def django_setup(server_uri: str) -> Iterator[None]:
    """Django configured in this process (once: settings are read at set-up)."""
    names = ("MONGODB_URI", "DJANGO_DB_NAME", "DJANGO_SETTINGS_MODULE")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(MONGODB_URI=server_uri, DJANGO_DB_NAME=DB_NAME,
                      DJANGO_SETTINGS_MODULE="django_site.settings")  # fmt: skip
    sys.path.insert(0, str(FRAMEWORKS))
    import django

    django.setup()
    yield
    from django.db import connections

    connections.close_all()
    sys.path.remove(str(FRAMEWORKS))
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def atomic_requests(django_setup: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from django.db import connections

    monkeypatch.setitem(connections.settings["default"], "ATOMIC_REQUESTS", True)


def _get(path: str) -> dict[str, Any]:
    from django.test import Client

    reply = Client().get(path)
    assert reply.status_code == 200, reply.content[:2000]
    return dict(reply.json())


def _aget(path: str) -> dict[str, Any]:
    from django.test import AsyncClient

    async def go() -> Any:
        return await AsyncClient().get(path)

    reply = asyncio.run(go())
    assert reply.status_code == 200, reply.content[:2000]
    return dict(reply.json())


@pytest.mark.parametrize("path", ["/find", "/find-cbv"])
def test_test_client_runs_green_views_plainly(django_setup: None, installed: None,
                                              path: str) -> None:  # fmt: skip
    body = _get(path)
    assert body["doc"] is None and not body["green"] and not body["loop_running"]


def test_async_client_runs_green_views_green(django_setup: None, installed: None) -> None:
    body = _aget("/find-cbv")
    assert body["green"] and body["main_thread"]


def test_atomic_requests_run_the_view_atomically_on_djangos_thread(
    atomic_requests: None, installed: None
) -> None:
    body = _aget("/atomic")  # under ASGI: no RuntimeError, Django's sync path instead
    assert body["in_atomic_block"] and not body["green"] and not body["main_thread"]
    body = _get("/atomic")  # under WSGI
    assert body["in_atomic_block"] and not body["green"]


def test_atomic_requests_refuse_a_plain_green_view(atomic_requests: None) -> None:
    from django.test import Client

    reply = Client(raise_request_exception=False).get("/find-plain-green")
    assert reply.status_code == 500  # "You cannot use ATOMIC_REQUESTS with async views."
    with pytest.raises(RuntimeError, match="ATOMIC_REQUESTS with async views"):
        Client().get("/find-plain-green")


def test_non_atomic_requests_exempts_a_green_view(atomic_requests: None, installed: None) -> None:
    import django_site.urls
    from django.db import transaction
    from django.http import JsonResponse
    from django.test import AsyncClient
    from django.urls import path

    from motorpatch.integrations.django import green_view

    @transaction.non_atomic_requests
    @green_view
    def exempt(request: Any) -> Any:
        from django.db import connection

        on_loop = threading.current_thread() is threading.main_thread()
        return JsonResponse({"atomic": connection.in_atomic_block, "on_loop_thread": on_loop})

    django_site.urls.urlpatterns.append(path("exempt", exempt))
    try:

        async def go() -> Any:
            return await AsyncClient().get("/exempt")

        reply = asyncio.run(go())
        assert reply.status_code == 200, reply.content[:2000]
        assert reply.json() == {"atomic": False, "on_loop_thread": True}
    finally:
        django_site.urls.urlpatterns.pop()


def test_orm_in_green_code_raises_synchronous_only_operation(
    django_setup: None, installed: None
) -> None:
    body = _aget("/orm-count")
    assert body["green"] and body["error"] == "SynchronousOnlyOperation", body


def test_orm_through_await_runs_on_djangos_thread(django_setup: None, installed: None) -> None:
    from django_site.models import Item

    Item.objects.create(name="one")  # plain sync code, no loop: the ORM as usual
    assert _get("/orm-count")["count"] >= 1  # WSGI: plain, the ORM works
    body = _aget("/orm-await")
    assert body["green"] and body["count"] == Item.objects.count()


def test_green_view_rejects_a_class_a_method_and_async_def() -> None:
    from django.views import View

    from motorpatch.integrations.django import green_view

    class Page(View):
        pass

    with pytest.raises(TypeError, match=r"green_view\(Page.as_view\(\)\)"):
        green_view(Page)

    with pytest.raises((TypeError, RuntimeError)) as raised:  # 3.11 wraps it in RuntimeError

        class Items(View):
            @green_view
            def get(self, request: Any) -> None: ...

    message = str(raised.value.__cause__ or raised.value)
    assert r"green_view(Items.as_view())" in message, message

    async def view(request: Any) -> None: ...

    with pytest.raises(TypeError, match="already asynchronous"):
        green_view(view)


def test_example_project_under_uvicorn(server_uri: str) -> None:
    """examples/django_notes, served as its README says: post a note, list it, count."""
    import json
    import urllib.request

    app = AppProcess(
        python("-m", "uvicorn", "examples.django_notes.asgi:application", "--host",
               "127.0.0.1", "--port", "{port}", "--no-access-log", "--lifespan", "off"),
        env={"MONGODB_URI": server_uri,
             "DJANGO_SETTINGS_MODULE": "examples.django_notes.settings"},
    )  # fmt: skip
    try:
        text = f"note {uuid.uuid4().hex[:8]}"
        posted = urllib.request.Request(
            f"{app.url}/notes", data=json.dumps({"text": text}).encode(), method="POST"
        )
        with urllib.request.urlopen(posted, timeout=20) as reply:
            assert reply.status == 201
        listed, counted = burst([f"{app.url}/notes", f"{app.url}/notes/count"])
    finally:
        app.stop()
    assert {"text": text} in listed["notes"]
    assert counted["count"] >= 1
