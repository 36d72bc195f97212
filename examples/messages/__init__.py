"""A message board: Tornado handlers written with plain, synchronous PyMongo calls.

Run it with ``python -m examples.messages``; build the application in your own
code with :func:`examples.messages.app.make_app`.
"""
