"""Prometheus metrics shared by the API and the workers (torch-free).

Counters live in each process's default registry and Prometheus adds them up across targets: the
API counts submits and the cancellations it completes itself (queued jobs), the workers count every
job they complete (worker/metrics.py). Queue depth is not counted but read from Redis at scrape time
(``render_api_metrics``), so every API replica reports the same, true value.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis
from prometheus_client import REGISTRY, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily

from darkroom.apps import APPS
from darkroom.errors import RequestCancelled

log = logging.getLogger(__name__)

CANCELLED = RequestCancelled.code

JOBS_SUBMITTED = Counter("darkroom_jobs_submitted", "Jobs accepted by the API.", ["app"])
JOBS_COMPLETED = Counter(
    "darkroom_jobs_completed",
    "Jobs that reached COMPLETED, by outcome (success, error, cancelled) and error_type.",
    ["app", "outcome", "error_type"],
)


def outcome_of(error: dict | None) -> tuple[str, str]:
    """(outcome, error_type) labels of a completed job's ``error`` field."""
    if not error:
        return "success", ""
    error_type = str(error.get("error_type", "internal_error"))
    return ("cancelled" if error_type == CANCELLED else "error"), error_type


def count_submitted(app_id: str) -> None:
    child = _SUBMITTED.get(app_id)
    if child is None:  # labels() takes a lock and builds its key each time: keep each app's child
        child = _SUBMITTED[app_id] = JOBS_SUBMITTED.labels(app_id)
    child.inc()


_SUBMITTED: dict[str, Counter] = {}


def count_completed(app_id: str, error: dict | None) -> None:
    JOBS_COMPLETED.labels(app_id, *outcome_of(error)).inc()


class QueueDepthCollector:
    """``darkroom_queue_depth{app, priority}``: ZCARD of every app's queued set, read when scraped."""

    def __init__(self, depths: Callable[[list[str]], dict[tuple[str, str], int]]) -> None:
        self.depths = depths  # JobStore.queue_depths

    def collect(self):
        up = GaugeMetricFamily("darkroom_redis_up", "1 when the API could read the queues from Redis.")
        depth = GaugeMetricFamily(
            "darkroom_queue_depth", "Jobs waiting (IN_QUEUE) per app and priority.",
            labels=["app", "priority"],
        )
        try:
            counts = self.depths(sorted(APPS))
        except redis.RedisError as exc:
            log.warning("metrics: could not read the queues: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        for (app_id, prio), count in counts.items():
            depth.add_metric([app_id, prio], count)
        yield up
        yield depth


def render_api_metrics(depths: Callable[[list[str]], dict[tuple[str, str], int]]) -> bytes:
    """The API's exposition: this process's metrics plus the queue depth read from Redis now
    (``depths``: JobStore.queue_depths)."""
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(QueueDepthCollector(depths))
    return generate_latest(REGISTRY) + generate_latest(scrape)
