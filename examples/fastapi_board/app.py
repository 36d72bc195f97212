"""The message board as a FastAPI service: ordinary sync PyMongo in ``@motorpatch.green`` code.

Every path operation and dependency that touches the database is a plain
``def`` with ``@motorpatch.green`` directly above it, under FastAPI's route
decorator. FastAPI sees a coroutine function and awaits it on the event loop;
the body runs in a greenlet, and each PyMongo call in it parks that greenlet
while MongoDB answers. Without ``@green`` FastAPI would run the same ``def``
in its thread pool (40 threads), blocking one thread per request.

What the app shows: a green dependency (the collection), a green ``yield``
dependency (a causally consistent session around a post and its read-back),
a background task (the author's post counter), a middleware that sets a
context variable the green code reads (the request id, stored with each
message), an exception handler (the database is down: 503), an NDJSON export
streamed from a cursor with :func:`motorpatch.green_iter`, and response models.

The ``MongoClient`` is made in the app's lifespan, so each worker process of
a multi-worker server makes its own (a client must not cross a fork).
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pymongo
from fastapi import BackgroundTasks, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel
from pymongo.client_session import ClientSession
from pymongo.collection import Collection
from pymongo.errors import PyMongoError

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

__all__ = ["create_app", "request_id"]

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class NewMessage(BaseModel):
    author: str = ""
    text: str


class MessageOut(BaseModel):
    id: str
    author: str
    text: str
    created_at: str


class MessageList(BaseModel):
    messages: list[MessageOut]


class Author(BaseModel):
    author: str
    posts: int


def create_app(uri: str, database: str | None = None, **client_options: Any) -> FastAPI:
    """The board's FastAPI app; its lifespan opens (and closes) the ``MongoClient``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client: pymongo.MongoClient[Message] = pymongo.MongoClient(uri, **client_options)
        app.state.messages = messages_collection(client, database)
        await motorpatch.green(ensure_indexes)(app.state.messages)  # start-up, on the loop
        try:
            yield
        finally:
            await motorpatch.green(client.close)()  # close() joins a thread: green, it parks

    app = FastAPI(title="motorpatch message board", lifespan=lifespan)

    @app.middleware("http")
    async def tag_request(request: Request, call_next: Any) -> Any:
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex[:12]
        request_id.set(rid)  # green code in this request reads it
        response = await call_next(request)
        response.headers["x-request-id"] = rid
        return response

    @app.exception_handler(PyMongoError)
    async def database_down(request: Request, exc: PyMongoError) -> JSONResponse:
        return JSONResponse({"error": "The database is unavailable."}, status_code=503)

    @motorpatch.green
    def board(request: Request) -> Collection[Message]:
        """A green dependency: the messages collection of this app."""
        return request.app.state.messages  # type: ignore[no-any-return]

    @motorpatch.green
    def consistent_session(
        messages: Collection[Message] = Depends(board),  # noqa: B008
    ) -> Iterator[ClientSession]:
        """A green ``yield`` dependency: one causally consistent session per request."""
        with messages.database.client.start_session(causal_consistency=True) as session:
            yield session

    @motorpatch.green
    def count_post(messages: Collection[Message], author: str) -> None:
        """A background task, green: runs on the loop after the response is sent."""
        messages.database["authors"].update_one(
            {"_id": author}, {"$inc": {"posts": 1}}, upsert=True
        )

    @app.get("/api/messages", response_model=MessageList)
    @motorpatch.green
    def list_messages(messages: Collection[Message] = Depends(board)) -> Any:  # noqa: B008
        recent = messages.find().sort(NEWEST_FIRST).limit(PAGE_SIZE)
        return {"messages": [to_json(m) for m in recent]}

    @app.post("/api/messages", response_model=MessageOut, status_code=201)
    @motorpatch.green
    def post_message(
        body: NewMessage,
        tasks: BackgroundTasks,
        messages: Collection[Message] = Depends(board),  # noqa: B008
        session: ClientSession = Depends(consistent_session),  # noqa: B008
    ) -> Any:
        try:
            author, text = validate(body.author, body.text)
        except ValidationError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        now = dt.datetime.now(dt.UTC)
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # BSON: milliseconds
        message: Message = {
            "author": author,
            "text": text,
            "created_at": now,
            "request_id": request_id.get(),
        }
        messages.insert_one(message, session=session)
        stored = messages.find_one({"_id": message["_id"]}, session=session)  # reads its write
        tasks.add_task(count_post, messages, author)
        return to_json(stored or message)

    @app.get("/api/authors", response_model=list[Author])
    @motorpatch.green
    def authors(messages: Collection[Message] = Depends(board)) -> Any:  # noqa: B008
        found = messages.database["authors"].find().sort([("posts", -1), ("_id", 1)])
        return [{"author": a["_id"], "posts": a["posts"]} for a in found]

    @app.get("/api/export")
    async def export(messages: Collection[Message] = Depends(board)) -> StreamingResponse:  # noqa: B008
        """Every message as NDJSON, oldest first; each cursor batch is fetched as green code."""
        cursor = messages.find().sort("created_at", pymongo.ASCENDING).batch_size(500)

        async def lines() -> AsyncIterator[str]:
            async for message in motorpatch.green_iter(cursor):
                yield json.dumps(to_json(message)) + "\n"

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    @app.get("/health")
    @motorpatch.green
    def health(messages: Collection[Message] = Depends(board)) -> dict[str, Any]:  # noqa: B008
        messages.database.command("ping")
        return {"ok": True, "green_calls": motorpatch.stats()["green_calls"]}

    return app
