"""``JobStore.step_checks``: a batch's step-boundary question in one round trip, answering exactly what
``step_check`` answers for each job (real redis-server)."""

from __future__ import annotations

import uuid

import pytest

from storage import keys
from storage.jobs import JobStore, redis_client

pytestmark = pytest.mark.timeout(30)


def test_step_checks_answers_like_step_check_for_each_job(redis_url):
    store = JobStore(redis_client(redis_url, 5), retention_s=60)
    ids = [f"steps-{uuid.uuid4().hex}" for _ in range(4)]
    cancelled, taken, plain, missing = ids
    store.r.hset(keys.job(cancelled),
                 mapping={"status": "IN_PROGRESS", "cancel_requested": "1", "worker": "w1"})
    store.r.hset(keys.job(taken), mapping={"status": "IN_PROGRESS", "worker": "w2"})
    store.r.hset(keys.job(plain), mapping={"status": "IN_PROGRESS", "worker": "w1"})
    try:
        together = store.step_checks(ids)
        assert together == [store.step_check(rid) for rid in ids]
        assert together == [(True, "w1"), (False, "w2"), (False, "w1"), (False, "")]
        assert store.step_checks([taken]) == [(False, "w2")]
    finally:
        store.r.delete(*(keys.job(rid) for rid in ids))
