"""Idempotency-Key records (the API's policy is api/idempotency.py): one JSON value per owner and
key, claimed with ``SET NX`` for a short time and overwritten with the final record by the job store's
create script (``storage.jobs.IdempotentWrite``). Async: they sit on the API's submit path."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import redis.asyncio as aioredis

from storage import keys


def record_key(owner: str, key: str) -> str:
    """The Redis key of an Idempotency-Key (hashed, per owner)."""
    return keys.idempotency(owner, hashlib.sha256(key.encode()).hexdigest())


class IdempotencyRecords:
    def __init__(self, client: aioredis.Redis) -> None:
        self.r = client

    async def claim(self, name: str, record: dict[str, Any], ttl_s: int) -> bool:
        """Store ``record`` under ``name`` for ``ttl_s`` unless something is there already."""
        return bool(await self.r.set(name, json.dumps(record), nx=True, ex=ttl_s))

    async def get(self, name: str) -> dict[str, Any] | None:
        raw = await self.r.get(name)
        return None if raw is None else json.loads(raw)

    async def release(self, name: str) -> None:
        await self.r.delete(name)
