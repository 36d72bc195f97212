"""Notes, stored with plain PyMongo: a function view and a class-based view, both green.

``green_view`` makes each view green under ASGI (its PyMongo calls park and the
loop serves other requests meanwhile) and an ordinary sync view under WSGI.
The client is made on first use, in the serving process: never at import in a
process that forks workers afterwards.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import pymongo
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import View

from motorpatch.integrations.django import green_view


@functools.cache
def notes() -> Any:
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(settings.MONGODB_URI)
    return client.django_notes.notes


@green_view
def note_list(request: HttpRequest) -> HttpResponse:
    """GET: the 20 newest notes. POST {"text": ...}: add one."""
    if request.method == "POST":
        text = str(json.loads(request.body or b"{}").get("text", "")).strip()
        if not text:
            return JsonResponse({"error": "text is required"}, status=400)
        inserted = notes().insert_one({"text": text})
        return JsonResponse({"id": str(inserted.inserted_id)}, status=201)
    found = notes().find({}, {"_id": 0}).sort("_id", -1).limit(20)
    return JsonResponse({"notes": list(found)})


class NoteCount(View):
    """A class-based view: ``green_view(NoteCount.as_view())`` runs its dispatch green."""

    def get(self, request: HttpRequest) -> HttpResponse:
        return JsonResponse({"count": notes().count_documents({})})


note_count = green_view(NoteCount.as_view())
