"""A minimal Django project whose views use PyMongo directly, as green code under ASGI.

Serve it with ``uvicorn examples.django_notes.asgi:application`` (see README.md):
:mod:`~examples.django_notes.views` holds the views, decorated with
:func:`motorpatch.integrations.django.green_view`.
"""
