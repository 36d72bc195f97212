"""The test suite; ``tests.support`` holds what the suites, ``compat/`` and ``bench/`` share."""
