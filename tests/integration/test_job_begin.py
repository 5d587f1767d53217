"""``JobStore.begin``: the worker's first step (read the record, start the attempt) in one round trip,
with the effects of ``start`` on the keys that depend on the record (its app's queue, its priority's
started watermark), against a real redis-server."""

from __future__ import annotations

import time
import uuid

import pytest

from darkroom import broker
from darkroom.job import JobRecord, JobStatus
from storage import keys
from storage.jobs import JobStore, redis_client

pytestmark = pytest.mark.timeout(30)
APP = "fal-ai/post-processing"


@pytest.fixture
def store(redis_url) -> JobStore:
    return JobStore(redis_client(redis_url, 5), retention_s=60)


def new_job(store: JobStore, priority: str) -> JobRecord:
    job = JobRecord(id=f"begin-{uuid.uuid4().hex}", app_id=APP, base_id=APP, input={"image_url": "x"},
                    priority=priority, seed=7, created_at=time.time())
    store.create(job)
    return job


@pytest.mark.parametrize("priority", ["normal", "low"])
def test_begin_reads_the_record_and_starts_it_like_get_then_start(store, priority):
    job = new_job(store, priority)
    seq = store.get(job.id).seq
    queued = keys.queued(APP, priority)
    assert store.r.zscore(queued, job.id) is not None
    record, started = store.begin(job.id, "w1", 15)
    assert (started.outcome, started.attempts, started.crashes) == ("started", 1, 0)
    assert record.id == job.id and record.app_id == APP and record.priority == priority
    assert record.seed == job.seed and record.input == job.input and record.status == JobStatus.IN_QUEUE
    after = store.get(job.id)
    assert after.status == JobStatus.IN_PROGRESS and after.attempts == 1
    assert store.r.zscore(queued, job.id) is None
    assert store.r.zscore(keys.RUNNING, job.id) is not None
    assert store.r.get(keys.job_lease(job.id)) == b"w1"
    watermark = int(store.r.get(keys.started_watermark(broker.queue_key(priority))))
    assert watermark >= seq
    assert [e["message"] for e in store.logs(job.id)] == ["attempt 1 started"]
    _, again = store.begin(job.id, "w2", 15)
    assert again.outcome == "busy"  # a live worker holds the lease


def test_begin_of_a_missing_job(store):
    record, started = store.begin(f"begin-{uuid.uuid4().hex}", "w1", 15)
    assert record is None and started.outcome == "missing"
