"""A worker built in-process by create_worker, with its own settings: a real Celery worker thread on
a real redis-server (its own database), no eager mode."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from celery.contrib.testing.worker import start_worker

from darkroom.broker import EFFECTS_QUEUE, WEBHOOK_QUEUE
from darkroom.job import JobRecord
from storage.jobs import JobStore
from tests.support.harness import make_settings, wait_for
from tests.support.images import gradient, png_data_uri
from worker.app import create_worker

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]
APP = "fal-ai/post-processing"


@contextmanager
def celery_logging_restored() -> Iterator[None]:
    """Celery's in-process test worker sets the root logger's level (and handlers) for the whole
    process; later tests must not inherit that."""
    root = logging.getLogger()
    level, handlers = root.level, root.handlers[:]
    try:
        yield
    finally:
        root.setLevel(level)
        root.handlers[:] = handlers


def test_create_worker_runs_jobs_with_its_own_settings(redis_url, tmp_path):
    settings = make_settings(redis_url.rsplit("/", 1)[0] + "/9", None, 8996,
                             local_storage_dir=tmp_path / "objects", torch_threads=1)
    app = create_worker(settings)
    store = JobStore.from_settings(settings)
    job = JobRecord(id=str(uuid.uuid4()), app_id=APP, base_id=APP, created_at=time.time(), seed=3,
                    input={"image_url": png_data_uri(gradient(8, 8)), "enable_solarize": True, "seed": 3})
    store.create(job, enqueue=True)
    with celery_logging_restored(), start_worker(
        app, pool="threads", concurrency=2, perform_ping_check=False,
        queues=[EFFECTS_QUEUE, WEBHOOK_QUEUE], shutdown_timeout=30,
    ):
        done = wait_for(lambda: (j := store.get(job.id)) and j.status == "COMPLETED" and j, timeout_s=60)
    assert done.error is None
    (image,) = done.result["images"]
    assert (tmp_path / "objects" / image["key"]).is_file()  # this worker's own storage settings
    assert app.darkroom_process.context().settings is settings
