"""The message board's JSON API on aiohttp: ``@motorpatch.green`` handlers, sync PyMongo.

aiohttp takes a ``@green`` function as a coroutine function: registered from
a ``RouteTableDef`` (or ``add_get``...) it is awaited on the loop, with no
"bare function" shim, and its PyMongo calls park instead of blocking. A
class-based ``web.View`` works the same with ``@green`` on its methods.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pymongo
from aiohttp import web
from bson import ObjectId
from bson.errors import InvalidId
from pymongo.collection import Collection

import motorpatch
from examples.messages.app import (
    NEWEST_FIRST,
    PAGE_SIZE,
    Message,
    ValidationError,
    ensure_indexes,
    messages_collection,
    to_json,
    validate,
)

__all__ = ["make_app"]

MESSAGES: web.AppKey[Collection[Message]] = web.AppKey("messages", Collection)
routes = web.RouteTableDef()


@routes.get("/api/messages")
@motorpatch.green
def list_messages(request: web.Request) -> web.Response:
    recent = request.app[MESSAGES].find().sort(NEWEST_FIRST).limit(PAGE_SIZE)
    return web.json_response({"messages": [to_json(m) for m in recent]})


@routes.post("/api/messages")
@motorpatch.green
def post_message(request: web.Request) -> web.Response:
    body: Any = motorpatch.await_(request.json())  # reading the body is async: await_ it
    if not isinstance(body, dict):
        return web.json_response({"error": "The body must be a JSON object."}, status=400)
    try:
        author, text = validate(body.get("author", ""), body.get("text", ""))
    except ValidationError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    message: Message = {"author": author, "text": text, "created_at": _now()}
    request.app[MESSAGES].insert_one(message)
    return web.json_response(to_json(message), status=201)


@routes.view("/api/messages/{id}")
class MessageView(web.View):
    @motorpatch.green
    def delete(self) -> web.Response:
        try:
            oid = ObjectId(self.request.match_info["id"])
        except InvalidId:
            raise web.HTTPNotFound() from None
        deleted = self.request.app[MESSAGES].delete_one({"_id": oid}).deleted_count
        if not deleted:
            raise web.HTTPNotFound()
        return web.json_response({"deleted": 1})


def _now() -> dt.datetime:
    now = dt.datetime.now(dt.UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)  # BSON: milliseconds


def make_app(uri: str, database: str | None = None, **client_options: Any) -> web.Application:
    """The app; its cleanup context opens the client at start-up and closes it at shutdown."""

    async def client_context(app: web.Application) -> Any:
        client: pymongo.MongoClient[Message] = pymongo.MongoClient(uri, **client_options)
        app[MESSAGES] = messages_collection(client, database)
        await motorpatch.green(ensure_indexes)(app[MESSAGES])
        yield
        await motorpatch.green(client.close)()

    app = web.Application()
    app.cleanup_ctx.append(client_context)
    app.add_routes(routes)
    return app
