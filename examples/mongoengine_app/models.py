"""The blog's MongoEngine models: ordinary MongoEngine, nothing motorpatch-specific.

An ``Author`` embeds an ``Address``; a ``Post`` references its ``Author``.
These classes would look exactly the same in a WSGI or script code base: the
handlers in :mod:`examples.mongoengine_app.app` call them from green code.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from mongoengine import (
    CASCADE,
    DateTimeField,
    Document,
    EmbeddedDocument,
    EmbeddedDocumentField,
    IntField,
    ListField,
    ReferenceField,
    StringField,
)

__all__ = ["ALIAS", "Address", "Author", "Post", "tag_counts"]

# The example's own MongoEngine connection alias, so it never disturbs an
# application's "default" connection.
ALIAS = "mongoengine_app"


def _now() -> dt.datetime:
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)  # BSON dates: naive UTC, milliseconds
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class Address(EmbeddedDocument):
    city = StringField(required=True, max_length=80)
    country = StringField(max_length=80)


class Author(Document):
    # The name is the primary key, so a post stores its author's name. (An ObjectId
    # reference works with MongoDB; nx-27017 0.8 cannot match ObjectId values outside
    # _id, so "the posts of this author" would find nothing on the embedded server.)
    name = StringField(primary_key=True, max_length=60)
    address = EmbeddedDocumentField(Address)
    meta = {"db_alias": ALIAS, "collection": "authors"}


class Post(Document):
    title = StringField(required=True, max_length=120)
    body = StringField(default="")
    tags = ListField(StringField(max_length=30))
    likes = IntField(default=0, min_value=0)
    author = ReferenceField(Author, required=True, reverse_delete_rule=CASCADE)
    created = DateTimeField(default=_now)
    meta = {
        "db_alias": ALIAS,
        "collection": "posts",
        # No index on "tags": nx-27017 0.8 finds nothing by array element through one.
        "indexes": ["-created"],
        "ordering": ["-created", "-id"],
    }


def tag_counts(limit: int = 10) -> list[dict[str, Any]]:
    """The most used tags with their post count and total likes (an aggregation pipeline)."""
    pipeline = [
        {"$unwind": "$tags"},
        {"$group": {"_id": "$tags", "posts": {"$sum": 1}, "likes": {"$sum": "$likes"}}},
        {"$sort": {"posts": -1, "_id": 1}},
        {"$limit": limit},
    ]
    return [
        {"tag": row["_id"], "posts": row["posts"], "likes": row["likes"]}
        for row in Post.objects.aggregate(pipeline)
    ]
