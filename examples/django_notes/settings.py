"""Settings: no ORM database (the views use PyMongo), MONGODB_URI names the server."""

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []  # no CsrfViewMiddleware: the JSON API below takes plain POSTs
ROOT_URLCONF = "examples.django_notes.urls"
DATABASES: dict[str, dict[str, str]] = {}
MONGODB_URI = os.environ.get("MONGODB_URI", "mongodb://127.0.0.1:27017")
