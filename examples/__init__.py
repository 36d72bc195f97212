"""Runnable examples of motorpatch in real applications (``python -m examples.<name>``)."""
