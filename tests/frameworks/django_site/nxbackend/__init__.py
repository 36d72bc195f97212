"""The test engine: django-mongodb-backend, tolerant of nx-27017's buildInfo (see base.py)."""
