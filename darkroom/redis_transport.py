"""kombu's Redis transport with two changes: a channel reuses one synchronous Redis client, and a
channel whose connection is gone says so with a connection error.

kombu builds a new ``redis.Redis`` object (about 90 µs of CPU: it copies every response callback)
each time it needs a client for one step, and it needs one twice per message: to record a delivered
message as unacked and to acknowledge it. A ``redis.Redis`` over a connection pool is safe to share
between threads, so the channel keeps one per pool and rebuilds it when kombu replaces the pool
(after a reconnect). Everything else, including the wire format and the unacked bookkeeping that
makes late acks survive a crash, is kombu's own.

Celery 5.7 closes the broker connection when it loses it (``on_connection_error_after_connected``),
after kombu has already dropped the transport's client. Closing the channel then tries to put its
unacknowledged messages back through a brand-new pool built from that missing client and raises
``AttributeError: 'NoneType' object has no attribute 'hostname'``, which Celery does not expect: the
worker logs "Unrecoverable error" and exits (code 0) whenever a Redis restart finds it with tasks in
flight. Raising a connection error instead lets Celery ignore the failed close and reconnect, as it
does when Redis is simply down; those messages stay recorded as unacknowledged in Redis, and the
recovery sweep (storage/recovery.py) brings their jobs back from the records.
(No upstream issue was found for it; tests/e2e/test_faults.py kills Redis with slots busy to cover it.)

Selected by ``broker_transport`` in :func:`darkroom.broker.make_celery`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _shared_client = None

    def _client_for_step(self):
        if self.connection.client is None:  # closed: building a pool would raise AttributeError
            raise redis.ConnectionError("the broker connection is closed")
        client = self._shared_client
        if client is None or client.connection_pool is not self.pool:
            client = self._shared_client = self._create_client()
        return client

    @contextmanager
    def conn_or_acquire(self, client=None) -> Iterator:
        yield client if client else self._client_for_step()


class Transport(kombu_redis.Transport):
    Channel = Channel
