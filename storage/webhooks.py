"""Webhook deliveries as records in the job store, with the same recovery as jobs.

One hash per job (``keys.job_webhook``), created by the very script that completes the job (or
cancels it while queued), together with the first delivery message: a completed job's webhook exists
or the job is not completed. Its life:

    pending ──(a worker takes the lease)──> delivering ──> delivered
       ^                                        │     └──> failed (refused, or out of attempts)
       └──(the recovery sweep, when due)── retrying <┘

* ``delivery_id`` never changes: every POST carries it (``webhook-id``), so a receiver can drop the
  one duplicate that remains possible (a POST whose answer was lost).
* A record that says ``delivered`` or ``failed`` is final: a message that comes back later (a stalled
  worker resumes, Redis redelivers) finds it so and posts nothing.
* ``seq`` numbers the latest message on the webhook list, ``sent_at`` says when it was pushed, and
  ``next_at`` when a retry is due. Messages on the list are served in order, so the recovery sweep
  (storage/recovery.py) can tell a lost message from one still waiting; it also sends retries when
  they are due, so no delivery waits in a worker's memory.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import redis

from darkroom import broker
from darkroom.job import LogEntry
from storage import keys

# A Lua function for the scripts that complete a job (storage/jobs.py _FINISH and _CANCEL): creates
# the job's webhook record as ``pending`` and pushes its first message. ``message`` '' means no webhook.
CREATE_LUA = """
local function create_webhook(hook, pending, list, seq_key, id, message, delivery_id, now, ttl, grace)
  if message == '' then return end
  local seq = redis.call('INCR', seq_key)
  redis.call('DEL', hook)
  redis.call('HSET', hook, 'delivery_id', delivery_id, 'state', 'pending', 'attempts', 0, 'seq', seq,
    'sent_at', now, 'next_at', now, 'updated_at', now)
  redis.call('EXPIRE', hook, ttl)
  redis.call('ZADD', pending, tonumber(now) + tonumber(grace), id)
  redis.call('LPUSH', list, message)
end
"""

# KEYS: hook, lease, pending, watermark   ARGV: now, token, lease ttl ms, id
# -> {outcome, attempt, delivery_id}; outcome: go | done (final or gone) | busy (lease held) |
#    early (a retry not yet due: a stray duplicate message)
_BEGIN = """
local state = redis.call('HGET', KEYS[1], 'state')
if (not state) or state == 'delivered' or state == 'failed' then return {'done', 0, ''} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {'busy', 0, ''} end
local now = tonumber(ARGV[1])
if state == 'retrying' and tonumber(redis.call('HGET', KEYS[1], 'next_at') or '0') > now then
  return {'early', 0, ''}
end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
local attempt = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'state', 'delivering', 'updated_at', now)
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
if seq > tonumber(redis.call('GET', KEYS[4]) or '0') then redis.call('SET', KEYS[4], seq) end
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]) / 1000, ARGV[4])
return {'go', attempt, redis.call('HGET', KEYS[1], 'delivery_id')}
"""

# KEYS: hook, lease, pending, logs, events
# ARGV: now, token, outcome (delivered | retry | failed), detail, next_at, log entry, ttl, id
# -> recorded | final (already delivered or failed: nothing changes) | superseded (this attempt's lease
#    was taken over; only a success is still recorded)
_RECORD = """
local state = redis.call('HGET', KEYS[1], 'state')
local mine = redis.call('GET', KEYS[2]) == ARGV[2]
if mine then redis.call('DEL', KEYS[2]) end
if (not state) or state == 'delivered' or state == 'failed' then return 'final' end
if (not mine) and ARGV[3] ~= 'delivered' then return 'superseded' end
redis.call('RPUSH', KEYS[4], ARGV[6])
redis.call('EXPIRE', KEYS[4], ARGV[7])
redis.call('PUBLISH', KEYS[5], 'LOG')
if ARGV[3] == 'delivered' then
  redis.call('HSET', KEYS[1], 'state', 'delivered', 'delivered_at', ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[8])
elseif ARGV[3] == 'retry' then
  redis.call('HSET', KEYS[1], 'state', 'retrying', 'next_at', ARGV[5])
  redis.call('ZADD', KEYS[3], ARGV[5], ARGV[8])
else
  redis.call('HSET', KEYS[1], 'state', 'failed')
  redis.call('ZREM', KEYS[3], ARGV[8])
end
redis.call('HSET', KEYS[1], 'last_outcome', ARGV[4], 'updated_at', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[7])
return 'recorded'
"""


@dataclass(frozen=True)
class Begun:
    outcome: str  # go | done | busy | early
    attempt: int = 0
    delivery_id: str = ""


def create_args(request_id: str, webhook_url: str) -> tuple[list[str], list[str]]:
    """The keys and arguments :data:`CREATE_LUA` needs, in its order after ``hook``: pending, list,
    seq; and message, a new delivery id (both '' when the job has no webhook)."""
    if not webhook_url:
        return [keys.WEBHOOKS_PENDING, broker.WEBHOOK_QUEUE, keys.SEQUENCE], ["", ""]
    message, delivery_id = broker.webhook_message(request_id), uuid.uuid4().hex
    return [keys.WEBHOOKS_PENDING, broker.WEBHOOK_QUEUE, keys.SEQUENCE], [message, delivery_id]


class WebhookStore:
    """The webhook records of the job store (same Redis)."""

    def __init__(self, client: redis.Redis, retention_s: int) -> None:
        self.r = client
        self.retention_s = retention_s
        self._begin = client.register_script(_BEGIN)
        self._record = client.register_script(_RECORD)

    def begin(self, request_id: str, token: str, lease_ttl_s: float) -> Begun:
        """Start one delivery attempt under the lease ``token`` (see _BEGIN)."""
        script_keys = [keys.job_webhook(request_id), keys.webhook_lease(request_id), keys.WEBHOOKS_PENDING,
                       keys.started_watermark(broker.WEBHOOK_QUEUE)]
        outcome, attempt, delivery_id = self._begin(
            keys=script_keys, args=[time.time(), token, int(lease_ttl_s * 1000), request_id]
        )
        return Begun(outcome.decode(), int(attempt), delivery_id.decode() if delivery_id else "")

    def record(self, request_id: str, token: str, outcome: str, detail: str, log: LogEntry,
               next_at: float = 0.0) -> str:
        """Record an attempt's ``outcome`` (delivered | retry | failed) with its log line (see _RECORD)."""
        script_keys = [keys.job_webhook(request_id), keys.webhook_lease(request_id), keys.WEBHOOKS_PENDING,
                       keys.job_logs(request_id), keys.job_events(request_id)]
        args = [time.time(), token, outcome, detail, next_at, log.model_dump_json(), self.retention_s,
                request_id]
        return self._record(keys=script_keys, args=args).decode()

    def get(self, request_id: str) -> dict[str, str]:
        """The delivery record: delivery_id, state, attempts, last_outcome, next_at… ({} if none)."""
        raw = self.r.hgetall(keys.job_webhook(request_id))
        return {k.decode(): v.decode() for k, v in raw.items()}
