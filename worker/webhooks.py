"""Delivering a finished job's webhook. One attempt: take the delivery's lease, build the payload,
sign it, POST it, record the outcome.

Torch-free. The delivery is a record in the job store (storage/webhooks.py), created with the job's
completion; the recovery sweep sends retries when due (capped exponential backoff) and re-sends
deliveries whose message or worker was lost, so delivery is at-least-once and never lost. A delivery
recorded as ``delivered`` is never posted again. Every POST carries the delivery's stable id in a
``webhook-id`` header (the Standard Webhooks name) beside the style's own headers, so a receiver can
drop the one duplicate that remains possible: a POST whose answer never came back. Each attempt is
written to the job's logs; it never changes the job's status.

Two styles: fal's (``{request_id, gateway_request_id, status: OK|ERROR, payload, error}``, Ed25519
headers ``X-Fal-Webhook-*``) and eachlabs' (``{id, status, output, input, metrics, logs}``, header
``X-Signature`` = hex HMAC-SHA256 of the body with the job's ``webhook_secret``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import redis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from darkroom import __version__, eachlabs
from darkroom.errors import DarkroomError
from darkroom.job import JobRecord, LogEntry
from darkroom.netguard import UrlPolicy
from darkroom.outbound import guarded_client, open_url
from darkroom.outputs import UrlFor, public_result
from darkroom.settings import Settings
from darkroom.webhook_signing import load_signing_key, signature_headers
from storage.jobs import JobStore
from storage.objects import ObjectStore
from storage.webhooks import WebhookStore

log = logging.getLogger(__name__)

ANONYMOUS_USER = "anonymous"  # X-Fal-Webhook-User-Id of jobs submitted without an API key
DELIVERY_ID_HEADER = "webhook-id"  # stable across the attempts of one delivery
_RECORD_POLL_S = 0.2  # between tries to record an outcome while Redis restarts (bounded by a setting)


@dataclass(frozen=True)
class Attempt:
    delivered: bool
    retry: bool  # worth another attempt (network error, non-2xx answer; not a refused address)
    detail: str


def fal_payload(job: JobRecord, url_for: UrlFor) -> dict[str, Any]:
    """fal's webhook body: the result with fresh URLs, or the error body."""
    base = {"request_id": job.id, "gateway_request_id": job.id}
    if job.error is not None:
        error = {"detail": job.error.get("detail"), "error_type": job.error.get("error_type")}
        return {**base, "status": "ERROR", "payload": error, "error": error["detail"]}
    return {**base, "status": "OK", "payload": public_result(job.result or {}, url_for), "error": None}


def webhook_backoff_s(settings: Settings, retries_done: int, rng: random.Random | None = None) -> float:
    """Delay before attempt ``retries_done + 2``: base * 2^n, capped, less up to 10% jitter."""
    ceiling = min(settings.webhook_backoff_max_s, settings.webhook_backoff_base_s * (2**retries_done))
    return ceiling * (0.9 + 0.1 * (rng or random).random())


class WebhookSender:
    """What one process needs to deliver webhooks; the signing key is loaded on first use.

    Targets obey the outbound address rules (darkroom.netguard, allow-list ``fetch_allow_hosts``):
    checked after DNS, connection pinned to the checked address, redirects not followed (a 3xx
    counts as a failed attempt), ``webhook_timeout_s`` for the whole attempt.
    """

    def __init__(
        self, settings: Settings, store: JobStore, objects: ObjectStore, policy: UrlPolicy | None = None
    ) -> None:
        self.settings = settings
        self.store = store
        self.objects = objects
        self.policy = policy or UrlPolicy.from_settings(settings)
        self.hooks = WebhookStore(store.r, store.retention_s)
        self._key: Ed25519PrivateKey | None = None

    @property
    def signing_key(self) -> Ed25519PrivateKey:
        if self._key is None:
            self._key = load_signing_key(self.settings, self.store.shared_signing_key)
        return self._key

    def build_request(self, job: JobRecord, delivery_id: str = "") -> tuple[bytes, dict[str, str]]:
        """The exact bytes to POST and their headers (signatures are over these bytes)."""
        headers = {"Content-Type": "application/json", "User-Agent": f"darkroom-webhook/{__version__}"}
        if delivery_id:
            headers[DELIVERY_ID_HEADER] = delivery_id
        if job.webhook_style == "eachlabs":
            payload = eachlabs.webhook_body(job, self.objects.url, self.store.logs(job.id))
            body = json.dumps(payload).encode()
            if job.webhook_secret:
                digest = hmac.new(job.webhook_secret.encode(), body, hashlib.sha256).hexdigest()
                headers["X-Signature"] = digest
            return body, headers
        body = json.dumps(fal_payload(job, self.objects.url)).encode()
        headers.update(signature_headers(self.signing_key, job.id, job.owner or ANONYMOUS_USER, body))
        return body, headers

    @property
    def lease_ttl_s(self) -> float:
        """An attempt's lease outlives its POST (``webhook_timeout_s``) by the recovery grace."""
        return self.settings.webhook_timeout_s + self.settings.recovery_grace_s

    def deliver(self, request_id: str) -> Attempt | None:
        """One delivery attempt of a finished job's webhook, recorded; None when this message has
        nothing to do (delivered or given up already, another attempt running, a retry not yet due)."""
        token = uuid.uuid4().hex
        begun = self.hooks.begin(request_id, token, self.lease_ttl_s)
        if begun.outcome != "go":
            log.info("webhook of %s: %s; dropping this message", request_id, begun.outcome)
            return None
        job = self.store.get(request_id)
        if job is None or not job.webhook_url:
            outcome = Attempt(False, False, "nothing to deliver (job gone or without webhook)")
        else:
            outcome = self._post(job, begun.delivery_id)
        self._record(request_id, token, begun.attempt, outcome)
        return outcome

    def _post(self, job: JobRecord, delivery_id: str) -> Attempt:
        body, headers = self.build_request(job, delivery_id)
        deadline = time.monotonic() + self.settings.webhook_timeout_s
        try:
            with (
                guarded_client(self.settings) as client,
                open_url(client, job.webhook_url, self.policy, what="webhook", method="POST", max_redirects=0,
                         deadline=deadline, content=body, headers=headers) as resp,
            ):
                code = resp.status_code
        except DarkroomError as exc:  # refused address, bad name or certificate: final; unreachable: retried
            return Attempt(False, exc.retryable, exc.detail)
        except httpx.HTTPError as exc:
            return Attempt(False, True, f"{type(exc).__name__}: {exc}")
        return Attempt(200 <= code < 300, not 200 <= code < 300, f"HTTP {code}")

    def _record(self, request_id: str, token: str, attempt: int, outcome: Attempt) -> None:
        limit = self.settings.webhook_max_attempts
        next_at = 0.0
        if outcome.delivered:
            state, level, verdict = "delivered", "INFO", "delivered"
        elif outcome.retry and attempt < limit:
            state, level, verdict = "retry", "WARN", "failed, will retry"
            next_at = time.time() + webhook_backoff_s(self.settings, attempt - 1)
        else:
            state, level, verdict = "failed", "ERROR", "failed, giving up"
        entry = LogEntry.now(f"webhook attempt {attempt}/{limit} {verdict}: {outcome.detail}", level)
        recorded = self._record_patiently(request_id, token, state, outcome.detail, entry, next_at)
        log.info("job %s: webhook attempt %d %s (%s; %s)", request_id, attempt, verdict, outcome.detail,
                 recorded)

    def _record_patiently(self, request_id: str, token: str, state: str, detail: str, entry: LogEntry,
                          next_at: float) -> str:
        """Record the outcome, retrying while Redis is away (a restart takes about a second) for up to
        ``webhook_timeout_s``: an unrecorded success would be posted again once the lease lapses."""
        deadline = time.monotonic() + self.settings.webhook_timeout_s
        while True:
            try:
                return self.hooks.record(request_id, token, state, detail, entry, next_at)
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(_RECORD_POLL_S)
