"""Following one job's changes through Redis pub/sub (channel ``storage.keys.job_events``), not polling.

The job store publishes ``IN_PROGRESS``, ``COMPLETED``, ``LOG`` and ``CANCEL`` on the channel. A reader
subscribes first and reads the job's state second, so no change can slip between the two.
"""

from __future__ import annotations

import time

import anyio
import redis.asyncio as aioredis

from darkroom.job import JobRecord
from storage import keys

from .deps import Services

COMPLETED = "COMPLETED"


class JobEvents:
    """``async with JobEvents(client, id) as events``: a confirmed subscription to the job's channel."""

    def __init__(self, client: aioredis.Redis, request_id: str, confirm_timeout_s: float) -> None:
        self.channel = keys.job_events(request_id)
        self.pubsub = client.pubsub()
        self.confirm_timeout_s = confirm_timeout_s

    async def __aenter__(self) -> JobEvents:
        await self.pubsub.subscribe(self.channel)
        # wait for Redis to confirm: from then on every publish reaches us
        await self.pubsub.get_message(timeout=self.confirm_timeout_s)
        return self

    async def __aexit__(self, *exc: object) -> None:
        with anyio.CancelScope(shield=True):  # a disconnected client cancels us; still clean up
            await self.pubsub.unsubscribe(self.channel)
            await self.pubsub.aclose()

    async def next(self, timeout_s: float) -> str | None:
        """The next message on the channel, or None when ``timeout_s`` passed without one."""
        deadline = time.monotonic() + timeout_s
        while (remaining := deadline - time.monotonic()) > 0:
            message = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=remaining)
            if message is not None:
                data = message["data"]
                return data.decode() if isinstance(data, bytes) else str(data)
        return None


def subscribe(svc: Services, request_id: str) -> JobEvents:
    return JobEvents(svc.events, request_id, svc.settings.redis_socket_timeout_s)


async def wait_completed(svc: Services, request_id: str, timeout_s: float) -> JobRecord | None:
    """The job once COMPLETED, or as it stands when ``timeout_s`` has passed; None if it is gone."""
    deadline = time.monotonic() + timeout_s
    async with subscribe(svc, request_id) as events:
        while True:
            job = svc.store.get(request_id)
            if job is None or job.status.is_terminal() or time.monotonic() >= deadline:
                return job
            await _completed_message(events, deadline)


async def _completed_message(events: JobEvents, deadline: float) -> None:
    while (remaining := deadline - time.monotonic()) > 0:
        if await events.next(remaining) == COMPLETED:
            return
