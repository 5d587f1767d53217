"""API keys (docs/decisions.md §17): created by the CLI, stored in Redis only as hashes, revocable.

A key reads ``dk_<key id>:<secret>``: the id (``dk_`` + 16 hex digits) is public — it names the
key in ``darkroom keys list``, in logs and as the owner of jobs — and the secret is 32 random bytes
(256 bits, URL-safe base64). The whole key is what clients send (``Authorization: Key <key>``); as
it already has fal's ``key_id:key_secret`` shape it works as ``FAL_KEY`` unchanged (fal clients
send ``FAL_KEY`` verbatim, or join ``FAL_KEY_ID`` and ``FAL_KEY_SECRET`` with ``:`` — the same
string).

Only ``sha256(key)`` is stored. A fast hash is the right tool here: slow password hashes (bcrypt,
argon2) exist to make guessing *low-entropy* passwords from a stolen hash expensive, but a 256-bit
random secret cannot be guessed whatever the hash costs, and a fast hash keeps authentication at one
Redis read plus microseconds of CPU per request. Hashes are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

import redis
import redis.asyncio as aioredis

from storage import keys

KEY_ID_PREFIX = "dk_"
_KEY_RE = re.compile(r"(dk_[0-9a-f]{16}):([A-Za-z0-9_-]{20,100})")


@dataclass(frozen=True)
class ApiKeyInfo:
    key_id: str
    name: str
    created_at: float
    revoked_at: float | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


def new_key() -> tuple[str, str]:
    """A fresh ``(key_id, key)``."""
    key_id = KEY_ID_PREFIX + secrets.token_hex(8)
    return key_id, f"{key_id}:{secrets.token_urlsafe(32)}"


def key_id_of(key: str) -> str | None:
    """The id part of a well-formed key, else None."""
    match = _KEY_RE.fullmatch(key.strip())
    return match.group(1) if match else None


def digest(key: str) -> str:
    return hashlib.sha256(key.strip().encode()).hexdigest()


class ApiKeyStore:
    def __init__(self, client: redis.Redis, async_client: aioredis.Redis | None = None) -> None:
        self.r = client
        self.ar = async_client  # for verify_async (the API's event loop)

    def create(self, name: str = "") -> tuple[ApiKeyInfo, str]:
        """Store a new key; returns its info and the key itself (shown once, never stored)."""
        key_id, key = new_key()
        info = ApiKeyInfo(key_id, name, time.time())
        pipe = self.r.pipeline()
        record = {"hash": digest(key), "name": name, "created_at": info.created_at}
        pipe.hset(keys.api_key(key_id), mapping=record)
        pipe.sadd(keys.API_KEYS, key_id)
        pipe.execute()
        return info, key

    def get(self, key_id: str) -> ApiKeyInfo | None:
        data = {k.decode(): v.decode() for k, v in self.r.hgetall(keys.api_key(key_id)).items()}
        return _info(key_id, data) if data else None

    def all(self) -> list[ApiKeyInfo]:
        ids = sorted(x.decode() for x in self.r.smembers(keys.API_KEYS))
        found = (self.get(key_id) for key_id in ids)
        return sorted((i for i in found if i), key=lambda i: i.created_at)

    def revoke(self, key_id: str) -> ApiKeyInfo | None:
        """Mark a key revoked (kept for ``list``); None when there is no such key."""
        info = self.get(key_id)
        if info is None:
            return None
        if not info.revoked:
            self.r.hset(keys.api_key(key_id), "revoked_at", time.time())
        return self.get(key_id)

    def verify(self, key: str) -> tuple[ApiKeyInfo | None, str]:
        """``(info, "")`` for a valid key, else ``(None, why)``; why is safe to show the caller."""
        key_id = key_id_of(key)
        if key_id is None:
            return None, "malformed API key"
        return _verified(key_id, key, self.r.hgetall(keys.api_key(key_id)))

    async def verify_async(self, key: str) -> tuple[ApiKeyInfo | None, str]:
        """:meth:`verify` over the asyncio client."""
        if self.ar is None:
            raise RuntimeError("this ApiKeyStore was built without an asyncio client")
        key_id = key_id_of(key)
        if key_id is None:
            return None, "malformed API key"
        return _verified(key_id, key, await self.ar.hgetall(keys.api_key(key_id)))


def _verified(key_id: str, key: str, stored: dict[bytes, bytes]) -> tuple[ApiKeyInfo | None, str]:
    """:meth:`ApiKeyStore.verify`'s answer, given the key's stored hash (empty: no such key)."""
    data = {k.decode(): v.decode() for k, v in stored.items()}
    if not data or not hmac.compare_digest(data.get("hash", ""), digest(key)):
        return None, "unknown API key"
    info = _info(key_id, data)
    if info.revoked:
        return None, "this API key has been revoked"
    return info, ""


def _info(key_id: str, data: dict[str, str]) -> ApiKeyInfo:
    revoked = data.get("revoked_at")
    return ApiKeyInfo(key_id, data.get("name", ""), float(data.get("created_at", 0)),
                      float(revoked) if revoked else None)
