"""Delivering a finished job's webhook. One attempt: build the payload, sign it, POST it, record it.

Torch-free. The Celery task (worker/webhook_task.py) retries failed attempts with backoff, so delivery
is at-least-once; it never changes the job's status. Each attempt is written to the job's logs and to
a small Redis hash (``storage.keys.job_webhook``).

Two styles: fal's (``{request_id, gateway_request_id, status: OK|ERROR, payload, error}``, Ed25519
headers ``X-Fal-Webhook-*``) and eachlabs' (``{id, status, output, input, metrics}``, header
``X-Signature`` = hex HMAC-SHA256 of the body with the job's ``webhook_secret``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from darkroom import __version__, eachlabs
from darkroom.errors import DarkroomError
from darkroom.job import JobRecord
from darkroom.netguard import UrlPolicy
from darkroom.outbound import guarded_client, open_url
from darkroom.outputs import UrlFor, public_result
from darkroom.settings import Settings
from darkroom.status import JobStatus
from darkroom.webhook_signing import load_signing_key, signature_headers
from storage import keys
from storage.jobs import JobStore
from storage.objects import ObjectStore

log = logging.getLogger(__name__)

ANONYMOUS_USER = "anonymous"  # X-Fal-Webhook-User-Id of jobs submitted without an API key


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
        self._key: Ed25519PrivateKey | None = None

    @property
    def signing_key(self) -> Ed25519PrivateKey:
        if self._key is None:
            self._key = load_signing_key(self.settings, self.store.r)
        return self._key

    def build_request(self, job: JobRecord) -> tuple[bytes, dict[str, str]]:
        """The exact bytes to POST and their headers (signatures are over these bytes)."""
        headers = {"Content-Type": "application/json", "User-Agent": f"darkroom-webhook/{__version__}"}
        if job.webhook_style == "eachlabs":
            body = json.dumps(eachlabs.webhook_body(job, self.objects.url)).encode()
            if job.webhook_secret:
                digest = hmac.new(job.webhook_secret.encode(), body, hashlib.sha256).hexdigest()
                headers["X-Signature"] = digest
            return body, headers
        body = json.dumps(fal_payload(job, self.objects.url)).encode()
        headers.update(signature_headers(self.signing_key, job.id, job.owner or ANONYMOUS_USER, body))
        return body, headers

    def deliver(self, request_id: str, attempt: int) -> Attempt:
        """One delivery attempt of a completed job's webhook, recorded."""
        job = self.store.get(request_id)
        if job is None or not job.webhook_url or job.status is not JobStatus.COMPLETED:
            return Attempt(False, False, "nothing to deliver (job gone, unfinished or without webhook)")
        outcome = self._post(job)
        self._record(job, attempt, outcome)
        return outcome

    def _post(self, job: JobRecord) -> Attempt:
        body, headers = self.build_request(job)
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

    def _record(self, job: JobRecord, attempt: int, outcome: Attempt) -> None:
        limit = self.settings.webhook_max_attempts
        if outcome.delivered:
            state, level, verdict = "delivered", "INFO", "delivered"
        elif outcome.retry and attempt < limit:
            state, level, verdict = "retrying", "WARN", "failed, will retry"
        else:
            state, level, verdict = "failed", "ERROR", "failed, giving up"
        self.store.add_log(job.id, f"webhook attempt {attempt}/{limit} {verdict}: {outcome.detail}", level)
        key = keys.job_webhook(job.id)  # written after the log line: once it says so, the log is there
        pipe = self.store.r.pipeline()
        pipe.hset(key, mapping={
            "state": state, "attempts": attempt, "last_outcome": outcome.detail, "updated_at": time.time(),
        })
        pipe.expire(key, self.store.retention_s)
        pipe.execute()
        log.info("job %s: webhook attempt %d %s (%s)", job.id, attempt, verdict, outcome.detail)


def delivery_record(store: JobStore, request_id: str) -> dict[str, str]:
    """The recorded webhook state of a job: state, attempts, last_outcome, updated_at ({} if none)."""
    raw = store.r.hgetall(keys.job_webhook(request_id))
    return {k.decode(): v.decode() for k, v in raw.items()}
