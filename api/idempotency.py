"""Idempotency-Key (extension, docs/decisions.md §15): the same key and body within ``idempotency_ttl_s``
return the first submit's response (the same request); the same key with another body is a 422
(never a 409: fal clients retry 409).

The first request claims the key (``SET NX``, for ``idempotency_claim_ttl_s``) before submitting;
the script that creates the job also writes the key's final record (the response, for
``idempotency_ttl_s``), so a claimed key either created its job or made nothing. A duplicate arriving
in between gets a retryable 429 (fal clients retry it by themselves). A failed submit releases the
key; one that never finished because Redis went away leaves a claim that expires within seconds.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel

from darkroom.errors import IdempotencyKeyInUse, InvalidInput
from storage.idempotency import IdempotencyRecords, record_key
from storage.jobs import IdempotentWrite

from .deps import Services

log = logging.getLogger(__name__)

_PENDING = "pending"
_DONE = "done"
_MAX_CLAIMS = 3


def fingerprint(app_id: str, body: BaseModel) -> str:
    """What "the same body" means: the same app and the same validated input."""
    canonical = json.dumps({"app": app_id, "input": body.model_dump(mode="json")}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


Submit = Callable[[Callable[[dict[str, Any]], IdempotentWrite] | None], Awaitable[dict[str, Any]]]


async def submit_once(
    svc: Services, key: str, body_fingerprint: str, submit: Submit, owner: str = ""
) -> dict[str, Any]:
    """``submit(record)``'s response, or the stored response of the first submit made with ``key``.

    ``record(response)`` is what ``submit`` hands to the job store's create, so that the key's final
    record (``response`` with its queue position) is written with the job, in one step."""
    name = record_key(owner, key)
    records = IdempotencyRecords(svc.store.ar)
    settings = svc.settings
    for _ in range(_MAX_CLAIMS):
        claim = {"state": _PENDING, "fingerprint": body_fingerprint}
        if await records.claim(name, claim, settings.idempotency_claim_ttl_s):
            def record(response: dict[str, Any]) -> IdempotentWrite:
                done = {"state": _DONE, "fingerprint": body_fingerprint, "response": response}
                return IdempotentWrite(name, done, settings.idempotency_ttl_s)

            return await _submit_claimed(records, name, submit, record)
        stored = await records.get(name)
        if stored is not None:  # else it expired or was released meanwhile: claim again
            return _replay(stored, body_fingerprint)
    raise IdempotencyKeyInUse("a request with this Idempotency-Key is being accepted; retry shortly")


async def _submit_claimed(records: IdempotencyRecords, name: str, submit: Submit, record) -> dict:
    try:
        return await submit(record)
    except BaseException:
        try:
            await records.release(name)
        except Exception:  # Redis away: the claim expires by itself (idempotency_claim_ttl_s)
            log.warning("could not release Idempotency-Key claim %s", name)
        raise


def _replay(record: dict[str, Any], body_fingerprint: str) -> dict[str, Any]:
    if record.get("fingerprint") != body_fingerprint:
        raise InvalidInput(
            "this Idempotency-Key was already used with a different body; use a new key for a new request"
        )
    if record.get("state") != _DONE:
        raise IdempotencyKeyInUse("a request with this Idempotency-Key is being accepted; retry shortly")
    return record["response"]
