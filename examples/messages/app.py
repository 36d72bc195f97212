"""The message board application: ordinary Tornado handlers, ordinary PyMongo calls.

Every handler method that touches the database is decorated with
``@motorpatch.green``. Tornado awaits the coroutine the decorator returns, the
method body runs in a greenlet, and each PyMongo call in it (``find``,
``insert_one``, ``command``) parks that greenlet while it waits for the server
instead of blocking the event loop: other requests are served meanwhile.
The helper methods the handlers call are plain functions; they run in the
same greenlet, so they need no decorator of their own.

``motorpatch.install()`` must have been called before the application serves
requests (``python -m examples.messages`` does it first thing).
"""

from __future__ import annotations

import datetime as dt
import json
from http.client import responses
from pathlib import Path
from typing import Any

import pymongo
import tornado.web
from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.errors import PyMongoError

import motorpatch

__all__ = [
    "DEFAULT_DATABASE",
    "MAX_AUTHOR",
    "MAX_TEXT",
    "PAGE_SIZE",
    "ValidationError",
    "ensure_indexes",
    "make_app",
    "messages_collection",
    "validate",
]

DEFAULT_DATABASE = "motorpatch_demo"
MAX_AUTHOR = 40
MAX_TEXT = 500
PAGE_SIZE = 50
TEMPLATES = Path(__file__).with_name("templates")
# Newest first; _id breaks ties between messages posted in the same millisecond.
NEWEST_FIRST = [("created_at", pymongo.DESCENDING), ("_id", pymongo.DESCENDING)]

Message = dict[str, Any]


class ValidationError(ValueError):
    """A posted message was rejected; the text is shown to the user."""


def messages_collection(
    client: MongoClient[Message], database: str | None = None, collection: str = "messages"
) -> Collection[Message]:
    """The board's collection: ``database``, else the URI's default database, else the demo's."""
    if database:
        return client[database][collection]
    return client.get_default_database(DEFAULT_DATABASE)[collection]


def ensure_indexes(collection: Collection[Message]) -> None:
    """Create the index the board's newest-first query uses. Idempotent; plain blocking code."""
    collection.create_index([("created_at", pymongo.DESCENDING)], name="created_at_desc")


def validate(author: Any, text: Any) -> tuple[str, str]:
    """Return the cleaned ``(author, text)`` or raise :class:`ValidationError`."""
    if not isinstance(author, str) or not isinstance(text, str):
        raise ValidationError("'author' and 'text' must be strings.")
    author = author.strip() or "anonymous"
    text = text.replace("\r\n", "\n").strip()
    if not text:
        raise ValidationError("Write a message before posting: the text is empty.")
    if len(text) > MAX_TEXT:
        raise ValidationError(
            f"A message can be at most {MAX_TEXT} characters long; this one has {len(text)}."
        )
    if len(author) > MAX_AUTHOR:
        raise ValidationError(f"A name can be at most {MAX_AUTHOR} characters long.")
    return author, text


def _utc(when: dt.datetime) -> dt.datetime:
    """PyMongo returns naive UTC datetimes unless the client is tz_aware."""
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


def iso_time(when: dt.datetime) -> str:
    return _utc(when).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def display_time(when: dt.datetime) -> str:
    return _utc(when).strftime("%Y-%m-%d %H:%M UTC")


def to_json(message: Message) -> dict[str, str]:
    return {
        "id": str(message["_id"]),
        "author": message["author"],
        "text": message["text"],
        "created_at": iso_time(message["created_at"]),
    }


class BoardHandler(tornado.web.RequestHandler):
    """Shared database helpers. They are plain PyMongo code, called from green methods."""

    def initialize(self, collection: Collection[Message]) -> None:
        self.collection = collection

    def recent_messages(self) -> list[Message]:
        return list(self.collection.find().sort(NEWEST_FIRST).limit(PAGE_SIZE))

    def add_message(self, author: str, text: str) -> Message:
        now = dt.datetime.now(dt.UTC)
        # BSON dates have millisecond precision: store exactly what will be read back.
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        message: Message = {"author": author, "text": text, "created_at": now}
        self.collection.insert_one(message)  # sets message["_id"]
        return message

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, PyMongoError):
            self.set_status(503)
            self.finish("<!doctype html><title>503</title><p>The database is unavailable.</p>")
            return
        super().write_error(status_code, **kwargs)


class PageHandler(BoardHandler):
    """``/``: the board page (GET) and its compose form (POST, then redirect to GET)."""

    @motorpatch.green
    def get(self) -> None:
        self.render_page()

    @motorpatch.green
    def post(self) -> None:
        author = self.get_body_argument("author", "")
        text = self.get_body_argument("text", "")
        try:
            author, text = validate(author, text)
        except ValidationError as exc:
            self.set_status(400)
            self.render_page(error=str(exc), author=author, text=text)
            return
        self.add_message(author, text)
        self.redirect(self.reverse_url("board"), status=303)  # post/redirect/get

    def render_page(self, error: str | None = None, author: str = "", text: str = "") -> None:
        self.render(
            "index.html",
            messages=self.recent_messages(),
            error=error,
            author=author,
            text=text,
            max_author=MAX_AUTHOR,
            max_text=MAX_TEXT,
            iso_time=iso_time,
            display_time=display_time,
        )


class ApiMessagesHandler(BoardHandler):
    """``/api/messages``: GET the newest messages as JSON; POST ``{"author", "text"}`` JSON."""

    @motorpatch.green
    def get(self) -> None:
        self.write({"messages": [to_json(m) for m in self.recent_messages()]})

    @motorpatch.green
    def post(self) -> None:
        try:
            body = json.loads(self.request.body or b"null")
        except ValueError:
            self.fail(400, 'The body must be JSON: {"author": "...", "text": "..."}.')
            return
        if not isinstance(body, dict):
            self.fail(400, 'The body must be a JSON object: {"author": "...", "text": "..."}.')
            return
        try:
            author, text = validate(body.get("author", ""), body.get("text", ""))
        except ValidationError as exc:
            self.fail(400, str(exc))
            return
        self.set_status(201)
        self.write(to_json(self.add_message(author, text)))

    def fail(self, status: int, message: str) -> None:
        self.set_status(status)
        self.write({"error": message})

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, PyMongoError):
            self.set_status(503)
            self.finish({"error": "The database is unavailable."})
        else:
            self.finish({"error": responses.get(status_code, "Unknown error")})


class HealthHandler(BoardHandler):
    """``/healthz``: 200 ``{"status": "ok"}`` when the database answers a ping, else 503."""

    def initialize(self, collection: Collection[Message], timeout: float = 2.0) -> None:
        super().initialize(collection)
        self.timeout = timeout

    @motorpatch.green
    def get(self) -> None:
        try:
            with pymongo.timeout(self.timeout):
                self.collection.database.client.admin.command("ping")
        except PyMongoError as exc:
            self.set_status(503)
            self.write({"status": "unavailable", "error": type(exc).__name__})
            return
        self.write({"status": "ok"})


class StatsHandler(tornado.web.RequestHandler):
    """``/stats``: :func:`motorpatch.stats` as JSON (green calls in flight, parked greenlets).

    A plain coroutine-free handler: reading the snapshot does no I/O.
    """

    def get(self) -> None:
        self.write(motorpatch.stats())


def make_app(
    client: MongoClient[Message],
    *,
    database: str | None = None,
    collection: str = "messages",
    health_timeout: float = 2.0,
    **settings: Any,
) -> tornado.web.Application:
    """The message board as a Tornado application using ``client``.

    :param database: the database name; by default the URI's default
        database, else ``motorpatch_demo``.
    :param collection: the collection that holds the messages.
    :param health_timeout: seconds ``/healthz`` waits for the ping.
    :param settings: further Tornado application settings (``debug=True``...).
    """
    messages = messages_collection(client, database, collection)
    board = {"collection": messages}
    return tornado.web.Application(
        [
            tornado.web.url(r"/", PageHandler, board, name="board"),
            tornado.web.url(r"/api/messages", ApiMessagesHandler, board),
            tornado.web.url(r"/healthz", HealthHandler, {**board, "timeout": health_timeout}),
            tornado.web.url(r"/stats", StatsHandler),
        ],
        template_path=str(TEMPLATES),
        autoescape="xhtml_escape",  # Tornado's default, spelled out: {{ }} output is escaped
        **settings,
    )
