"""The Redis job store: job records, forward-only transitions, queue positions, logs and events.

Every transition is one Lua script, so it is atomic: a job goes IN_QUEUE -> IN_PROGRESS -> COMPLETED
and never back, and only the first completion wins (a late duplicate finds the job done). Each change
is published on the job's channel for status streams. The one way back is an operator's: ``requeue``
turns a job that completed with an error into a fresh queued one (``darkroom jobs requeue``).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

import redis
import redis.asyncio as aioredis

from darkroom import broker
from darkroom.errors import QueueFull, RequestCancelled, ServiceUnavailable
from darkroom.job import JobRecord, LogEntry
from darkroom.settings import Settings
from storage import keys, webhooks

log = logging.getLogger(__name__)

# KEYS: job, queued(normal), queued(low), seq, index, broker queue[, idempotency key]
# ARGV: ttl, max_len, priority, created, id, broker message ('' for none), fields (a JSON object of
# strings: one argument packs and unpacks faster than two per field)[, idempotency record, its ttl]
# The job's broker message is pushed in the same script: a job is stored and enqueued, or neither.
# With an idempotency key, the key's record (its response's queue_position filled in here) is written
# in the same step too: a claimed key either made no job (and its short claim expires) or maps to it.
_CREATE = """
local max_len = tonumber(ARGV[2])
if max_len > 0 and (redis.call('ZCARD', KEYS[2]) + redis.call('ZCARD', KEYS[3])) >= max_len then
  return -1
end
local id = ARGV[5]
local seq = redis.call('INCR', KEYS[4])
local flat = {'seq', seq, 'id', id}
for name, value in pairs(cjson.decode(ARGV[7])) do
  flat[#flat + 1] = name
  flat[#flat + 1] = value
end
redis.call('HSET', KEYS[1], unpack(flat))
redis.call('EXPIRE', KEYS[1], ARGV[1])
local mine = KEYS[2]
if ARGV[3] == 'low' then mine = KEYS[3] end
redis.call('ZADD', mine, seq, id)
redis.call('ZADD', KEYS[5], ARGV[4], id)
if ARGV[6] ~= '' then redis.call('LPUSH', KEYS[6], ARGV[6]) end
local pos
if ARGV[3] == 'low' then
  pos = redis.call('ZCARD', KEYS[2]) + redis.call('ZRANK', KEYS[3], id)
else
  pos = redis.call('ZRANK', KEYS[2], id)
end
if KEYS[7] then
  local record = cjson.decode(ARGV[8])
  record['response']['queue_position'] = pos
  redis.call('SET', KEYS[7], cjson.encode(record), 'EX', ARGV[9])
end
return pos
"""

# KEYS: job, queued(normal), queued(low), events, lease, running, logs, started watermark of its list
# ARGV: now, id, worker, lease ttl ms, log entry (JSON with a %d for the attempt number), logs ttl
# -> {outcome, attempts, crashes}; outcome:
#   missing | completed   nothing to do
#   started               first start (IN_QUEUE -> IN_PROGRESS)
#   retry                 a scheduled retry of an attempt that failed transiently
#   busy                  a duplicate delivery while a live worker holds the job's lease
#   crashed               redelivered while nobody holds the lease: the last attempt died
# The body is a Lua function shared with _BEGIN (K and A are _START's KEYS and ARGV).
_START_JOB = """
local function start_job(K, A)
  local status = redis.call('HGET', K[1], 'status')
  if not status then return {'missing', 0, 0} end
  if status == 'COMPLETED' then return {'completed', 0, 0} end
  local outcome = 'started'
  if status == 'IN_PROGRESS' then
    if redis.call('HGET', K[1], 'retry_pending') == '1' then
      outcome = 'retry'
      redis.call('HDEL', K[1], 'retry_pending')
    elseif redis.call('EXISTS', K[5]) == 1 then
      return {'busy', 0, 0}
    else
      outcome = 'crashed'
      redis.call('HINCRBY', K[1], 'crashes', 1)
    end
  end
  redis.call('SET', K[5], A[3], 'PX', A[4])
  redis.call('ZREM', K[2], A[2])
  redis.call('ZREM', K[3], A[2])
  local attempts = redis.call('HINCRBY', K[1], 'attempts', 1)
  redis.call('HSET', K[1], 'worker', A[3], 'touched_at', A[1])
  redis.call('ZADD', K[6], A[1], A[2])
  if outcome == 'started' then
    redis.call('HSET', K[1], 'status', 'IN_PROGRESS', 'started_at', A[1])
    redis.call('PUBLISH', K[4], 'IN_PROGRESS')
    local seq = tonumber(redis.call('HGET', K[1], 'seq') or '0')
    if seq > tonumber(redis.call('GET', K[8]) or '0') then redis.call('SET', K[8], seq) end
  end
  if outcome ~= 'crashed' then  -- after a crash the worker first decides whether to run it at all
    redis.call('RPUSH', K[7], string.format(A[5], attempts))
    redis.call('EXPIRE', K[7], A[6])
    redis.call('PUBLISH', K[4], 'LOG')
  end
  return {outcome, attempts, tonumber(redis.call('HGET', K[1], 'crashes') or '0')}
end
"""

_START = _START_JOB + "return start_job(KEYS, ARGV)"

# The worker's first step in one round trip: read the job's record and start its attempt (_START).
# KEYS: job, events, lease, running, logs   ARGV: as _START's, then the queued keys' text around the
# app id (before, after: normal; before, after: low) and the started watermarks (normal, low): those
# keys depend on the record's app and priority, so the script builds them (storage/keys.py spells them).
# -> {outcome, attempts, crashes, the record as read before the start (flat field/value list)}
_BEGIN = _START_JOB + """
local record = redis.call('HGETALL', KEYS[1])
if #record == 0 then return {'missing', 0, 0, record} end
local app, low = '', false
for i = 1, #record, 2 do
  if record[i] == 'app_id' then app = record[i + 1] end
  if record[i] == 'priority' then low = record[i + 1] == 'low' end
end
local queued_normal = ARGV[7] .. app .. ARGV[8]
local queued_low = ARGV[9] .. app .. ARGV[10]
local watermark = ARGV[11]
if low then watermark = ARGV[12] end
local started = start_job({KEYS[1], queued_normal, queued_low, KEYS[2], KEYS[3], KEYS[4], KEYS[5], watermark},
  ARGV)
started[4] = record
return started
"""

# KEYS: job, queued(normal), queued(low), events, running, logs, lease, webhook, pending webhooks,
#       webhook list, seq
# ARGV: now, ttl, id, field, json, metrics, log entry ('' for none), worker ('': keep the lease),
#       webhook message ('' for none), delivery id, recovery grace
# -> {1, started_at} for the first completion, {0, false} when the job was done (or gone) already,
#    {-1, false} when another worker holds the job's lease (this attempt was taken over: no change).
# The worker's lease goes in the same step (when it holds it), and the log entry is in the list
# before COMPLETED is published, so a stream that stops at COMPLETED has read it. The job's webhook
# record and its first message are created in the same step too.
_FINISH = webhooks.CREATE_LUA + """
local holder = redis.call('GET', KEYS[7])
if ARGV[8] ~= '' and holder and holder ~= ARGV[8] then return {-1, false} end
redis.call('ZREM', KEYS[5], ARGV[3])
if ARGV[8] ~= '' and holder == ARGV[8] then redis.call('DEL', KEYS[7]) end
local status = redis.call('HGET', KEYS[1], 'status')
if (not status) or status == 'COMPLETED' then return {0, false} end
if ARGV[7] ~= '' then redis.call('RPUSH', KEYS[6], ARGV[7]) end
redis.call('HSET', KEYS[1], 'status', 'COMPLETED', 'completed_at', ARGV[1],
  ARGV[4], ARGV[5], 'metrics', ARGV[6])
redis.call('ZREM', KEYS[2], ARGV[3])
redis.call('ZREM', KEYS[3], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[6], ARGV[2])
create_webhook(KEYS[8], KEYS[9], KEYS[10], KEYS[11], ARGV[3], ARGV[9], ARGV[10], ARGV[1], ARGV[2], ARGV[11])
redis.call('PUBLISH', KEYS[4], 'COMPLETED')
return {1, redis.call('HGET', KEYS[1], 'started_at')}
"""

# KEYS: job, queued(normal), queued(low), events, webhook, pending webhooks, webhook list, seq
# ARGV: now, ttl, id, error json, webhook message ('' for none), delivery id, recovery grace
# -> NOT_FOUND | ALREADY_COMPLETED | QUEUED (now COMPLETED as cancelled) | RUNNING (flag set)
_CANCEL = webhooks.CREATE_LUA + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'NOT_FOUND' end
if status == 'COMPLETED' then return 'ALREADY_COMPLETED' end
redis.call('HSET', KEYS[1], 'cancel_requested', '1')
if status == 'IN_PROGRESS' then
  redis.call('PUBLISH', KEYS[4], 'CANCEL')
  return 'RUNNING'
end
redis.call('HSET', KEYS[1], 'status', 'COMPLETED', 'completed_at', ARGV[1], 'error', ARGV[4])
redis.call('ZREM', KEYS[2], ARGV[3])
redis.call('ZREM', KEYS[3], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[2])
create_webhook(KEYS[5], KEYS[6], KEYS[7], KEYS[8], ARGV[3], ARGV[5], ARGV[6], ARGV[1], ARGV[2], ARGV[7])
redis.call('PUBLISH', KEYS[4], 'COMPLETED')
return 'QUEUED'
"""

# KEYS: job, queued(normal), queued(low), seq, events, broker queue   ARGV: now, ttl, id, broker message
# -> NOT_FOUND | NOT_FINISHED | SUCCEEDED (refused) | REQUEUED
# The one way back: a job that COMPLETED with an error becomes a fresh IN_QUEUE job (same id and
# input), behind everything queued. The outcome and everything about earlier attempts go (error,
# result, metrics, timestamps, worker, attempts, crashes, cancel and retry flags, the request
# timeout's deadline); created_at stays, requeued_at and requeues record the requeue.
_REQUEUE = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'NOT_FOUND' end
if status ~= 'COMPLETED' then return 'NOT_FINISHED' end
if redis.call('HEXISTS', KEYS[1], 'error') == 0 then return 'SUCCEEDED' end
redis.call('HDEL', KEYS[1], 'error', 'result', 'metrics', 'started_at', 'completed_at', 'worker',
  'cancel_requested', 'retry_pending', 'deadline_at')
local seq = redis.call('INCR', KEYS[4])
redis.call('HSET', KEYS[1], 'status', 'IN_QUEUE', 'seq', seq, 'attempts', 0, 'crashes', 0,
  'requeued_at', ARGV[1], 'touched_at', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'requeues', 1)
redis.call('EXPIRE', KEYS[1], ARGV[2])
local queue = KEYS[2]
if redis.call('HGET', KEYS[1], 'priority') == 'low' then queue = KEYS[3] end
redis.call('ZADD', queue, seq, ARGV[3])
redis.call('LPUSH', KEYS[6], ARGV[4])
redis.call('PUBLISH', KEYS[5], 'IN_QUEUE')
return 'REQUEUED'
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: job, lease   ARGV: now, worker, lease ttl ms (the retry delay and a lease's ttl)
# -> 1, or 0 when the job is not running or another worker holds its lease.
# The retry's own lease replaces the worker's in the same step, so no sweep ever sees the job unheld
# while its retry waits; if the retry message is lost, the lease lapses and the sweep re-sends it.
_MARK_RETRY = """
if redis.call('HGET', KEYS[1], 'status') ~= 'IN_PROGRESS' then return 0 end
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'retry_pending', '1', 'touched_at', ARGV[1])
redis.call('SET', KEYS[2], 'retry:' .. ARGV[2], 'PX', ARGV[3])
return 1
"""

# KEYS: the leases   ARGV: worker, ttl ms  -> the indexes (1-based) of leases another worker holds now
# A lease that lapsed (the worker was stopped, or Redis was away) is taken again unless someone else
# took it meanwhile: that job now belongs to them.
_REFRESH = """
local lost = {}
for i, key in ipairs(KEYS) do
  local holder = redis.call('GET', key)
  if (not holder) or holder == ARGV[1] then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
  else
    lost[#lost + 1] = i
  end
end
return lost
"""

CANCELLED_DETAIL = "The request was cancelled"


def _around_app(priority: str) -> list[str]:
    """The text of ``keys.queued(app, priority)`` before and after the app id (for _BEGIN)."""
    mark = "\x00app\x00"
    before, after = keys.queued(mark, priority).split(mark)
    return [before, after]


_BEGIN_KEY_PARTS = [*_around_app("normal"), *_around_app("low"),
                    keys.started_watermark(broker.queue_key("normal")),
                    keys.started_watermark(broker.queue_key("low"))]


@dataclass(frozen=True)
class Finished:
    """What a completion attempt did: ``won`` is True only for the first completion of a job;
    ``superseded`` when another worker had taken the job over (nothing was recorded)."""

    won: bool
    started_at: float | None = None  # of the job's first attempt (when won)
    completed_at: float | None = None
    superseded: bool = False


@dataclass(frozen=True)
class StartResult:
    outcome: str  # see _START
    attempts: int
    crashes: int


@dataclass(frozen=True)
class IdempotentWrite:
    """What a claimed Idempotency-Key maps to once its job exists: written by the create script."""

    key: str  # the Redis key of the claim
    record: dict  # stored as JSON; the script sets record["response"]["queue_position"]
    ttl_s: int


class JobStore:
    def __init__(
        self, client: redis.Redis, retention_s: int, max_queue_length: int = 0,
        async_client: aioredis.Redis | None = None, recovery_grace_s: float = 10.0,
    ) -> None:
        self.r = client
        self.ar = async_client
        self.retention_s = retention_s
        self.max_queue_length = max_queue_length
        self.recovery_grace_s = recovery_grace_s
        self._create = client.register_script(_CREATE)
        self._create_async = async_client.register_script(_CREATE) if async_client is not None else None
        self._start = client.register_script(_START)
        self._begin = client.register_script(_BEGIN)
        self._finish = client.register_script(_FINISH)
        self._cancel = client.register_script(_CANCEL)
        self._release = client.register_script(_RELEASE)
        self._requeue = client.register_script(_REQUEUE)
        self._mark_retry = client.register_script(_MARK_RETRY)
        self._refresh = client.register_script(_REFRESH)

    @classmethod
    def from_settings(cls, settings: Settings, async_client: aioredis.Redis | None = None,
                      socket_timeout_s: float | None = None) -> JobStore:
        timeout = settings.redis_socket_timeout_s if socket_timeout_s is None else socket_timeout_s
        return cls(redis_client(settings.redis_url, timeout), settings.retention_s, settings.max_queue_length,
                   async_client, settings.recovery_grace_s)

    @staticmethod
    def _queues(job: JobRecord) -> list[str]:
        return [keys.queued(job.app_id, "normal"), keys.queued(job.app_id, "low")]

    def _keys(self, job: JobRecord) -> list[str]:
        return [keys.job(job.id), *self._queues(job), keys.job_events(job.id)]

    def create_call(self, job: JobRecord, enqueue: bool,
                    idempotency: IdempotentWrite | None) -> tuple[list[str], list]:
        """The create script's keys and arguments for ``job``: what :meth:`create` sends, for a caller
        that sends several creates in one pipeline (api.create_batch); :meth:`create_result` reads
        each answer."""
        fields = job.to_hash()
        fields.pop("seq", None)
        fields.pop("id", None)
        message = broker.job_message(job.id, job.priority) if enqueue else ""
        script_keys = [keys.job(job.id), *self._queues(job), keys.SEQUENCE, keys.JOBS_INDEX,
                       broker.queue_key(job.priority)]
        args = [self.retention_s, self.max_queue_length, job.priority, job.created_at, job.id, message,
                json.dumps(fields, separators=(",", ":"), ensure_ascii=False)]
        if idempotency is not None:
            script_keys.append(idempotency.key)
            args += [json.dumps(idempotency.record), idempotency.ttl_s]
        return script_keys, args

    def create_result(self, job: JobRecord, pos: int) -> int:
        """The queue position the create script answered for ``job``; QueueFull past the cap."""
        if pos == -1:
            raise QueueFull(f"the queue for {job.app_id} is full ({self.max_queue_length} jobs); retry later")
        return int(pos)

    def create(self, job: JobRecord, enqueue: bool = False,
               idempotency: IdempotentWrite | None = None) -> int:
        """Store a new IN_QUEUE job (and, with ``enqueue``, its broker message in the same step);
        returns its queue position. Raises QueueFull past the cap, ServiceUnavailable without Redis."""
        script_keys, args = self.create_call(job, enqueue, idempotency)
        try:
            pos = self._create(keys=script_keys, args=args)
        except redis.RedisError as exc:
            raise ServiceUnavailable(f"job store unavailable: {exc}") from exc
        return self.create_result(job, pos)

    @property
    def async_create_script(self):
        """The create script registered on the asyncio client (for pipelined creates)."""
        if self._create_async is None:
            raise RuntimeError("this JobStore was built without an asyncio client")
        return self._create_async

    async def create_async(self, job: JobRecord, idempotency: IdempotentWrite | None = None) -> int:
        """:meth:`create` with ``enqueue`` over the asyncio client (the API's submit path)."""
        if self._create_async is None:
            raise RuntimeError("this JobStore was built without an asyncio client")
        script_keys, args = self.create_call(job, True, idempotency)
        try:
            pos = await self._create_async(keys=script_keys, args=args)
        except redis.RedisError as exc:
            raise ServiceUnavailable(f"job store unavailable: {exc}") from exc
        return self.create_result(job, pos)

    def delete(self, request_id: str) -> None:
        """Remove a job's record, logs, webhook record and index entries."""
        pipe = self.r.pipeline()
        pipe.delete(keys.job(request_id), keys.job_logs(request_id), keys.job_webhook(request_id))
        pipe.zrem(keys.JOBS_INDEX, request_id)
        pipe.zrem(keys.WEBHOOKS_PENDING, request_id)
        pipe.execute()

    def get(self, request_id: str) -> JobRecord | None:
        data = self.r.hgetall(keys.job(request_id))
        if not data:
            return None
        return JobRecord.from_hash({k.decode(): v.decode() for k, v in data.items()})

    def position(self, job: JobRecord) -> int:
        normal, low = self._queues(job)
        rank = self.r.zrank(low if job.priority == "low" else normal, job.id)
        if rank is None:
            return 0
        if job.priority == "low":
            rank += self.r.zcard(normal)
        return int(rank)

    def start(self, job: JobRecord, worker: str = "", lease_ttl_s: float = 15.0) -> StartResult:
        """Begin an attempt of ``job`` on ``worker`` and take its lease (see _START); the attempt is
        logged ("attempt N started") in the same step, unless it follows a crash."""
        entry = LogEntry.now("attempt %d started").model_dump_json()
        args = [time.time(), job.id, worker, int(lease_ttl_s * 1000), entry, self.retention_s]
        script_keys = [*self._keys(job), keys.job_lease(job.id), keys.RUNNING, keys.job_logs(job.id),
                       keys.started_watermark(broker.queue_key(job.priority))]
        outcome, attempts, crashes = self._start(keys=script_keys, args=args)
        return StartResult(outcome.decode(), int(attempts), int(crashes))

    def begin(self, request_id: str, worker: str, lease_ttl_s: float) -> tuple[JobRecord | None, StartResult]:
        """:meth:`get` and :meth:`start` in one step (one round trip): the job as it was before this
        start (None when there is none) and what the start did."""
        entry = LogEntry.now("attempt %d started").model_dump_json()
        args = [time.time(), request_id, worker, int(lease_ttl_s * 1000), entry, self.retention_s,
                *_BEGIN_KEY_PARTS]
        script_keys = [keys.job(request_id), keys.job_events(request_id), keys.job_lease(request_id),
                       keys.RUNNING, keys.job_logs(request_id)]
        outcome, attempts, crashes, flat = self._begin(keys=script_keys, args=args)
        started = StartResult(outcome.decode(), int(attempts), int(crashes))
        if not flat:
            return None, started
        fields = {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}
        return JobRecord.from_hash(fields), started

    def refresh_leases(self, request_ids: list[str], worker: str, ttl_s: float) -> list[str]:
        """Keep ``worker``'s leases alive; returns the jobs another worker has taken over."""
        if not request_ids:
            return []
        lost = self._refresh(keys=[keys.job_lease(rid) for rid in request_ids],
                             args=[worker, int(ttl_s * 1000)])
        return [request_ids[int(i) - 1] for i in lost]

    def step_check(self, request_id: str) -> tuple[bool, str]:
        """At a step boundary, in one round trip: (cancel requested, the worker of the latest attempt)."""
        cancel, worker = self.r.hmget(keys.job(request_id), "cancel_requested", "worker")
        return cancel == b"1", (worker or b"").decode()

    def step_checks(self, request_ids: list[str]) -> list[tuple[bool, str]]:
        """:meth:`step_check` for several jobs (a batch at its step boundary), in one round trip."""
        if len(request_ids) == 1:
            return [self.step_check(request_ids[0])]
        pipe = self.r.pipeline(transaction=False)
        for rid in request_ids:
            pipe.hmget(keys.job(rid), "cancel_requested", "worker")
        return [(cancel == b"1", (worker or b"").decode()) for cancel, worker in pipe.execute()]

    def release(self, request_id: str, worker: str) -> None:
        """Drop the job's lease if ``worker`` holds it."""
        self._release(keys=[keys.job_lease(request_id)], args=[worker])

    def mark_retry(self, request_id: str, worker: str, hold_s: float) -> bool:
        """The running attempt failed transiently and a retry is scheduled (not a crash): the job is
        held by a retry lease for ``hold_s`` (see _MARK_RETRY). False if the job is no longer ours."""
        ttl_ms = int(hold_s * 1000)
        return bool(self._mark_retry(keys=[keys.job(request_id), keys.job_lease(request_id)],
                                     args=[time.time(), worker, ttl_ms]))

    def heartbeat(self, worker: str, ttl_s: float) -> None:
        self.r.set(keys.heartbeat(worker), str(time.time()), px=int(ttl_s * 1000))

    def live_workers(self, host: str) -> list[str]:
        """Workers on ``host`` whose heartbeat has not expired (``<host>:<pid>`` each)."""
        found = self.r.scan_iter(match=keys.heartbeat(f"{host}:*"), count=1000)
        return [k.decode().removeprefix(keys.heartbeat("")) for k in found]

    def _webhook_args(self, job: JobRecord) -> tuple[list[str], list]:
        hook_keys, hook_args = webhooks.create_args(job.id, job.webhook_url)
        return [keys.job_webhook(job.id), *hook_keys], [*hook_args, self.recovery_grace_s]

    def _finish_with(self, job: JobRecord, field: str, value: dict, metrics: dict, log: LogEntry | None,
                     worker: str) -> Finished:
        now = time.time()
        hook_keys, hook_args = self._webhook_args(job)
        won, started_at = self._finish(
            keys=[*self._keys(job), keys.RUNNING, keys.job_logs(job.id), keys.job_lease(job.id), *hook_keys],
            args=[now, self.retention_s, job.id, field, json.dumps(value), json.dumps(metrics),
                  log.model_dump_json() if log else "", worker, *hook_args],
        )
        if won == -1:
            return Finished(False, superseded=True)
        return Finished(bool(won), float(started_at) if started_at else None, now)

    def complete(self, job: JobRecord, result: dict, metrics: dict, log: LogEntry | None = None,
                 worker: str = "") -> Finished:
        """Mark COMPLETED with a result (appending ``log``, dropping ``worker``'s lease, creating the
        webhook's delivery); ``won`` only for the first completion."""
        return self._finish_with(job, "result", result, metrics, log, worker)

    def fail(self, job: JobRecord, error_type: str, detail: str, metrics: dict | None = None,
             log: LogEntry | None = None, worker: str = "") -> Finished:
        """Mark COMPLETED with an error; ``won`` only for the first completion."""
        error = {"error_type": error_type, "detail": detail}
        return self._finish_with(job, "error", error, metrics or {}, log, worker)

    def cancel(self, job: JobRecord) -> str:
        """Cancel a job: a queued one completes as cancelled at once (its webhook's delivery created
        in the same step), a running one is flagged."""
        error = json.dumps({"error_type": RequestCancelled.code, "detail": CANCELLED_DETAIL})
        hook_keys, hook_args = self._webhook_args(job)
        out = self._cancel(keys=[*self._keys(job), *hook_keys],
                           args=[time.time(), self.retention_s, job.id, error, *hook_args])
        return out.decode()

    def requeue(self, job: JobRecord) -> str:
        """Put a failed job back at the end of its queue, with its broker message (see _REQUEUE).

        Returns REQUEUED, or why not: NOT_FOUND, NOT_FINISHED, SUCCEEDED."""
        out = self._requeue(
            keys=[keys.job(job.id), *self._queues(job), keys.SEQUENCE, keys.job_events(job.id),
                  broker.queue_key(job.priority)],
            args=[time.time(), self.retention_s, job.id, broker.job_message(job.id, job.priority)],
        )
        out = out.decode()
        if out == "REQUEUED":
            self.r.expire(keys.job_logs(job.id), self.retention_s)
        return out

    def ping(self) -> None:
        """Raises a redis error when the job store does not answer."""
        self.r.ping()

    def queue_depths(self, app_ids: list[str]) -> dict[tuple[str, str], int]:
        """Jobs waiting (IN_QUEUE) per (app, priority), read in one round trip."""
        pairs = [(app_id, priority) for app_id in app_ids for priority in broker.PRIORITY]
        pipe = self.r.pipeline(transaction=False)
        for app_id, priority in pairs:
            pipe.zcard(keys.queued(app_id, priority))
        return dict(zip(pairs, pipe.execute(), strict=True))

    def shared_signing_key(self, candidate_pem: bytes) -> bytes:
        """The webhook signing key (PEM) every process shares: ``candidate_pem`` if none was stored
        yet (the first caller's), else the stored one. No TTL."""
        self.r.set(keys.WEBHOOK_SIGNING_KEY, candidate_pem, nx=True)
        return self.r.get(keys.WEBHOOK_SIGNING_KEY)

    def cancel_requested(self, request_id: str) -> bool:
        return self.r.hget(keys.job(request_id), "cancel_requested") == b"1"

    def add_log(self, request_id: str, message: str, level: str = "INFO") -> None:
        entry = LogEntry.now(message, level)
        pipe = self.r.pipeline()
        pipe.rpush(keys.job_logs(request_id), entry.model_dump_json())
        pipe.expire(keys.job_logs(request_id), self.retention_s)
        pipe.publish(keys.job_events(request_id), "LOG")
        pipe.execute()

    def logs(self, request_id: str) -> list[dict]:
        return [json.loads(x) for x in self.r.lrange(keys.job_logs(request_id), 0, -1)]


def _client_options(socket_timeout_s: float) -> dict:
    return {"socket_timeout": socket_timeout_s, "socket_connect_timeout": socket_timeout_s,
            "health_check_interval": 10}


def redis_client(url: str, socket_timeout_s: float) -> redis.Redis:
    return redis.Redis.from_url(url, **_client_options(socket_timeout_s))


def async_redis_client(url: str, socket_timeout_s: float) -> aioredis.Redis:
    """The asyncio twin of :func:`redis_client` (same timeouts), for the API's event loop."""
    return aioredis.Redis.from_url(url, **_client_options(socket_timeout_s))


def pubsub_client(url: str, connect_timeout_s: float) -> aioredis.Redis:
    """An asyncio client for following jobs' event channels: no read timeout (a subscription waits
    for as long as the job takes)."""
    return aioredis.Redis.from_url(url, socket_connect_timeout=connect_timeout_s, health_check_interval=10)
