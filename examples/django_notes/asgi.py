"""ASGI: ``uvicorn examples.django_notes.asgi:application``. Installs motorpatch first."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_notes.settings")

from django.core.asgi import get_asgi_application

import motorpatch

motorpatch.install()
application = get_asgi_application()
