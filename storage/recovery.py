"""Finding work whose message or worker was lost, from the records alone, in seconds.

Celery with Redis loses or strands a message in a few ways: kombu pops a message before it records
it as unacknowledged (a worker killed in between loses it, and so does a connection that drops with
the reply in flight); a task that raises on a connection error is rejected without requeue; and the
messages of a dead or stopped worker come back only after the visibility timeout (an hour). Instead
of waiting on any of that, the records say what must be running:

* **Running jobs** hold a lease (``keys.job_lease``) that their worker's heartbeat renews, and a
  retry that waits holds one for its delay. A job ``IN_PROGRESS`` whose lease lapsed lost its worker.
* **Queued jobs and webhook messages** wait on a broker list that workers serve in order. Starting
  one records its sequence number as the list's watermark (``keys.started_watermark``), so a record
  still waiting whose number is below it, or whose list is empty, lost its message.
* **Webhooks** (storage/webhooks.py) whose attempt lost its lease lost their worker; those waiting to
  retry are due at ``next_at``.

Each check waits ``grace`` since the record's last message, so one just popped has time to start;
a re-sent message goes to the front of its list, as the oldest work there. A duplicate is harmless:
starting a job or a delivery is guarded by the records, and work already running or done is dropped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import redis

from darkroom import broker
from storage import keys

# KEYS: queued zset, broker list, its watermark   ARGV: now, grace, limit, job key prefix
# -> ids of IN_QUEUE jobs whose message was lost (marked touched now)
_LOST_QUEUED = """
local now, grace = tonumber(ARGV[1]), tonumber(ARGV[2])
local ids
if redis.call('LLEN', KEYS[2]) == 0 then
  ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[3]) - 1)
else
  local wm = redis.call('GET', KEYS[3]) or '0'
  ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. wm, 'LIMIT', 0, ARGV[3])
end
local out = {}
for _, id in ipairs(ids) do
  local job = ARGV[4] .. id
  local status, touched, created = unpack(redis.call('HMGET', job, 'status', 'touched_at', 'created_at'))
  if status ~= 'IN_QUEUE' then
    redis.call('ZREM', KEYS[1], id)
  elseif tonumber(touched or created or '0') <= now - grace then
    redis.call('HSET', job, 'touched_at', now)
    out[#out + 1] = id
  end
end
return out
"""

# KEYS: running zset   ARGV: now, grace, limit, job key prefix, lease key prefix
# -> {id, priority, ...} of IN_PROGRESS jobs nobody holds a lease on (marked touched now)
_LOST_RUNNING = """
local now, grace = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[3]) - 1)) do
  if redis.call('EXISTS', ARGV[5] .. id) == 0 then
    local job = ARGV[4] .. id
    local status, touched, priority = unpack(redis.call('HMGET', job, 'status', 'touched_at', 'priority'))
    if status ~= 'IN_PROGRESS' then
      redis.call('ZREM', KEYS[1], id)
    elseif tonumber(touched or '0') <= now - grace then
      redis.call('HSET', job, 'touched_at', now)
      out[#out + 1] = id
      out[#out + 1] = priority or 'normal'
    end
  end
end
return out
"""

# KEYS: pending webhooks, webhook list, its watermark, seq
# ARGV: now, grace, limit, job key prefix, webhook key suffix, webhook lease prefix
# -> {id, 'back' | 'front', ...}: a due retry goes to the back of the list with a new number, a lost
#    message (or an attempt whose worker died) to the front with its old one.
_WEBHOOKS = """
local now, grace = tonumber(ARGV[1]), tonumber(ARGV[2])
local wm = tonumber(redis.call('GET', KEYS[3]) or '0')
local empty = redis.call('LLEN', KEYS[2]) == 0
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, ARGV[3])) do
  local hook = ARGV[4] .. id .. ARGV[5]
  local state, sent_at, seq = unpack(redis.call('HMGET', hook, 'state', 'sent_at', 'seq'))
  if (not state) or state == 'delivered' or state == 'failed' then
    redis.call('ZREM', KEYS[1], id)
  else
    local send = false
    if redis.call('EXISTS', ARGV[6] .. id) == 1 then
      send = false
    elseif state == 'retrying' then
      send = 'back'
      redis.call('HSET', hook, 'seq', redis.call('INCR', KEYS[4]))
    elseif state == 'delivering' then
      send = 'front'
    elseif tonumber(sent_at or '0') <= now - grace and (tonumber(seq or '0') < wm or empty) then
      send = 'front'
    end
    if send then
      redis.call('HSET', hook, 'state', 'pending', 'sent_at', now)
      out[#out + 1] = id
      out[#out + 1] = send
    end
    redis.call('ZADD', KEYS[1], now + grace, id)
  end
end
return out
"""


@dataclass
class Resent:
    """What one sweep sent again (request ids)."""

    queued: list[str] = field(default_factory=list)  # message lost before the job started
    running: list[str] = field(default_factory=list)  # worker died or stalled past its lease
    webhooks: list[str] = field(default_factory=list)  # lost message or dead attempt
    webhook_retries: list[str] = field(default_factory=list)  # due retries


class Recovery:
    """One sweep over the records; see the module docstring."""

    def __init__(self, client: redis.Redis, grace_s: float, limit: int = 500) -> None:
        self.r = client
        self.grace_s = grace_s
        self.limit = limit
        self._lost_queued = client.register_script(_LOST_QUEUED)
        self._lost_running = client.register_script(_LOST_RUNNING)
        self._webhooks = client.register_script(_WEBHOOKS)

    def take_turn(self, interval_s: float) -> bool:
        """True for one caller per ``interval_s`` across all workers (a lock that lapses by itself,
        so a dead worker's turn passes to another)."""
        return bool(self.r.set(keys.RECOVERY_LOCK, "1", nx=True, px=int(interval_s * 1000)))

    def sweep(self, app_ids: list[str]) -> Resent:
        """Find lost work, mark it (so the next sweep within ``grace`` leaves it alone) and send its
        messages again. If this process dies before pushing, the marks lapse and a later sweep sends."""
        now = time.time()
        out = Resent()
        messages: list[tuple[str, str, bool]] = []  # (list, message, front)
        for app_id in app_ids:
            for priority in broker.PRIORITY:
                lst = broker.queue_key(priority)
                found = self._lost_queued(
                    keys=[keys.queued(app_id, priority), lst, keys.started_watermark(lst)],
                    args=[now, self.grace_s, self.limit, keys.job("")],
                )
                for rid in (r.decode() for r in found):
                    out.queued.append(rid)
                    messages.append((lst, broker.job_message(rid, priority), True))
        found = self._lost_running(keys=[keys.RUNNING],
                                   args=[now, self.grace_s, self.limit, keys.job(""), keys.job_lease("")])
        for rid, priority in _pairs(found):
            out.running.append(rid)
            messages.append((broker.queue_key(priority), broker.job_message(rid, priority), True))
        found = self._webhooks(
            keys=[keys.WEBHOOKS_PENDING, broker.WEBHOOK_QUEUE, keys.started_watermark(broker.WEBHOOK_QUEUE),
                  keys.SEQUENCE],
            args=[now, self.grace_s, self.limit, keys.job(""), keys.JOB_WEBHOOK_SUFFIX,
                  keys.webhook_lease("")],
        )
        for rid, where in _pairs(found):
            (out.webhooks if where == "front" else out.webhook_retries).append(rid)
            messages.append((broker.WEBHOOK_QUEUE, broker.webhook_message(rid), where == "front"))
        if messages:
            pipe = self.r.pipeline(transaction=False)
            for lst, message, front in messages:
                broker.push(pipe, lst, message, front)
            pipe.execute()
        return out


def _pairs(flat: list[bytes]) -> list[tuple[str, str]]:
    return [(flat[i].decode(), flat[i + 1].decode()) for i in range(0, len(flat), 2)]
