"""Idempotency-Key (extension, decisions §15): the same key and body within ``idempotency_ttl_s``
return the first submit's response (the same request); the same key with another body is a 422
(never a 409: fal clients retry 409).

The first request claims the key (``SET NX``) before submitting and stores its response after; a
duplicate arriving in between gets a retryable 429 (fal clients retry it by themselves). A failed
submit releases the key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel

from darkroom.errors import IdempotencyKeyInUse, InvalidInput
from storage import keys

from .deps import Services

_PENDING = "pending"
_DONE = "done"
_MAX_CLAIMS = 3


def fingerprint(app_id: str, body: BaseModel) -> str:
    """What "the same body" means: the same app and the same validated input."""
    canonical = json.dumps({"app": app_id, "input": body.model_dump(mode="json")}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def submit_once(
    svc: Services,
    key: str,
    body_fingerprint: str,
    submit: Callable[[], Awaitable[dict[str, Any]]],
    owner: str = "",
) -> dict[str, Any]:
    """``submit()``'s response, or the stored response of the first submit made with ``key``."""
    redis_key = keys.idempotency(owner, hashlib.sha256(key.encode()).hexdigest())
    for _ in range(_MAX_CLAIMS):
        claim = json.dumps({"state": _PENDING, "fingerprint": body_fingerprint})
        if await svc.store.ar.set(redis_key, claim, nx=True, ex=svc.settings.idempotency_ttl_s):
            return await _submit_claimed(svc, redis_key, body_fingerprint, submit)
        raw = await svc.store.ar.get(redis_key)
        if raw is not None:  # else it expired or was released meanwhile: claim again
            return _replay(json.loads(raw), body_fingerprint)
    raise IdempotencyKeyInUse("a request with this Idempotency-Key is being accepted; retry shortly")


async def _submit_claimed(svc: Services, redis_key: str, body_fingerprint: str, submit: Callable) -> dict:
    try:
        response = await submit()
    except BaseException:
        await svc.store.ar.delete(redis_key)
        raise
    record = {"state": _DONE, "fingerprint": body_fingerprint, "response": response}
    await svc.store.ar.set(redis_key, json.dumps(record), xx=True, keepttl=True)
    return response


def _replay(record: dict[str, Any], body_fingerprint: str) -> dict[str, Any]:
    if record.get("fingerprint") != body_fingerprint:
        raise InvalidInput(
            "this Idempotency-Key was already used with a different body; use a new key for a new request"
        )
    if record.get("state") != _DONE:
        raise IdempotencyKeyInUse("a request with this Idempotency-Key is being accepted; retry shortly")
    return record["response"]
