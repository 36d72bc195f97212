"""An asyncio service (no Tornado) that reuses a legacy synchronous PyMongo module.

Run it with ``python -m examples.asyncio_service``; the pieces are
:mod:`~examples.asyncio_service.repository` (the legacy, blocking PyMongo
code, unchanged) and :mod:`~examples.asyncio_service.service` (the asyncio
workers that call it through ``@motorpatch.green``).
"""
