"""WSGI: ``gunicorn examples.django_notes.wsgi:application``. The same views run plainly."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_notes.settings")

from django.core.wsgi import get_wsgi_application

application = get_wsgi_application()
