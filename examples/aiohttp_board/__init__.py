"""The message board's JSON API on aiohttp (``python -m examples.aiohttp_board``)."""
