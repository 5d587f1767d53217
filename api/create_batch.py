"""Job creates coalesced into pipelines: the submits that reach Redis in one event-loop turn share a
round trip.

Each submit still runs the job store's own create script (storage/jobs.py ``_CREATE``: the record,
its queue entries, its broker message and its Idempotency-Key record, atomically), once per job and
with the job's own keys and arguments; only the sending is shared. Under load the API accepts many
submits per loop turn, and one pipelined write and read of N scripts costs far less than N separate
calls (connection checkout, a write and a read each). A lone submit goes out at once, alone, on the
same turn it arrived (no timer, so no added wait).

``api_create_batch`` caps how many scripts go in one pipeline; 1 turns coalescing off.
"""

from __future__ import annotations

import asyncio
import logging

import redis
from redis.exceptions import NoScriptError

from darkroom.errors import ServiceUnavailable
from darkroom.job import JobRecord
from storage.jobs import IdempotentWrite, JobStore

log = logging.getLogger(__name__)

_Pending = tuple[list, list, asyncio.Future]


class CreateBatcher:
    """:meth:`JobStore.create_async`, with the calls of one loop turn sent as one pipeline."""

    def __init__(self, store: JobStore, max_batch: int) -> None:
        self.store = store
        self.script = store.async_create_script
        self.max_batch = max_batch
        self._pending: list[_Pending] = []
        self._running: set[asyncio.Task] = set()  # sends in flight (the loop keeps weak references)

    async def create(self, job: JobRecord, idempotency: IdempotentWrite | None = None) -> int:
        """Store and enqueue ``job``; its queue position. QueueFull past the cap, ServiceUnavailable
        without Redis, as :meth:`JobStore.create_async`."""
        script_keys, args = self.store.create_call(job, True, idempotency)
        done = asyncio.get_running_loop().create_future()
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending.append((script_keys, args, done))
        try:
            pos = await done
        except redis.RedisError as exc:
            raise ServiceUnavailable(f"job store unavailable: {exc}") from exc
        return self.store.create_result(job, pos)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), self.max_batch):
            task = asyncio.ensure_future(self._send(pending[start:start + self.max_batch]))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _send(self, batch: list[_Pending]) -> None:
        try:
            results = await self._run(batch)
        except asyncio.CancelledError:  # the loop is shutting down: so are the requests waiting here
            for _, _, done in batch:
                done.cancel()
            raise
        except Exception as exc:  # the connection failed: every create of the batch did
            results = [exc] * len(batch)
        for (_, _, done), result in zip(batch, results, strict=True):
            if done.done():  # its request was cancelled meanwhile
                continue
            if isinstance(result, Exception):
                done.set_exception(result)
            else:
                done.set_result(result)

    async def _run(self, batch: list[_Pending]) -> list:
        if len(batch) == 1:  # no pipeline to build: the script object sends (and loads) it itself
            script_keys, args, _ = batch[0]
            try:
                return [await self.script(keys=script_keys, args=args)]
            except redis.ResponseError as exc:  # e.g. an out-of-memory Redis: this create's error
                return [exc]
        results = await self._pipelined(batch)
        missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
        if missing:  # Redis lost its scripts (a restart, SCRIPT FLUSH): none of those ran; load and resend
            log.info("loading the job create script into Redis again")
            await self.script.registered_client.script_load(self.script.script)
            for i, result in zip(missing, await self._pipelined([batch[i] for i in missing]), strict=True):
                results[i] = result
        return results

    async def _pipelined(self, batch: list[_Pending]) -> list:
        pipe = self.script.registered_client.pipeline(transaction=False)
        for script_keys, args, _ in batch:
            pipe.evalsha(self.script.sha, len(script_keys), *script_keys, *args)
        return await pipe.execute(raise_on_error=False)
