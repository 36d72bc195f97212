"""WSGI entry point (gunicorn sync workers): no loop runs, views run plainly."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_site.settings")

from django.core.wsgi import get_wsgi_application

application = get_wsgi_application()
