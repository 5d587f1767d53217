"""Every Redis key and channel name Darkroom uses, in one place."""

from __future__ import annotations

PREFIX = "darkroom"

SEQUENCE = f"{PREFIX}:seq"  # submit order, for queue positions
JOBS_INDEX = f"{PREFIX}:jobs"  # zset id -> created_at, for operators
RUNNING = f"{PREFIX}:running"  # zset id -> time of its latest start, while IN_PROGRESS
RECOVERY_LOCK = f"{PREFIX}:recovery-lock"  # one recovery sweep at a time across workers
WEBHOOKS_PENDING = f"{PREFIX}:webhooks:pending"  # zset id -> when the recovery sweep looks at it next


def job(request_id: str) -> str:
    return f"{PREFIX}:job:{request_id}"


def job_logs(request_id: str) -> str:
    return f"{PREFIX}:job:{request_id}:logs"


def job_lease(request_id: str) -> str:
    """Held (with a TTL, refreshed by the worker's heartbeat) while a worker runs the job."""
    return f"{PREFIX}:lease:{request_id}"


def webhook_lease(request_id: str) -> str:
    """Held (with a TTL longer than one delivery attempt) while a worker posts the job's webhook."""
    return f"{PREFIX}:lease:webhook:{request_id}"


def started_watermark(broker_list: str) -> str:
    """The highest sequence number started from one broker list (messages there are served in order,
    so a record still waiting with a lower number lost its message)."""
    return f"{PREFIX}:started-seq:{broker_list}"


def job_events(request_id: str) -> str:
    """Pub/sub channel announcing every change of one job."""
    return f"{PREFIX}:events:{request_id}"


def queued(app_id: str, priority: str) -> str:
    """Sorted set (score = submit sequence) of the app's jobs still IN_QUEUE at ``priority``."""
    return f"{PREFIX}:queued:{app_id}:{priority}"


def heartbeat(worker_name: str) -> str:
    return f"{PREFIX}:heartbeat:{worker_name}"


JOB_WEBHOOK_SUFFIX = ":webhook"  # Lua scripts build webhook keys from job keys with it


def job_webhook(request_id: str) -> str:
    """Hash of one job's webhook delivery: delivery_id, state, attempts, next_at, seq, last_outcome…
    (storage/webhooks.py)."""
    return f"{PREFIX}:job:{request_id}{JOB_WEBHOOK_SUFFIX}"


def idempotency(owner: str, key_digest: str) -> str:
    """What an Idempotency-Key (sha256 of it, per owner) created: body fingerprint and submit response."""
    return f"{PREFIX}:idempotency:{owner}:{key_digest}"


# PEM of the Ed25519 key that signs webhooks when no key file is configured; generated once (SET NX)
# by whichever process needs it first and shared by the API (JWKS) and every worker. No TTL.
WEBHOOK_SIGNING_KEY = f"{PREFIX}:webhook-signing-key"


API_KEYS = f"{PREFIX}:apikeys"  # set of every API key id ever created (revoked ones included). No TTL.


def api_key(key_id: str) -> str:
    """Hash of one API key: sha256 of the key, name, created_at, revoked_at. No TTL."""
    return f"{PREFIX}:apikey:{key_id}"


def rate_limit(key_id: str) -> str:
    """Token bucket of one API key (tokens, last refill time); expires once the bucket is full again."""
    return f"{PREFIX}:ratelimit:{key_id}"


def recipe(owner: str, name: str) -> str:
    """A hash of one owner's recipe: ``latest`` (its version) and ``v<N>`` (each version's JSON)."""
    return f"{PREFIX}:recipe:{owner or '-'}:{name}"


def recipe_index(owner: str) -> str:
    """The set of one owner's recipe names."""
    return f"{PREFIX}:recipes:{owner or '-'}"


def recipe_versions(owner: str, name: str) -> str:
    """The last version number given to one owner's recipe name (kept when the recipe is deleted)."""
    return f"{PREFIX}:recipe-versions:{owner or '-'}:{name}"
