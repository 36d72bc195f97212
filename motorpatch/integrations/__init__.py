"""Opt-in framework integrations; each module imports its framework only when used.

- :mod:`motorpatch.integrations.django`: ``green_view`` for Django views.
"""
