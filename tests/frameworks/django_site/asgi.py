"""ASGI entry point: install motorpatch, then Django's ASGI application."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_site.settings")

from django.core.asgi import get_asgi_application

import motorpatch

motorpatch.install()
application = get_asgi_application()
