"""ASGI apps that tests/frameworks serves with real servers (uvicorn, gunicorn...)."""
