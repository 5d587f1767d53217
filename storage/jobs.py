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
from darkroom.errors import QueueFull, ServiceUnavailable
from darkroom.job import JobRecord, LogEntry
from storage import keys

log = logging.getLogger(__name__)

# KEYS: job, queued(normal), queued(low), seq, index, broker queue
# ARGV: ttl, max_len, priority, created, id, broker message ('' for none), fields (a JSON object of
# strings: one argument packs and unpacks faster than two per field)
# The job's broker message is pushed in the same script: a job is stored and enqueued, or neither.
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
if ARGV[3] == 'low' then
  return redis.call('ZCARD', KEYS[2]) + redis.call('ZRANK', KEYS[3], id)
end
return redis.call('ZRANK', KEYS[2], id)
"""

# KEYS: job, queued(normal), queued(low), events, lease, running, logs
# ARGV: now, id, worker, lease ttl ms, log entry (JSON with a %d for the attempt number), logs ttl
# -> {outcome, attempts, crashes}; outcome:
#   missing | completed   nothing to do
#   started               first start (IN_QUEUE -> IN_PROGRESS)
#   retry                 a scheduled retry of an attempt that failed transiently
#   busy                  a duplicate delivery while a live worker holds the job's lease
#   crashed               redelivered while nobody holds the lease: the last attempt died
_START = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'missing', 0, 0} end
if status == 'COMPLETED' then return {'completed', 0, 0} end
local outcome = 'started'
if status == 'IN_PROGRESS' then
  if redis.call('HGET', KEYS[1], 'retry_pending') == '1' then
    outcome = 'retry'
    redis.call('HDEL', KEYS[1], 'retry_pending')
  elseif redis.call('EXISTS', KEYS[5]) == 1 then
    return {'busy', 0, 0}
  else
    outcome = 'crashed'
    redis.call('HINCRBY', KEYS[1], 'crashes', 1)
  end
end
redis.call('SET', KEYS[5], ARGV[3], 'PX', ARGV[4])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[2])
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'worker', ARGV[3], 'touched_at', ARGV[1])
redis.call('ZADD', KEYS[6], ARGV[1], ARGV[2])
if outcome == 'started' then
  redis.call('HSET', KEYS[1], 'status', 'IN_PROGRESS', 'started_at', ARGV[1])
  redis.call('PUBLISH', KEYS[4], 'IN_PROGRESS')
end
if outcome ~= 'crashed' then  -- after a crash the worker first decides whether to run it at all
  redis.call('RPUSH', KEYS[7], string.format(ARGV[5], attempts))
  redis.call('EXPIRE', KEYS[7], ARGV[6])
  redis.call('PUBLISH', KEYS[4], 'LOG')
end
return {outcome, attempts, tonumber(redis.call('HGET', KEYS[1], 'crashes') or '0')}
"""

# KEYS: job, queued(normal), queued(low), events, running, logs, lease
# ARGV: now, ttl, id, field, json, metrics, log entry ('' for none), worker ('': keep the lease)
# -> {1, started_at} for the first completion, {0, false} when the job was done (or gone) already.
# The worker's lease goes in the same step (when it holds it), and the log entry is in the list
# before COMPLETED is published, so a stream that stops at COMPLETED has read it.
_FINISH = """
redis.call('ZREM', KEYS[5], ARGV[3])
if ARGV[8] ~= '' and redis.call('GET', KEYS[7]) == ARGV[8] then redis.call('DEL', KEYS[7]) end
local status = redis.call('HGET', KEYS[1], 'status')
if (not status) or status == 'COMPLETED' then return {0, false} end
if ARGV[7] ~= '' then redis.call('RPUSH', KEYS[6], ARGV[7]) end
redis.call('HSET', KEYS[1], 'status', 'COMPLETED', 'completed_at', ARGV[1],
  ARGV[4], ARGV[5], 'metrics', ARGV[6])
redis.call('ZREM', KEYS[2], ARGV[3])
redis.call('ZREM', KEYS[3], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[6], ARGV[2])
redis.call('PUBLISH', KEYS[4], 'COMPLETED')
return {1, redis.call('HGET', KEYS[1], 'started_at')}
"""

# KEYS: job, queued(normal), queued(low), events   ARGV: now, ttl, id, error json
# -> NOT_FOUND | ALREADY_COMPLETED | QUEUED (now COMPLETED as cancelled) | RUNNING (flag set)
_CANCEL = """
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
redis.call('PUBLISH', KEYS[4], 'COMPLETED')
return 'QUEUED'
"""

# KEYS: job, queued(normal), queued(low), seq, events   ARGV: now, ttl, id
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
redis.call('PUBLISH', KEYS[5], 'IN_QUEUE')
return 'REQUEUED'
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

CANCELLED_DETAIL = "The request was cancelled"


@dataclass(frozen=True)
class Finished:
    """What a completion attempt did: ``won`` is True only for the first completion of a job."""

    won: bool
    started_at: float | None = None  # of the job's first attempt (when won)
    completed_at: float | None = None


@dataclass(frozen=True)
class StartResult:
    outcome: str  # see _START
    attempts: int
    crashes: int


class JobStore:
    def __init__(
        self, client: redis.Redis, retention_s: int, max_queue_length: int = 0,
        async_client: aioredis.Redis | None = None,
    ) -> None:
        self.r = client
        self.ar = async_client
        self.retention_s = retention_s
        self.max_queue_length = max_queue_length
        self._create = client.register_script(_CREATE)
        self._create_async = async_client.register_script(_CREATE) if async_client is not None else None
        self._start = client.register_script(_START)
        self._finish = client.register_script(_FINISH)
        self._cancel = client.register_script(_CANCEL)
        self._release = client.register_script(_RELEASE)
        self._requeue = client.register_script(_REQUEUE)

    @staticmethod
    def _queues(job: JobRecord) -> list[str]:
        return [keys.queued(job.app_id, "normal"), keys.queued(job.app_id, "low")]

    def _keys(self, job: JobRecord) -> list[str]:
        return [keys.job(job.id), *self._queues(job), keys.job_events(job.id)]

    def _create_call(self, job: JobRecord, enqueue: bool) -> tuple[list[str], list]:
        fields = job.to_hash()
        fields.pop("seq", None)
        fields.pop("id", None)
        message = broker.job_message(job.id, job.priority) if enqueue else ""
        script_keys = [keys.job(job.id), *self._queues(job), keys.SEQUENCE, keys.JOBS_INDEX,
                       broker.queue_key(job.priority)]
        args = [self.retention_s, self.max_queue_length, job.priority, job.created_at, job.id, message,
                json.dumps(fields, separators=(",", ":"), ensure_ascii=False)]
        return script_keys, args

    def _created(self, job: JobRecord, pos: int) -> int:
        if pos == -1:
            raise QueueFull(f"the queue for {job.app_id} is full ({self.max_queue_length} jobs); retry later")
        return int(pos)

    def create(self, job: JobRecord, enqueue: bool = False) -> int:
        """Store a new IN_QUEUE job (and, with ``enqueue``, its broker message in the same step);
        returns its queue position. Raises QueueFull past the cap, ServiceUnavailable without Redis."""
        script_keys, args = self._create_call(job, enqueue)
        try:
            pos = self._create(keys=script_keys, args=args)
        except redis.RedisError as exc:
            raise ServiceUnavailable(f"job store unavailable: {exc}") from exc
        return self._created(job, pos)

    async def create_async(self, job: JobRecord) -> int:
        """:meth:`create` with ``enqueue`` over the asyncio client (the API's submit path)."""
        if self._create_async is None:
            raise RuntimeError("this JobStore was built without an asyncio client")
        script_keys, args = self._create_call(job, enqueue=True)
        try:
            pos = await self._create_async(keys=script_keys, args=args)
        except redis.RedisError as exc:
            raise ServiceUnavailable(f"job store unavailable: {exc}") from exc
        return self._created(job, pos)

    def delete(self, request_id: str) -> None:
        self.r.delete(keys.job(request_id), keys.job_logs(request_id))
        self.r.zrem(keys.JOBS_INDEX, request_id)

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
        script_keys = [*self._keys(job), keys.job_lease(job.id), keys.RUNNING, keys.job_logs(job.id)]
        outcome, attempts, crashes = self._start(keys=script_keys, args=args)
        return StartResult(outcome.decode(), int(attempts), int(crashes))

    def refresh_leases(self, request_ids: list[str], worker: str, ttl_s: float) -> None:
        pipe = self.r.pipeline()
        for rid in request_ids:
            pipe.set(keys.job_lease(rid), worker, px=int(ttl_s * 1000))
        pipe.execute()

    def release(self, request_id: str, worker: str) -> None:
        """Drop the job's lease if ``worker`` holds it."""
        self._release(keys=[keys.job_lease(request_id)], args=[worker])

    def mark_retry(self, request_id: str) -> None:
        """The running attempt failed transiently and a retry is scheduled (not a crash)."""
        self.r.hset(keys.job(request_id), mapping={"retry_pending": "1", "touched_at": time.time()})

    def orphan_candidates(self, app_ids: list[str], older_than: float, limit: int = 100) -> list[str]:
        """Jobs that may have lost their broker message: the oldest still queued per app, and those
        IN_PROGRESS whose latest start is older than ``older_than`` (a timestamp)."""
        pipe = self.r.pipeline()
        for app_id in app_ids:
            for priority in ("normal", "low"):
                pipe.zrange(keys.queued(app_id, priority), 0, limit - 1)
        pipe.zrangebyscore(keys.RUNNING, "-inf", older_than, start=0, num=limit)
        return sorted({rid.decode() for batch in pipe.execute() for rid in batch})

    def claim_orphan(self, request_id: str, older_than: float) -> str | None:
        """The job's priority if it is unfinished, nobody holds its lease and nothing touched it since
        ``older_than``; it is then marked touched now, so one sweep re-sends it once. Else None."""
        status, touched, created, priority = self.r.hmget(
            keys.job(request_id), "status", "touched_at", "created_at", "priority"
        )
        if status in (None, b"COMPLETED"):
            self.r.zrem(keys.RUNNING, request_id)
            return None
        last = float(touched or created or 0)
        if last > older_than or self.r.exists(keys.job_lease(request_id)):
            return None
        self.r.hset(keys.job(request_id), "touched_at", time.time())
        return (priority or b"normal").decode()

    def heartbeat(self, worker: str, ttl_s: float) -> None:
        self.r.set(keys.heartbeat(worker), str(time.time()), px=int(ttl_s * 1000))

    def _finish_with(self, job: JobRecord, field: str, value: dict, metrics: dict, log: LogEntry | None,
                     worker: str) -> Finished:
        now = time.time()
        won, started_at = self._finish(
            keys=[*self._keys(job), keys.RUNNING, keys.job_logs(job.id), keys.job_lease(job.id)],
            args=[now, self.retention_s, job.id, field, json.dumps(value), json.dumps(metrics),
                  log.model_dump_json() if log else "", worker],
        )
        return Finished(bool(won), float(started_at) if started_at else None, now)

    def complete(self, job: JobRecord, result: dict, metrics: dict, log: LogEntry | None = None,
                 worker: str = "") -> Finished:
        """Mark COMPLETED with a result (appending ``log``, dropping ``worker``'s lease); ``won`` only
        for the first completion."""
        return self._finish_with(job, "result", result, metrics, log, worker)

    def fail(self, job: JobRecord, error_type: str, detail: str, metrics: dict | None = None,
             log: LogEntry | None = None, worker: str = "") -> Finished:
        """Mark COMPLETED with an error; ``won`` only for the first completion."""
        error = {"error_type": error_type, "detail": detail}
        return self._finish_with(job, "error", error, metrics or {}, log, worker)

    def cancel(self, job: JobRecord) -> str:
        """Cancel a job: a queued one completes as cancelled at once, a running one is flagged."""
        error = json.dumps({"error_type": "request_cancelled", "detail": CANCELLED_DETAIL})
        out = self._cancel(keys=self._keys(job), args=[time.time(), self.retention_s, job.id, error])
        return out.decode()

    def requeue(self, job: JobRecord) -> str:
        """Put a failed job back in its queue (see _REQUEUE); the caller then enqueues its message.

        Returns REQUEUED, or why not: NOT_FOUND, NOT_FINISHED, SUCCEEDED."""
        out = self._requeue(
            keys=[keys.job(job.id), *self._queues(job), keys.SEQUENCE, keys.job_events(job.id)],
            args=[time.time(), self.retention_s, job.id],
        )
        out = out.decode()
        if out == "REQUEUED":
            self.r.expire(keys.job_logs(job.id), self.retention_s)
        return out

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
