"""kombu's Redis transport with one change: a channel reuses one synchronous Redis client.

kombu builds a new ``redis.Redis`` object (about 90 µs of CPU: it copies every response callback)
each time it needs a client for one step, and it needs one twice per message: to record a delivered
message as unacked and to acknowledge it. A ``redis.Redis`` over a connection pool is safe to share
between threads, so the channel keeps one per pool and rebuilds it when kombu replaces the pool
(after a reconnect). Everything else, including the wire format and the unacked bookkeeping that
makes late acks survive a crash, is kombu's own.

Selected by ``broker_transport`` in :func:`darkroom.broker.make_celery`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _shared_client = None

    def _client_for_step(self):
        client = self._shared_client
        if client is None or client.connection_pool is not self.pool:
            client = self._shared_client = self._create_client()
        return client

    @contextmanager
    def conn_or_acquire(self, client=None) -> Iterator:
        yield client if client else self._client_for_step()


class Transport(kombu_redis.Transport):
    Channel = Channel
