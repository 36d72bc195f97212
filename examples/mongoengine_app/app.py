"""The blog application: Tornado handlers whose MongoEngine calls park instead of blocking.

Each handler method that touches the database is decorated with
``@motorpatch.green``: it runs in a greenlet, and every query MongoEngine sends
through PyMongo (``Post.objects(...)``, ``save()``, ``update_one``, the
dereference of ``post.author``, ``aggregate``) parks that greenlet while the
server answers, so the event loop serves other requests meanwhile. The models
in :mod:`examples.mongoengine_app.models` are unchanged MongoEngine.

``motorpatch.install()`` must have been called before the application serves
requests (``python -m examples.mongoengine_app`` does it first thing).
"""

from __future__ import annotations

import json
from http.client import responses
from typing import Any

import mongoengine
import tornado.web
from bson import ObjectId
from bson.errors import InvalidId
from mongoengine.errors import DoesNotExist, NotUniqueError, ValidationError
from pymongo.errors import PyMongoError

import motorpatch
from examples.mongoengine_app.models import ALIAS, Address, Author, Post, tag_counts

__all__ = ["DEFAULT_DATABASE", "connect", "disconnect", "ensure_indexes", "make_app"]

DEFAULT_DATABASE = "motorpatch_blog"
PAGE_SIZE = 20


def connect(uri: str, database: str = DEFAULT_DATABASE, **client_kw: Any) -> Any:
    """Connect the models' alias to ``uri``/``database``; returns the ``MongoClient``.

    No I/O happens here (PyMongo connects lazily), so it is safe anywhere.
    """
    mongoengine.disconnect(alias=ALIAS)  # drops every model's cached collection as well
    return mongoengine.connect(db=database, host=uri, alias=ALIAS, **client_kw)


def disconnect() -> None:
    mongoengine.disconnect(alias=ALIAS)


def ensure_indexes() -> None:
    """Create the models' indexes. Plain, blocking start-up code, run before the loop."""
    Author.ensure_indexes()
    Post.ensure_indexes()


class BadRequest(Exception):
    """The request is invalid; the message goes back to the client as a 400."""


def _author_json(author: Author) -> dict[str, Any]:
    address = author.address
    return {
        "id": author.pk,
        "name": author.name,
        "address": address and {"city": address.city, "country": address.country},
    }


def _post_json(post: Post) -> dict[str, Any]:
    return {
        "id": str(post.id),
        "title": post.title,
        "body": post.body,
        "tags": list(post.tags),
        "likes": post.likes,
        "author": {"id": post.author.pk, "name": post.author.name},  # a dereference
        "created": post.created.isoformat(timespec="milliseconds") + "Z",
    }


class ApiHandler(tornado.web.RequestHandler):
    """JSON in, JSON out; model and request errors become 400/404/409, PyMongo's 503."""

    def body(self) -> dict[str, Any]:
        try:
            data = json.loads(self.request.body or b"null")
        except ValueError:
            raise BadRequest("The body must be JSON.") from None
        if not isinstance(data, dict):
            raise BadRequest("The body must be a JSON object.")
        return data

    def log_exception(self, typ: Any, value: BaseException | None, tb: Any) -> None:
        if isinstance(value, _CLIENT_ERRORS):
            return  # answered with a 4xx: the client's mistake, not a server fault
        super().log_exception(typ, value, tb)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        status, message = status_code, responses.get(status_code, "Error")
        if isinstance(exc, BadRequest):
            status, message = 400, str(exc)
        elif isinstance(exc, ValidationError):
            status, message = 400, f"Invalid document: {exc}"
        elif isinstance(exc, DoesNotExist):  # Author.DoesNotExist, Post.DoesNotExist...
            status, message = 404, "Not found."
        elif isinstance(exc, NotUniqueError):
            status, message = 409, "That name is taken."
        elif isinstance(exc, PyMongoError):
            status, message = 503, "The database is unavailable."
        self.set_status(status)
        self.finish({"error": message})


_CLIENT_ERRORS = (BadRequest, ValidationError, DoesNotExist, NotUniqueError)


def _object_id(value: str) -> ObjectId:
    try:
        return ObjectId(value)
    except (InvalidId, TypeError):
        raise DoesNotExist(value) from None


class AuthorsHandler(ApiHandler):
    """``POST /authors``: ``{"name", "city", "country"}`` -> 201 with the author."""

    @motorpatch.green
    def post(self) -> None:
        data = self.body()
        address = Address(city=data.get("city"), country=data.get("country"))
        author = Author(name=data.get("name"), address=address if data.get("city") else None)
        author.save(force_insert=True)  # a taken name: NotUniqueError -> 409
        self.set_status(201)
        self.write(_author_json(author))


class AuthorHandler(ApiHandler):
    """``GET /authors/<id>``: the author and the titles of their posts."""

    @motorpatch.green
    def get(self, author_id: str) -> None:
        author = Author.objects.get(pk=author_id)
        titles = [p.title for p in Post.objects(author=author).only("title")]
        self.write({**_author_json(author), "posts": titles})


class PostsHandler(ApiHandler):
    """``GET /posts[?tag=t&author=id]``: newest first; ``POST /posts``: create one."""

    @motorpatch.green
    def get(self) -> None:
        query = Post.objects
        if tag := self.get_query_argument("tag", None):
            query = query(tags=tag)
        if author_id := self.get_query_argument("author", None):
            query = query(author=author_id)
        posts = query.limit(PAGE_SIZE).select_related(max_depth=1)  # authors: one query
        self.write({"posts": [_post_json(p) for p in posts]})

    @motorpatch.green
    def post(self) -> None:
        data = self.body()
        author = Author.objects.get(pk=str(data.get("author_id")))
        tags = data.get("tags") or []
        if not isinstance(tags, list):
            raise BadRequest("'tags' must be a list of strings.")
        post = Post(title=data.get("title"), body=data.get("body", ""), tags=tags, author=author)
        post.save()  # validation errors -> 400
        self.set_status(201)
        self.write(_post_json(post))


class PostHandler(ApiHandler):
    """``GET``, ``PATCH`` (title, body, tags) and ``DELETE /posts/<id>``."""

    @motorpatch.green
    def get(self, post_id: str) -> None:
        self.write(_post_json(Post.objects.get(id=_object_id(post_id))))

    @motorpatch.green
    def patch(self, post_id: str) -> None:
        changes = {k: v for k, v in self.body().items() if k in ("title", "body", "tags")}
        if not changes:
            raise BadRequest("Send at least one of 'title', 'body', 'tags'.")
        post = Post.objects.get(id=_object_id(post_id))
        post.modify(**changes)  # one findAndModify, and the document is updated in place
        self.write(_post_json(post))

    @motorpatch.green
    def delete(self, post_id: str) -> None:
        if not Post.objects(id=_object_id(post_id)).delete():
            raise DoesNotExist(post_id)
        self.set_status(204)


class LikeHandler(ApiHandler):
    """``POST /posts/<id>/like``: an atomic ``$inc``; returns the new count."""

    @motorpatch.green
    def post(self, post_id: str) -> None:
        post = Post.objects(id=_object_id(post_id)).modify(inc__likes=1, new=True)
        if post is None:
            raise DoesNotExist(post_id)
        self.write({"id": post_id, "likes": post.likes})


class TagsHandler(ApiHandler):
    """``GET /tags``: tags by number of posts, with their likes (an aggregation)."""

    @motorpatch.green
    def get(self) -> None:
        self.write({"tags": tag_counts()})


def make_app(
    uri: str,
    database: str = DEFAULT_DATABASE,
    client_options: dict[str, Any] | None = None,
    **settings: Any,
) -> tornado.web.Application:
    """Connect the models to ``uri``/``database`` and return the Tornado application.

    Does no I/O: call :func:`ensure_indexes` (plain code) before serving, as
    ``__main__`` does. ``client_options`` go to ``MongoClient``; ``settings``
    are Tornado application settings.
    """
    options = {"uuidRepresentation": "standard", "appname": "motorpatch-mongoengine-app"}
    connect(uri, database, **{**options, **(client_options or {})})
    oid = r"([^/]+)"
    return tornado.web.Application(
        [
            (r"/authors", AuthorsHandler),
            (rf"/authors/{oid}", AuthorHandler),
            (r"/posts", PostsHandler),
            (rf"/posts/{oid}", PostHandler),
            (rf"/posts/{oid}/like", LikeHandler),
            (r"/tags", TagsHandler),
        ],
        **settings,
    )
