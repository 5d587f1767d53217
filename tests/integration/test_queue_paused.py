"""Queue behaviour with no worker consuming (a separate Redis database): positions, cancel, ids."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from fastapi.testclient import TestClient

from darkroom.job import JobRecord, LogEntry
from storage import keys
from storage.jobs import JobStore
from tests.support.fal_queue import APP, image_body, log_messages, submit
from tests.support.harness import ROOT, make_settings
from tests.support.images import png_data_uri


@pytest.fixture(scope="module")
def paused(redis_url, s3_endpoint):
    """An API whose jobs no worker picks up (Redis db 1), plus a worker context on the same db."""
    from api.app import create_app

    settings = make_settings(redis_url.rsplit("/", 1)[0] + "/1", s3_endpoint, 8999)
    with TestClient(create_app(settings)) as client:
        yield client, settings


def store_of(client) -> JobStore:
    return client.app.state.services.store


def test_queue_positions_count_down(paused):
    client, _ = paused
    subs = [submit(client, image_body()) for _ in range(3)]
    store = store_of(client)
    base = subs[0]["queue_position"]
    assert [s["queue_position"] for s in subs] == [base, base + 1, base + 2]
    # drain anything older than our three, as a worker would
    older = store.r.zrange("darkroom:queued:fal-ai/post-processing:normal", 0, base - 1) if base else []
    for job_id in older:
        store.start(store.get(job_id.decode()))
    seen = []
    for sub in subs:
        last = client.get(subs[-1]["status_url"])
        assert last.status_code == 202
        assert last.json()["status"] == "IN_QUEUE" and last.json()["logs"] is None
        seen.append(last.json()["queue_position"])
        assert store.start(store.get(sub["request_id"])).outcome == "started"
    assert seen == [2, 1, 0]
    running = client.get(subs[-1]["status_url"], params={"logs": "true"}).json()
    assert running["status"] == "IN_PROGRESS" and "queue_position" not in running
    assert log_messages(running) == ["attempt 1 started"]  # logged by start


def test_low_priority_waits_behind_normal(paused):
    client, _ = paused
    store = store_of(client)
    for job_id in store.r.zrange("darkroom:queued:fal-ai/post-processing:normal", 0, -1):
        store.start(store.get(job_id.decode()))
    low = submit(client, image_body(4, 4), headers={"X-Fal-Queue-Priority": "low"})
    normal = submit(client, image_body())
    assert normal["queue_position"] == 0
    assert client.get(low["status_url"]).json()["queue_position"] == 1
    headers = {"X-Fal-Queue-Priority": "now"}
    bad = client.post(f"/{APP}", json={"image_url": "http://x/y.png"}, headers=headers)
    assert bad.status_code == 422 and "X-Fal-Queue-Priority" in bad.json()["detail"]


def test_cancelled_queued_job_never_runs(paused):
    from worker.context import build_context
    from worker.runner import run_job

    client, settings = paused
    sub = submit(client, image_body(enable_solarize=True))
    resp = client.put(sub["cancel_url"])
    assert resp.status_code == 202 and resp.json() == {"status": "CANCELLATION_REQUESTED"}
    status = client.get(sub["status_url"], params={"logs": 1})
    assert status.status_code == 200
    assert status.json()["status"] == "COMPLETED" and status.json()["error_type"] == "request_cancelled"
    # the message is still in the broker: the worker that gets it must do nothing
    ctx = build_context(settings)
    run_job(ctx, sub["request_id"])
    job = ctx.store.get(sub["request_id"])
    assert job.attempts == 0 and job.error["error_type"] == "request_cancelled"
    assert ctx.store.logs(job.id) == []
    result = client.get(sub["response_url"])
    assert result.status_code == 400 and result.json()["error_type"] == "request_cancelled"
    assert client.put(sub["cancel_url"]).json() == {"status": "ALREADY_COMPLETED"}


def test_data_uri_inputs_are_stored_as_objects(paused):
    client, _ = paused
    noise = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    uri = png_data_uri(noise)
    assert len(uri) > 50_000
    sub = submit(client, {"image_url": uri})
    job: JobRecord = store_of(client).get(sub["request_id"])
    assert job.input["image_url"].startswith("darkroom-object:inputs/")
    assert len(store_of(client).r.hget(f"darkroom:job:{job.id}", "input")) < 2000
    assert isinstance(job.seed, int) and job.input["seed"] == job.seed


def test_only_first_completion_wins(paused):
    client, _ = paused
    store = store_of(client)
    job = store.get(submit(client, image_body())["request_id"])
    assert store.start(job, "w1").outcome == "started"
    assert store.start(job, "w2").outcome == "busy"  # w1 holds the lease
    store.release(job.id, "w2")  # only the holder can release
    assert store.start(job, "w2").outcome == "busy"
    store.release(job.id, "w1")  # as if w1's lease expired: the next delivery is a crash
    restarted = store.start(job, "w2")
    assert (restarted.outcome, restarted.crashes) == ("crashed", 1)
    assert store.complete(job, {"images": []}, {"inference_time": 0.1}).won is True
    assert store.complete(job, {"images": ["late"]}, {}).won is False
    assert store.fail(job, "internal_error", "late").won is False
    assert store.start(job).outcome == "completed"
    final = store.get(job.id)
    assert final.result == {"images": []} and final.error is None and final.attempts == 2


def test_api_does_not_import_torch():
    code = textwrap.dedent(
        """
        import sys
        from darkroom.settings import Settings
        from api.app import create_app
        app = create_app(Settings(redis_url="redis://127.0.0.1:1/0"))
        assert app.openapi()["paths"]
        print("torch" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def _drain(store: JobStore, settings) -> None:
    """Empty the broker list (no worker consumes this database): as if every message had been taken."""
    from darkroom import broker

    store.r.delete(broker.queue_key("normal"), broker.queue_key("low"))


def _queued_message_ids(store: JobStore, priority: str = "normal") -> list[str]:
    import base64
    import json

    from darkroom import broker

    raw = store.r.lrange(broker.queue_key(priority), 0, -1)
    return [json.loads(base64.b64decode(json.loads(m)["body"]))[0][0] for m in raw]


PATIENT, EAGER = 3600.0, 0.0  # recovery graces: "not yet" and "now" without racing the clock


def test_recovery_resends_a_queued_job_whose_message_was_lost(paused):
    """Lost by kombu's pop-then-record window: a later job of the same list already started, and the
    job still waits. Past the grace it is sent again, once, to the front of its list."""
    from storage.recovery import Recovery

    client, settings = paused
    store = store_of(client)
    _drain(store, settings)
    lost, later = submit(client, image_body()), submit(client, image_body())
    store.r.rpop("darkroom")  # the oldest message (lost's) popped and never recorded
    assert lost["request_id"] not in Recovery(store.r, EAGER).sweep([APP]).queued  # nothing says lost yet
    assert store.start(store.get(later["request_id"]), "w").outcome == "started"  # a later one started
    assert lost["request_id"] not in Recovery(store.r, PATIENT).sweep([APP]).queued  # within the grace
    resent = Recovery(store.r, EAGER).sweep([APP])
    assert lost["request_id"] in resent.queued and later["request_id"] not in resent.queued
    assert _queued_message_ids(store)[-1] == lost["request_id"]  # the front: BRPOP takes it next
    assert lost["request_id"] not in Recovery(store.r, PATIENT).sweep([APP]).queued  # marked just now
    _drain(store, settings)


def test_recovery_resends_queued_jobs_when_their_list_is_empty(paused):
    from storage.recovery import Recovery

    client, settings = paused
    store = store_of(client)
    _drain(store, settings)
    waiting = [submit(client, image_body())["request_id"] for _ in range(3)]
    assert not set(waiting) & set(Recovery(store.r, EAGER).sweep([APP]).queued)  # messages are there
    _drain(store, settings)  # every message taken, none started
    assert set(waiting) <= set(Recovery(store.r, EAGER).sweep([APP]).queued)
    _drain(store, settings)


def test_recovery_resends_a_running_job_whose_lease_lapsed(paused):
    from storage.recovery import Recovery

    client, settings = paused
    store = store_of(client)
    _drain(store, settings)
    job = store.get(submit(client, image_body())["request_id"])
    assert store.start(job, "w1", lease_ttl_s=60).outcome == "started"
    assert job.id not in Recovery(store.r, EAGER).sweep([APP]).running  # w1 holds the lease
    store.r.delete(keys.job_lease(job.id))  # w1 stopped renewing it (dead or stalled): it lapsed
    assert job.id in Recovery(store.r, EAGER).sweep([APP]).running
    assert _queued_message_ids(store)[-1] == job.id
    restarted = store.start(job, "w2")
    assert (restarted.outcome, restarted.crashes) == ("crashed", 1)
    assert store.complete(job, {"images": []}, {}, worker="w1").superseded  # w1 resumes: records nothing
    assert store.complete(job, {"images": []}, {}, worker="w2").won
    _drain(store, settings)


def test_a_retry_holds_its_job_until_it_is_due(paused):
    from storage.recovery import Recovery

    client, settings = paused
    store = store_of(client)
    _drain(store, settings)
    job = store.get(submit(client, image_body())["request_id"])
    assert store.start(job, "w1").outcome == "started"
    assert store.mark_retry(job.id, "w1", hold_s=60)
    assert not store.mark_retry(job.id, "w2", hold_s=60)  # not w2's job
    assert job.id not in Recovery(store.r, EAGER).sweep([APP]).running
    store.r.delete(keys.job_lease(job.id))  # the retry's message was lost and its hold lapsed
    assert job.id in Recovery(store.r, EAGER).sweep([APP]).running
    assert store.start(job, "w2").outcome == "retry"  # a retry, not a crash
    _drain(store, settings)


def test_completion_logs_and_releases_the_lease_in_one_step(paused):
    client, _ = paused
    store = store_of(client)
    job = store.get(submit(client, image_body())["request_id"])
    assert store.start(job, "w1").outcome == "started"
    assert store.r.get(keys.job_lease(job.id)) == b"w1"
    done = store.complete(job, {"images": []}, {}, LogEntry.now("completed in 1.0 ms"), worker="w1")
    assert done.won and done.started_at and done.completed_at >= done.started_at
    assert not store.r.exists(keys.job_lease(job.id))
    assert [e["message"] for e in store.logs(job.id)] == ["attempt 1 started", "completed in 1.0 ms"]
    late = store.complete(job, {"images": ["late"]}, {}, LogEntry.now("never"), worker="w1")
    assert not late.won and [e["message"] for e in store.logs(job.id)][-1] == "completed in 1.0 ms"
