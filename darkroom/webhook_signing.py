"""Ed25519 signatures on webhook deliveries, made the way fal makes them, and the JWKS publishing the key.

The signed message is ``request_id\\nuser_id\\ntimestamp\\nsha256_hex(body)``; the signature travels hex
encoded in ``X-Fal-Webhook-Signature``. The private key comes from ``webhook_signing_key_file`` (PEM);
without one, the first process that needs a key generates it and the job store keeps it
(``JobStore.shared_signing_key``: the first offer wins), so the API (which serves the JWKS) and every
worker (which sign) share one key.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from darkroom.settings import Settings

HEADER_REQUEST_ID = "X-Fal-Webhook-Request-Id"
HEADER_USER_ID = "X-Fal-Webhook-User-Id"
HEADER_TIMESTAMP = "X-Fal-Webhook-Timestamp"
HEADER_SIGNATURE = "X-Fal-Webhook-Signature"


def signed_message(request_id: str, user_id: str, timestamp: str, body: bytes) -> bytes:
    return f"{request_id}\n{user_id}\n{timestamp}\n{hashlib.sha256(body).hexdigest()}".encode()


def signature_headers(key: Ed25519PrivateKey, request_id: str, user_id: str, body: bytes) -> dict[str, str]:
    """The four X-Fal-Webhook-* headers for one delivery of ``body``."""
    timestamp = str(int(time.time()))
    signature = key.sign(signed_message(request_id, user_id, timestamp, body)).hex()
    return {
        HEADER_REQUEST_ID: request_id,
        HEADER_USER_ID: user_id,
        HEADER_TIMESTAMP: timestamp,
        HEADER_SIGNATURE: signature,
    }


def _raw_public(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public: Ed25519PublicKey) -> str:
    """A stable kid: the first 16 hex digits of the SHA-256 of the raw public key."""
    return hashlib.sha256(_raw_public(public)).hexdigest()[:16]


def jwks(public: Ed25519PublicKey) -> dict:
    """The JSON Web Key Set (RFC 8037, OKP/Ed25519) receivers verify signatures with."""
    x = base64.urlsafe_b64encode(_raw_public(public)).rstrip(b"=").decode()
    key = {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": key_id(public), "use": "sig", "alg": "EdDSA"}
    return {"keys": [key]}


def _load_pem(pem: bytes, source: str) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{source} is not an Ed25519 private key")
    return key


def _pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_signing_key(settings: Settings, shared: Callable[[bytes], bytes]) -> Ed25519PrivateKey:
    """The configured key file, else the shared key: ``shared(pem)`` offers a freshly generated key
    and returns the one every process uses (``JobStore.shared_signing_key``)."""
    if settings.webhook_signing_key_file:
        path = settings.webhook_signing_key_file
        return _load_pem(path.read_bytes(), str(path))
    return _load_pem(shared(_pem(Ed25519PrivateKey.generate())), "the shared webhook signing key")
