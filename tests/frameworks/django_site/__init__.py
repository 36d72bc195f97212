"""A minimal Django project for tests/frameworks/test_django.py (ASGI, WSGI, in-process)."""
