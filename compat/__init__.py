"""The compatibility harness: PyMongo's own test suite run plain and green (compat/README.md)."""
