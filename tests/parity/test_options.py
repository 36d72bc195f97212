"""Client options, plain and green: compression, SCRAM authentication, client-side encryption.

- Compression: nx-27017 0.8.1 answers the handshake without a ``compression`` field,
  so a ``compressors="zlib"`` client negotiates nothing and talks uncompressed, in both
  modes (snappy and zstd are not installed; mockupdb cannot parse OP_COMPRESSED).
- Authentication: nx-27017 accepts ``createUser`` but answers ``saslStart`` with
  ``{"ok": 1, "result": []}``, so PyMongo fails with ``KeyError('payload')``, alike in
  both modes. The SCRAM-SHA-256 conversation itself (saslStart, saslContinue, the
  server signature check) is scripted on mockupdb with a real SCRAM server side: the
  connection is made, and authenticated, in green code.
- Client-side field level encryption needs pymongocrypt, which is not installed:
  ``AutoEncryptionOpts`` and ``ClientEncryption`` raise the same ``ConfigurationError``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import threading
from collections.abc import Iterator
from typing import Any

from _mock import MockRun, Scripted, cursor, mock_env, name_of
from bson import Binary
from bson.codec_options import CodecOptions
from pymongo.encryption_options import AutoEncryptionOpts
from pymongo.errors import ConfigurationError, OperationFailure

USER, PASSWORD, SALT, ITERATIONS = "app", "s3cret", b"motorpatch-salt!", 4096


def _pooled(client: Any) -> list[Any]:
    return [c for s in client._get_topology()._servers.values() for c in s.pool.conns]


def _pooled_compression(client: Any) -> list[Any]:
    return [conn.compression_context for conn in _pooled(client)]


def test_zlib_requested_but_not_negotiated_by_nx(parity):
    def scenario(coll: Any) -> Any:
        coll.insert_many([{"n": i, "pad": "z" * 1000} for i in range(50)])
        docs = [d["n"] for d in coll.find().sort("n", 1)]
        return docs, _pooled_compression(coll.database.client)

    out = parity.check(scenario, client_options={"compressors": "zlib"})
    docs, contexts = out.value
    assert docs == list(range(50))
    if parity.nx:
        assert set(contexts) == {None}  # nothing negotiated: plain OP_MSG both ways


def test_nx_scram_fails_alike(parity, make_client, server_uri):
    """nx-27017 has no SCRAM: its saslStart reply has no payload."""

    @contextlib.contextmanager
    def env(mode: str) -> Iterator[Any]:
        client = make_client(server_uri, username=USER, password=PASSWORD)
        yield parity.Env(client, client)

    def scenario(client: Any) -> Any:
        return client.motorpatch_parity.things.find_one({})

    out = parity.check(scenario, env)
    if parity.nx:
        assert (out.error, out.message) == (KeyError, "'payload'")
    else:
        assert out.error in (None, OperationFailure)


# -- SCRAM-SHA-256 on mockupdb -----------------------------------------------------------


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.digest(key, msg, "sha256")


class ScramServer:
    """The server side of SCRAM-SHA-256 (RFC 5802/7677) for one user, per connection."""

    def __init__(self, user: str, password: str) -> None:
        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), SALT, ITERATIONS)
        self.user = user
        self.stored_key = hashlib.sha256(_hmac(salted, b"Client Key")).digest()
        self.server_key = _hmac(salted, b"Server Key")
        self._conversations: dict[int, tuple[bytes, bytes]] = {}
        self._lock = threading.Lock()

    def respond(self, request: Any) -> bool:
        name = name_of(request)
        if name == "saslStart":
            return self._start(request)
        if name == "saslContinue":
            return self._continue(request)
        if name == "find":
            return bool(request.replies(cursor("motorpatch_parity.things", [{"_id": "secret"}])))
        return False

    def _start(self, request: Any) -> bool:
        assert request.doc["mechanism"] == "SCRAM-SHA-256"
        first_bare = bytes(request.doc["payload"]).split(b",", 2)[2]  # after the gs2 header
        fields = dict(f.split(b"=", 1) for f in first_bare.split(b","))
        if fields[b"n"] != self.user.encode():
            return bool(request.replies(_auth_failed()))
        nonce = fields[b"r"] + base64.b64encode(b"server-nonce-0123")
        server_first = b"r=%s,s=%s,i=%d" % (nonce, base64.b64encode(SALT), ITERATIONS)
        with self._lock:
            self._conversations[request.client_port] = (first_bare, server_first)
        return bool(
            request.replies(ok=1, conversationId=1, done=False, payload=Binary(server_first))
        )

    def _continue(self, request: Any) -> bool:
        with self._lock:
            first_bare, server_first = self._conversations.pop(request.client_port)
        without_proof, proof = bytes(request.doc["payload"]).rsplit(b",p=", 1)
        auth_msg = b",".join((first_bare, server_first, without_proof))
        signature = _hmac(self.stored_key, auth_msg)
        client_key = bytes(a ^ b for a, b in zip(base64.b64decode(proof), signature, strict=True))
        if hashlib.sha256(client_key).digest() != self.stored_key:
            return bool(request.replies(_auth_failed()))
        verifier = b"v=" + base64.b64encode(_hmac(self.server_key, auth_msg))
        return bool(request.replies(ok=1, conversationId=1, done=True, payload=Binary(verifier)))


def _auth_failed() -> dict[str, Any]:
    return {
        "ok": 0,
        "code": 18,
        "codeName": "AuthenticationFailed",
        "errmsg": "Authentication failed.",
    }


def _scram_env(parity: Any, make_client: Any, password: str) -> Any:
    return mock_env(
        parity,
        make_client,
        lambda: Scripted(ScramServer(USER, PASSWORD).respond),
        username=USER,
        password=password,
        authMechanism="SCRAM-SHA-256",
    )


def test_scram_sha_256_conversation(parity, make_client):
    def scenario(run: MockRun) -> Any:
        doc = run.coll.find_one({})
        return doc, run.server.names(), len(_pooled(run.client))

    out = parity.check(scenario, _scram_env(parity, make_client, PASSWORD))
    assert out.value == ({"_id": "secret"}, ["saslStart", "saslContinue", "find"], 1)


def test_scram_wrong_password_fails_alike(parity, make_client):
    def scenario(run: MockRun) -> Any:
        return run.coll.find_one({})

    out = parity.check(scenario, _scram_env(parity, make_client, "wrong"))
    assert (out.error, out.message) == (
        OperationFailure,
        "Authentication failed., full error: "
        "{'ok': 0, 'code': 18, 'codeName': 'AuthenticationFailed', "
        "'errmsg': 'Authentication failed.'}",
    )


# -- client-side field level encryption ------------------------------------------------


def test_client_side_encryption_needs_pymongocrypt_alike(parity):
    kms = {"local": {"key": b"\x00" * 96}}

    def scenario(coll: Any) -> Any:
        coll.insert_one({"_id": 1})  # the green run must wait at least once
        failures = []
        for build in (
            lambda: AutoEncryptionOpts(kms, "keyvault.datakeys"),
            lambda: _client_encryption(kms, coll.database.client),
        ):
            try:
                build()
                failures.append(None)
            except ConfigurationError as exc:
                failures.append(str(exc).split(":")[0])
        return failures

    out = parity.check(scenario)
    assert out.value == [
        "client side encryption requires the pymongocrypt library",
        "client-side field level encryption requires the pymongocrypt library",
    ]


def _client_encryption(kms: dict[str, Any], client: Any) -> Any:
    from pymongo.encryption import ClientEncryption

    return ClientEncryption(kms, "keyvault.datakeys", client, CodecOptions())
