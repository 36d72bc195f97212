"""TLS cases missing from tests/socket_shim/test_connect.py: expired certificates, tlsInsecure.

A small thread-based TLS terminator on 127.0.0.1 forwards to the test server
(the socket_shim ``TLSProxy`` lives in that package's conftest and is not
importable from here). Each case runs a client plain and in green code; both
must end alike: an expired certificate fails verification with
CERTIFICATE_VERIFY_FAILED ("certificate has expired") unless
``tlsAllowInvalidCertificates`` or ``tlsInsecure`` is set; ``tlsInsecure``
also accepts a wrong hostname from an untrusted CA.
"""

from __future__ import annotations

import contextlib
import datetime
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from pymongo.errors import ServerSelectionTimeoutError

import motorpatch
from motorpatch.socket_shim import GreenSocket
from tests.support.loops import run_on

pytestmark = pytest.mark.usefixtures("installed")


class _TLSTerminator:
    """Accepts TLS on 127.0.0.1 with ``cert`` and pipes plain bytes to ``target``."""

    def __init__(self, cert: trustme.LeafCert, target: tuple[str, int]) -> None:
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(self.ctx)
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._socks: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        self._listener.close()
        for s in list(self._socks):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        for t in self._threads:
            t.join(5)

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(raw,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, raw: socket.socket) -> None:
        self._socks.append(raw)
        try:
            tls = self.ctx.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return  # the client rejected our certificate
        upstream = socket.create_connection(self.target)
        self._socks += [tls, upstream]
        back = threading.Thread(target=_pipe, args=(upstream, tls), daemon=True)
        self._threads.append(back)
        back.start()
        _pipe(tls, upstream)


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    ca, rogue = trustme.CA(), trustme.CA()
    ca_file = Path(tmp_path_factory.mktemp("tls-extra"), "ca.pem")
    ca.cert_pem.write_to_path(str(ca_file))
    now = datetime.datetime.now(datetime.UTC)
    return {
        "ca_file": str(ca_file),
        "expired": ca.issue_cert(
            "localhost", "127.0.0.1",
            not_before=now - datetime.timedelta(days=30),
            not_after=now - datetime.timedelta(days=1),
        ),
        "rogue_wrong_name": rogue.issue_cert("other.example"),
    }


@pytest.fixture
def terminator(server_address: tuple[str, int]) -> Iterator[Callable[[Any], _TLSTerminator]]:
    made: list[_TLSTerminator] = []

    def make(cert: Any) -> _TLSTerminator:
        made.append(_TLSTerminator(cert, server_address))
        return made[-1]

    yield make
    for t in made:
        t.close()


CASES = {  # id: (server certificate, client options, connects?)
    "expired": ("expired", {}, False),
    "expired-allow-invalid-certificates": ("expired", {"tlsAllowInvalidCertificates": True}, True),
    "expired-tls-insecure": ("expired", {"tlsInsecure": True}, True),
    "untrusted-wrong-name-tls-insecure": ("rogue_wrong_name", {"tlsInsecure": True}, True),
}


def _outcome(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception as exc:
        return type(exc), str(exc)


@pytest.mark.parametrize("case", list(CASES))
def test_tls_outcome_is_the_same_plain_and_green(loop_kind, case, certs, terminator, make_client):
    cert, options, connects = CASES[case]
    port = terminator(certs[cert]).port
    if not connects:
        options = {**options, "serverSelectionTimeoutMS": 500}

    def client() -> Any:
        return make_client(f"mongodb://localhost:{port}", tls=True, tlsCAFile=certs["ca_file"],
                           **options)

    plain_client, green_client = client(), client()
    plain = _outcome(lambda: plain_client.admin.command("ping")["ok"])
    green = run_on(loop_kind, motorpatch.green(
        lambda: _outcome(lambda: green_client.admin.command("ping")["ok"])))
    if connects:
        assert plain == green == 1.0
        socks = [c.conn.conn for s in green_client._topology._servers.values()
                 for c in s.pool.conns]
        assert socks and all(isinstance(s, GreenSocket) for s in socks)
    else:
        assert plain[0] is green[0] is ServerSelectionTimeoutError
        assert "certificate has expired" in plain[1] and "certificate has expired" in green[1]
