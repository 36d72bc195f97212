"""The message board as a FastAPI service (``python -m examples.fastapi_board``)."""
