"""Settings: django-mongodb-backend on MONGODB_URI; ATOMIC_REQUESTS when DJANGO_ATOMIC=1."""

import os

SECRET_KEY = "test-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["django_site"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "django_site.urls"
DATABASES = {
    "default": {
        "ENGINE": "django_site.nxbackend",
        "HOST": os.environ.get("MONGODB_URI", "mongodb://127.0.0.1:27017"),
        "NAME": os.environ.get("DJANGO_DB_NAME", "motorpatch_django"),
        "ATOMIC_REQUESTS": os.environ.get("DJANGO_ATOMIC") == "1",
        "OPTIONS": {"serverSelectionTimeoutMS": 10000},
    }
}
DEFAULT_AUTO_FIELD = "django_mongodb_backend.fields.ObjectIdAutoField"
USE_TZ = True
