"""What every example's ``python -m examples.X`` shares: its options and its MongoDB.

- :func:`parser`: ``--mongodb-uri`` (default ``$MONGODB_URI``), and for a server
  ``--host``/``--port``, and ``--check`` where the example has a self-check.
- :func:`run_with_mongodb`: the MongoDB URI given, or else an embedded nx-27017
  (:mod:`examples.messages.embedded`) started for the run and stopped on exit;
  the errors an example expects become one ``error: ...`` line and exit code 1,
  with the URI's password masked (:func:`mask_uri`); Ctrl-C during start-up is 130.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from collections.abc import Callable

from examples.messages.embedded import EmbeddedMongo, EmbeddedMongoError

__all__ = ["mask_uri", "parser", "run_with_mongodb"]

# URI options whose values are secrets (TLS key password, AWS session token...).
_SECRET_OPTION = re.compile(r"password|secret|token|authmechanismproperties", re.IGNORECASE)


def mask_uri(uri: str) -> str:
    """``uri`` with the password and secret option values replaced by ``***``.

    Everything before the last ``@`` ahead of the options is user
    information, even where PyMongo would read part of it as a host (a
    password with an unescaped ``/``): better to hide too much than to print
    half a password.
    """
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return "***" if "@" in uri else uri
    hosts_and_db, question, options = rest.partition("?")
    if "@" in hosts_and_db:
        userinfo, _, hosts_and_db = hosts_and_db.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        hosts_and_db = f"{user}:***@{hosts_and_db}" if colon else f"{userinfo}@{hosts_and_db}"
    masked_options = []
    for option in re.split("[&;]", options) if options else []:
        key, equals, _ = option.partition("=")
        masked_options.append(f"{key}=***" if equals and _SECRET_OPTION.search(key) else option)
    return f"{scheme}://{hosts_and_db}{question}{'&'.join(masked_options)}"


def parser(
    prog: str, description: str, *, port: int | None = None, check: str | None = None
) -> argparse.ArgumentParser:
    """An example's argument parser: ``--host``/``--port`` when ``port`` (its default) is
    given, ``--mongodb-uri``, and ``--check`` (with ``check`` as its help) when given."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    if port is not None:
        parser.add_argument("--host", default="127.0.0.1", help="address to listen on [127.0.0.1]")
        parser.add_argument(
            "--port", type=int, default=port, help=f"port; 0 picks a free one [{port}]"
        )
    parser.add_argument(
        "--mongodb-uri",
        default=os.environ.get("MONGODB_URI") or None,
        help="MongoDB connection string [$MONGODB_URI; when unset, an embedded nx-27017]",
    )
    if check is not None:
        parser.add_argument("--check", action="store_true", help=check)
    return parser


def run_with_mongodb(
    uri: str | None,
    body: Callable[[str, contextlib.ExitStack[bool | None]], int | None],
    *,
    errors: tuple[type[Exception], ...] = (),
    doing: str = "use MongoDB",
) -> int:
    """Run ``body(uri, cleanup)`` on ``uri``, or on an embedded nx-27017 when it is None.

    ``cleanup`` is the run's exit stack (closed after ``body``, the embedded server
    last); ``body`` returns the exit code (None: 0). An ``errors`` exception is
    printed as ``error: cannot {doing} at {masked uri}: ...`` and gives 1.
    """
    try:
        with contextlib.ExitStack() as cleanup:
            if uri is None:
                embedded = cleanup.enter_context(EmbeddedMongo())
                uri = embedded.uri
                print(f"Started embedded nx-27017 (pid {embedded.pid}) at {uri}", flush=True)
            return body(uri, cleanup) or 0
    except EmbeddedMongoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except errors as exc:
        print(f"error: cannot {doing} at {mask_uri(uri or '')}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C during start-up
        return 130
