"""A small blog API: Tornado handlers over unchanged MongoEngine models, made green.

Run it with ``python -m examples.mongoengine_app``; build the application in
your own code with :func:`examples.mongoengine_app.app.make_app`.
"""
