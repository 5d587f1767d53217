"""A no-op Celery worker with Darkroom's broker settings: the baseline of benchmarks/queue.py.

The app is :func:`darkroom.broker.make_celery` (same Redis transport and options, late acks, prefetch 1)
with one task, ``bench.noop``, that only notes when it ran; the worker starts with the pool, job slots
and queues that `darkroom worker` uses. What it drains per second is what Celery itself costs per
message under Darkroom's settings, so a Darkroom job rate can be read against it.

queue.py fills the effects queue with ``bench.noop`` messages (:func:`fill`, the same envelope the job
store pushes), then starts ``python -m benchmarks._celery_baseline --expect N``; after the N-th task the
worker writes every ``(label, time)`` to :data:`RESULT_KEY`. Settings come from ``DARKROOM_*``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import threading
import time

import redis
from celery import Celery

from darkroom.broker import EFFECTS_QUEUE, WEBHOOK_QUEUE, make_celery, push, queue_key, task_message
from darkroom.settings import Settings

NOOP_TASK = "bench.noop"
RESULT_KEY = "bench:noop:times"  # JSON list of [label, unix time] pairs, written after the last task


def fill(client: redis.Redis, labels: list[str]) -> None:
    """Queue one ``bench.noop(label)`` per label, in order, where the job store queues jobs."""
    pipe = client.pipeline(transaction=False)
    for label in labels:
        push(pipe, queue_key("normal"), task_message(NOOP_TASK, label, EFFECTS_QUEUE))
    pipe.execute()


def create_baseline(settings: Settings, expect: int) -> Celery:
    """Darkroom's Celery app with only ``bench.noop`` registered; the ``expect``-th run stores the times."""
    app = make_celery(settings)
    client = redis.Redis.from_url(settings.redis_url)
    lock = threading.Lock()
    times: list[tuple[str, float]] = []

    @app.task(name=NOOP_TASK)
    def noop(label: str) -> None:
        now = time.time()
        with lock:
            times.append((label, now))
            last = len(times) == expect
        if last:
            client.set(RESULT_KEY, json.dumps(times))

    return app


def worker_argv(settings: Settings, name: str) -> list[str]:
    # Copied from darkroom/cli/__init__.py (`worker`): the same pool, job slots and queues.
    return [
        "worker",
        "--pool", "threads",
        "--concurrency", str(settings.worker_concurrency),
        "--queues", f"{EFFECTS_QUEUE},{WEBHOOK_QUEUE}",
        "--hostname", name,
        "--loglevel", settings.log_level,
        "--without-gossip", "--without-mingle",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--expect", type=int, required=True, help="messages queued in all")
    parser.add_argument("--name", default=f"noop@bench-{os.getpid()}", help="worker name")
    args = parser.parse_args()
    settings = Settings()
    logging.basicConfig(level=settings.log_level, format="%(message)s")
    create_baseline(settings, args.expect).worker_main(worker_argv(settings, args.name))


if __name__ == "__main__":
    main()
