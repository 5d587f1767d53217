"""A worker process's Prometheus metrics, served at ``/metrics`` on ``DARKROOM_METRICS_PORT``.

The runner, the task and the outcomes call one function each; every function here swallows its own
errors, because a metric must never fail a job. For pipelines that load models::

    from worker.metrics import time_model_load

    with time_model_load("stable-diffusion-xl"):
        pipe = DiffusionPipeline.from_pretrained(...)

(or ``observe_model_load(name, seconds)``; the histogram itself is ``MODEL_LOAD_SECONDS``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from darkroom.job import JobRecord
from darkroom.metrics import count_completed, outcome_of
from darkroom.settings import Settings
from storage.jobs import Finished

log = logging.getLogger(__name__)

QUEUE_WAIT_SECONDS = Histogram(
    "darkroom_queue_wait_seconds",
    "From submit (or requeue) to the first start of a job.",
    ["app"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
PROCESSING_SECONDS = Histogram(
    "darkroom_job_processing_seconds",
    "From a job's start to its completion (retries included).",
    ["app", "outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
BATCH_SIZE = Histogram(
    "darkroom_batch_size", "Jobs per batch run on the device.", ["pipeline"],
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64),
)
RETRIES = Counter("darkroom_job_retries", "Retries scheduled after a transient failure.", ["error_type"])
MODEL_LOAD_SECONDS = Histogram(
    "darkroom_model_load_seconds", "Time to load a model into a worker process.", ["model"],
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600),
)
DEVICE_MEMORY_BYTES = Gauge(
    "darkroom_device_memory_bytes",
    "Memory in use: torch.cuda.memory_allocated on a GPU, the process's resident set on the CPU.",
    ["device"],
)


def serve_metrics(settings: Settings, device) -> None:
    """Start this process's metrics server (a daemon thread) reporting ``device``'s memory; a busy
    port is logged, not fatal."""
    if not settings.metrics_port:
        return
    watch_device(device)
    try:
        start_http_server(settings.metrics_port, addr=settings.metrics_host)
    except OSError as exc:
        log.warning("metrics server not started on port %d: %s (set DARKROOM_METRICS_PORT to a free port)",
                    settings.metrics_port, exc)
        return
    log.info("metrics at http://%s:%d/metrics", settings.metrics_host, settings.metrics_port)


def watch_device(device) -> None:
    """Report the memory in use on ``device`` (a torch.device) at every scrape."""
    if device.type == "cuda":
        import torch

        DEVICE_MEMORY_BYTES.labels(str(device)).set_function(lambda: torch.cuda.memory_allocated(device))
    else:
        DEVICE_MEMORY_BYTES.labels(str(device)).set_function(_resident_bytes)


def _resident_bytes() -> float:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # not Linux: the peak is the best we have
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def job_started(job: JobRecord, outcome: str) -> None:
    """At the start of an attempt: the queue wait, observed once per submit (or requeue)."""
    if outcome != "started":
        return
    try:
        waited_since = job.requeued_at or job.created_at
        QUEUE_WAIT_SECONDS.labels(job.app_id).observe(max(0.0, time.time() - waited_since))
    except Exception:  # noqa: BLE001 - metrics never fail a job
        log.debug("metrics: job_started failed", exc_info=True)


def job_completed(job: JobRecord, error: dict | None, finished: Finished) -> None:
    """Once per completed job (after the transition won): outcome counter and processing time, from
    ``finished`` (what the completing step returned: the first start and the completion time)."""
    try:
        count_completed(job.app_id, error)
        if finished.started_at and finished.completed_at:
            spent = max(0.0, finished.completed_at - finished.started_at)
            PROCESSING_SECONDS.labels(job.app_id, outcome_of(error)[0]).observe(spent)
    except Exception:  # noqa: BLE001 - metrics never fail a job
        log.debug("metrics: job_completed failed", exc_info=True)


def batch_ran(pipeline: str, size: int) -> None:
    BATCH_SIZE.labels(pipeline).observe(size)


def job_retried(error_type: str) -> None:
    RETRIES.labels(error_type).inc()


def observe_model_load(model: str, seconds: float) -> None:
    MODEL_LOAD_SECONDS.labels(model).observe(seconds)


@contextmanager
def time_model_load(model: str) -> Iterator[None]:
    """Time the block as the load of ``model`` (not observed when it raises)."""
    t0 = time.perf_counter()
    yield
    observe_model_load(model, time.perf_counter() - t0)
