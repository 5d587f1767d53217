"""Fault tests: every accepted job ends exactly once, whatever crashes.

Each test counts side effects (COMPLETED transitions seen on the events channels, object keys
written), not executions. They share one Redis (AOF on, so it can be restarted), one moto S3 server
and one API; each starts the worker processes it needs. Timeouts are short here (visibility timeout
3 s, restore sweep 0.5 s, heartbeat TTL 1 s, hard limit 2 s); production defaults are 3600 s, 30 s,
15 s and 900 s (docs/configuration.md).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
import redis

from darkroom.broker import RUN_JOB_TASK, make_celery
from darkroom.cli.embedded import free_port, start_redis
from storage.webhooks import WebhookStore
from tests.support.fal_queue import image_body, submit
from tests.support.harness import ServerThread, make_settings, start_worker, stop_process, wait_for
from tests.support.images import gradient, png_data_uri
from tests.support.servers import WebhookReceiver

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(120)]
FAULTS = "darkroom-test/faults"
FAST = dict(
    visibility_timeout_s=3,
    task_soft_time_limit_s=1.8,
    task_hard_time_limit_s=2.5,
    broker_restore_interval_s=0.5,
    heartbeat_interval_s=0.3,
    heartbeat_ttl_s=1.0,
    retry_backoff_base_s=0.05,
    retry_backoff_max_s=0.5,
    retry_max=12,
    shutdown_grace_s=5,
    max_wait_ms=150,
    plugins="tests.support.fault_plugin",
    recovery_interval_s=0.3,
    recovery_grace_s=1.0,
    idempotency_claim_ttl_s=2,
    webhook_timeout_s=3.0,
    redis_socket_timeout_s=1.0,
)


@pytest.fixture(scope="module")
def env(tmp_path_factory, s3_endpoint) -> Iterator[dict]:
    data = tmp_path_factory.mktemp("fault-redis")
    port = free_port()
    proc, url = start_redis(data, port=port)
    settings = make_settings(url, s3_endpoint, free_port(), **FAST)
    from api.app import create_app

    api = ServerThread(create_app(settings), settings.port)
    api.start()
    wait_for(lambda: _ok(settings.api_base_url + "/health"), timeout_s=15)
    state = {"settings": settings, "redis": proc, "redis_dir": data, "redis_port": port, "workers": []}
    state["events"] = EventLog(url)
    yield state
    for w in state["workers"]:
        stop_process(w, timeout_s=5)
    state["events"].stop()
    api.stop()
    state["redis"].terminate()
    state["redis"].wait(timeout=10)


class EventLog:
    """COMPLETED transitions per request id, counted from the jobs' event channels."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.counts: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                client = redis.Redis.from_url(self.url, socket_timeout=1)
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.psubscribe("darkroom:events:*")
                while not self._stop.is_set():
                    msg = pubsub.get_message(timeout=0.2)
                    if msg and msg["data"] == b"COMPLETED":
                        self.counts[msg["channel"].decode().rsplit(":", 1)[1]] += 1
            except (redis.RedisError, OSError):
                time.sleep(0.1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


def spawn(env: dict, name: str, *args: str) -> subprocess.Popen:
    proc = start_worker(env["settings"], f"{name}-{time.monotonic_ns()}@faults", *args)
    env["workers"].append(proc)
    return proc


def only_worker(env: dict, name: str, concurrency: int) -> subprocess.Popen:
    """Stop every other worker, start one and wait until it is consuming (its heartbeat is up)."""
    for w in env["workers"]:
        stop_process(w, timeout_s=10)
    proc = spawn(env, name, "--concurrency", str(concurrency))
    key = f"darkroom:heartbeat:{socket.gethostname()}:{proc.pid}"
    client = redis.Redis.from_url(env["settings"].redis_url)
    wait_for(lambda: client.exists(key), timeout_s=30)
    return proc


def ensure_worker(env: dict) -> None:
    """At least one live worker (tests that do not kill workers share whatever is running)."""
    if not any(w.poll() is None for w in env["workers"]):
        spawn(env, "shared", "--concurrency", "4")


def submit_faults(env: dict, count: int, webhook: str | None = None, **fields) -> list[str]:
    """``count`` requests to the fault app with ``fields`` (its ``mode`` and such): their ids."""
    body = image_body(16, 16, **fields)
    params = {"fal_webhook": webhook} if webhook else None
    base = env["settings"].api_base_url
    return [submit(base, body, FAULTS, params=params)["request_id"] for _ in range(count)]


def store(env: dict):
    from storage.jobs import JobStore, redis_client

    s = env["settings"]
    return JobStore(redis_client(s.redis_url, 2), s.retention_s)


def wait_store_status(env: dict, ids: list[str], status: str, timeout_s: float = 40) -> None:
    """Wait until every job's record in Redis has ``status`` (printing them all when it times out)."""
    js = store(env)
    try:
        wait_for(lambda: all(js.get(i).status == status for i in ids), timeout_s=timeout_s, interval_s=0.05)
    except BaseException:
        for i in ids:
            job = js.get(i)
            messages = [e["message"] for e in js.logs(i)]
            print(job.id, job.status, job.attempts, job.crashes, job.error, messages)
        raise


def object_keys(env: dict, request_id: str) -> list[str]:
    from storage.objects import build_object_store

    objects = build_object_store(env["settings"])
    listing = objects.client.list_objects_v2(Bucket=objects.bucket, Prefix=f"{request_id}/")
    return [o["Key"] for o in listing.get("Contents", [])]


def assert_done_once(env: dict, ids: list[str]) -> list:
    js = store(env)
    jobs = [js.get(i) for i in ids]
    for job in jobs:
        assert job.status == "COMPLETED"
        wait_for(lambda job=job: env["events"].counts[job.id] >= 1, timeout_s=5)
        assert env["events"].counts[job.id] == 1, f"{job.id} completed {env['events'].counts[job.id]} times"
        if job.error is None:
            assert object_keys(env, job.id) == [f"{job.id}/0.png"]
    return jobs


def test_sigkill_worker_mid_batch(env):
    first = only_worker(env, "a", 4)
    ids = submit_faults(env, 4, mode="slow", sleep_ms=1200)
    wait_store_status(env, ids, "IN_PROGRESS")
    first.send_signal(signal.SIGKILL)
    first.wait()
    spawn(env, "b", "--concurrency", "4")
    wait_store_status(env, ids, "COMPLETED")
    jobs = assert_done_once(env, ids)
    assert [(j.error, j.crashes, j.attempts) for j in jobs] == [(None, 1, 2)] * 4


def messages_gone(env: dict, request_id: str) -> bool:
    """No message for ``request_id`` waits on a broker list or is held unacknowledged by a worker:
    every copy sent was taken and acknowledged."""
    client = redis.Redis.from_url(env["settings"].redis_url)
    lists = [m for q in ("darkroom", "darkroom:9", "darkroom.webhooks") for m in client.lrange(q, 0, -1)]
    held = client.hvals("unacked")
    return not any(request_id.encode() in m for m in lists + held)


def test_duplicate_delivery_has_one_effect(env):
    ensure_worker(env)
    ids = submit_faults(env, 1)
    wait_store_status(env, ids, "COMPLETED")
    celery = make_celery(env["settings"])
    for _ in range(2):
        celery.send_task(RUN_JOB_TASK, args=[ids[0]], queue="darkroom")
    wait_for(lambda: messages_gone(env, ids[0]), timeout_s=20)  # both duplicates consumed
    (job,) = assert_done_once(env, ids)
    assert job.attempts == 1


def test_failing_item_does_not_sink_its_batch(env):
    ensure_worker(env)
    # keeps the device busy while the rest queue up: long enough for three jobs to be fetched and
    # prepared meanwhile on a loaded machine (at 400 ms the good ones once ran before the bad one came)
    first = submit_faults(env, 1, mode="slow", sleep_ms=1200)
    wait_store_status(env, first, "IN_PROGRESS")
    ids = first + submit_faults(env, 2, mode="slow", sleep_ms=50)
    bad = submit_faults(env, 1, mode="fail")
    wait_store_status(env, ids + bad, "COMPLETED")
    jobs = assert_done_once(env, ids + bad)
    assert all(j.error is None for j in jobs[:3])
    assert jobs[3].error["error_type"] == "internal_error" and "injected" in jobs[3].error["detail"]
    # the good ones shared a batch with the bad one, which failed; they were re-run alone
    assert any(j.metrics["batch_sizes"][0] > 1 and j.metrics["batch_sizes"][-1] == 1 for j in jobs[:3])


@pytest.mark.timeout(240)
def test_poison_job_fails_as_worker_crash_and_the_queue_flows(env):
    poison = submit_faults(env, 1, mode="crash")
    behind = submit_faults(env, 3)
    js = store(env)
    deadline = time.monotonic() + 150
    proc = only_worker(env, "p", 1)
    while js.get(poison[0]).status != "COMPLETED":
        assert time.monotonic() < deadline, "poison job never given up"
        if proc.poll() is not None:  # what a supervisor (compose restart policy) does
            proc = spawn(env, "p", "--concurrency", "1")
        time.sleep(0.1)
    wait_store_status(env, behind, "COMPLETED", timeout_s=60)
    jobs = assert_done_once(env, poison + behind)
    assert jobs[0].error["error_type"] == "worker_crash" and jobs[0].crashes == 3
    assert all(j.error is None for j in jobs[1:])
    resp = httpx.get(f"{env['settings'].api_base_url}/{FAULTS}/requests/{poison[0]}")
    assert resp.status_code == 500 and resp.json()["error_type"] == "worker_crash"


def test_sigterm_during_a_batch_loses_nothing(env):
    first = only_worker(env, "t", 2)
    ids = submit_faults(env, 6, mode="slow", sleep_ms=700)
    wait_for(lambda: sum(store(env).get(i).status == "IN_PROGRESS" for i in ids) >= 1, timeout_s=30)
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=20) == 0
    spawn(env, "u", "--concurrency", "4")
    wait_store_status(env, ids, "COMPLETED")
    jobs = assert_done_once(env, ids)
    assert all(j.error is None for j in jobs)
    assert all(j.crashes == 0 for j in jobs), "a graceful stop is not a crash"


def test_storage_outage_during_uploads(env, s3_server):
    only_worker(env, "s", 4)
    ids = submit_faults(env, 4, mode="slow", sleep_ms=400)
    wait_for(lambda: all(store(env).get(i).status == "IN_PROGRESS" for i in ids), timeout_s=30)
    from moto.server import ThreadedMotoServer

    s3_server["server"].stop()
    time.sleep(3.0)
    s3_server["server"] = ThreadedMotoServer(ip_address="127.0.0.1", port=s3_server["port"], verbose=False)
    s3_server["server"].start()
    wait_store_status(env, ids, "COMPLETED", timeout_s=60)
    jobs = assert_done_once(env, ids)
    for job in jobs:
        assert job.error is None or job.error["error_type"] == "storage_unavailable"
    assert any(j.error is None for j in jobs)
    retried = [j for j in jobs if any("will retry" in e["message"] for e in store(env).logs(j.id))]
    assert retried, "the outage should have caused retries"


def test_redis_restart_with_jobs_queued_and_running(env):
    worker = only_worker(env, "r", 2)
    ids = submit_faults(env, 8, mode="slow", sleep_ms=300)
    wait_for(lambda: any(store(env).get(i).status == "IN_PROGRESS" for i in ids), timeout_s=30)
    client = redis.Redis(port=env["redis_port"])
    client.shutdown(save=False)  # AOF (appendfsync everysec) keeps what was written
    env["redis"].wait(timeout=10)
    time.sleep(0.5)
    proc, _ = start_redis(env["redis_dir"], port=env["redis_port"])
    env["redis"] = proc
    wait_store_status(env, ids, "COMPLETED", timeout_s=60)
    assert worker.poll() is None, "the worker reconnected without a restart"
    jobs = assert_done_once(env, ids)
    assert all(j.error is None for j in jobs)


def test_load_two_thousand_jobs_two_workers(tmp_path_factory):
    """2,000 small jobs submitted concurrently across two worker processes: each COMPLETED once."""
    data = tmp_path_factory.mktemp("load")
    proc, url = start_redis(data / "redis", appendonly=False)
    settings = make_settings(url, None, free_port(), local_storage_dir=data / "objects", **FAST)
    from api.app import create_app

    api = ServerThread(create_app(settings), settings.port)
    api.start()
    events = EventLog(url)
    workers = [start_worker(settings, f"load{i}-{os.getpid()}@load") for i in range(2)]
    try:
        wait_for(lambda: _ok(settings.api_base_url + "/health"), timeout_s=15)
        ids, elapsed = _submit_concurrently(settings.api_base_url, 2000, threads=16)
        from storage.jobs import JobStore, redis_client

        js = JobStore(redis_client(url, 2), settings.retention_s)
        last = ids[-50:]
        wait_for(lambda: all(js.get(i).status == "COMPLETED" for i in last), timeout_s=120, interval_s=0.5)
        wait_for(lambda: sum(js.get(i).status == "COMPLETED" for i in ids) == len(ids), timeout_s=60)
        jobs = [js.get(i) for i in ids]
        assert all(j.error is None for j in jobs)
        wait_for(lambda: len(events.counts) >= len(ids), timeout_s=10)
        assert all(events.counts[i] == 1 for i in ids)
        _report(jobs, elapsed)
    finally:
        for w in workers:
            stop_process(w)
        events.stop()
        api.stop()
        proc.terminate()


def _submit_concurrently(base: str, n: int, threads: int) -> tuple[list[str], float]:
    from concurrent.futures import ThreadPoolExecutor

    body = {"image_url": png_data_uri(gradient(16, 16)), "enable_solarize": True}
    local = threading.local()

    def one(_: int) -> str:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=base, timeout=30)
        resp = local.client.post("/fal-ai/post-processing", json=body)
        assert resp.status_code == 200, resp.text
        return resp.json()["request_id"]

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        ids = list(pool.map(one, range(n)))
    return ids, time.perf_counter() - t0


def _report(jobs: list, submit_s: float) -> None:
    lat = sorted((j.completed_at - j.created_at) * 1000 for j in jobs)
    span = max(j.completed_at for j in jobs) - min(j.created_at for j in jobs)

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))]

    print(
        f"\nload: {len(jobs)} jobs, submit {len(jobs) / submit_s:.0f}/s, "
        f"end-to-end {len(jobs) / span:.0f} jobs/s; latency ms p50 {pct(0.5):.0f} "
        f"p90 {pct(0.9):.0f} p99 {pct(0.99):.0f} max {lat[-1]:.0f}"
    )


def test_job_whose_message_was_lost_is_sent_again(env):
    """The record exists but the broker message never did (what kombu's pop-then-record window can
    leave after a SIGKILL): the orphan sweeper re-sends it and it completes once."""
    import uuid

    from darkroom.job import JobRecord

    ensure_worker(env)
    js = store(env)
    job = JobRecord(
        id=str(uuid.uuid4()), app_id=FAULTS, base_id=FAULTS, created_at=time.time(), seed=1,
        input={"image_url": png_data_uri(gradient(8, 8)), "mode": "ok", "seed": 1},
    )
    js.create(job)  # stored, never enqueued
    wait_store_status(env, [job.id], "COMPLETED", timeout_s=40)
    (done,) = assert_done_once(env, [job.id])
    assert done.error is None and done.attempts == 1


def webhook_posts(receiver: WebhookReceiver) -> Counter[str]:
    return Counter(r.json()["request_id"] for r in receiver.received)


def assert_webhooks_once(receiver: WebhookReceiver, ids: list[str]) -> None:
    wait_for(lambda: set(ids) <= set(webhook_posts(receiver)), timeout_s=40)
    posts = webhook_posts(receiver)
    assert all(posts[i] == 1 for i in ids), {i: posts[i] for i in ids if posts[i] != 1}
    assert all(r.headers["webhook-id"] for r in receiver.received)


def kill_and_restart_redis(env: dict, down_s: float = 0.5) -> None:
    env["redis"].kill()  # SIGKILL: what the kernel holds of the AOF survives, as in a real crash
    env["redis"].wait(timeout=10)
    time.sleep(down_s)
    env["redis"], _ = start_redis(env["redis_dir"], port=env["redis_port"])


@pytest.mark.parametrize("busy", [1, 4, 8])
def test_redis_killed_with_slots_partly_busy_and_webhooks_in_flight(env, busy):
    """Celery 5.7 / kombu 5.7 workers exit on a Redis restart when some slots are busy and some free;
    with the pinned versions they reconnect. Jobs and webhooks in flight complete once."""
    worker = only_worker(env, f"k{busy}", 8)
    receiver = WebhookReceiver(delay_s=0.3)  # deliveries in flight when Redis dies
    try:
        early = submit_faults(env, 3, webhook=receiver.url)
        wait_store_status(env, early, "COMPLETED")
        slow = submit_faults(env, busy, webhook=receiver.url, mode="slow", sleep_ms=1500)
        wait_for(lambda: sum(store(env).get(i).status == "IN_PROGRESS" for i in slow) == busy, timeout_s=30)
        kill_and_restart_redis(env)
        wait_store_status(env, slow, "COMPLETED", timeout_s=60)
        assert worker.poll() is None, "the worker must survive a Redis restart"
        jobs = assert_done_once(env, early + slow)
        assert all(j.error is None for j in jobs)
        assert_webhooks_once(receiver, early + slow)
    finally:
        receiver.close()


def test_stalled_worker_is_taken_over_and_drops_its_jobs_quietly(env, tmp_path):
    """SIGSTOP past the lease: another worker takes the jobs over; after SIGCONT the stalled one
    neither records a failure nor exits (its watchdog does not count the stopped time)."""
    log_path = tmp_path / "stalled.log"
    with open(log_path, "wb") as log_file:
        stalled = only_worker(env, "stall", 4)
        stop_process(stalled)
        stalled = start_worker(env["settings"], f"stall-{time.monotonic_ns()}@faults", "--concurrency", "4",
                               stderr=log_file)
        env["workers"].append(stalled)
        key = f"darkroom:heartbeat:{socket.gethostname()}:{stalled.pid}"
        wait_for(lambda: redis.Redis.from_url(env["settings"].redis_url).exists(key), timeout_s=30)
        receiver = WebhookReceiver()
        try:
            ids = submit_faults(env, 4, webhook=receiver.url, mode="slow", sleep_ms=1500)
            wait_store_status(env, ids, "IN_PROGRESS")
            stalled.send_signal(signal.SIGSTOP)
            spawn(env, "rescuer", "--concurrency", "4")
            wait_store_status(env, ids, "COMPLETED", timeout_s=40)  # past the hard limit (2.5 s) too
            stalled.send_signal(signal.SIGCONT)
            wait_for(lambda: log_path.read_bytes().count(b"dropping this attempt") == len(ids), timeout_s=20)
            assert stalled.poll() is None, "a resumed worker must not exit"
            jobs = assert_done_once(env, ids)
            assert all(j.error is None and j.crashes == 1 for j in jobs)
            assert_webhooks_once(receiver, ids)
        finally:
            stalled.send_signal(signal.SIGCONT)
            receiver.close()


def test_worker_sigkilled_with_default_visibility_recovers_from_leases(env):
    """The broker would redeliver after an hour; the lapsed leases bring the jobs back in seconds."""
    defaults = env["settings"].model_copy(update={
        "visibility_timeout_s": 3600, "broker_restore_interval_s": 30.0,
        "task_soft_time_limit_s": 600, "task_hard_time_limit_s": 900,
    })
    for w in env["workers"]:
        stop_process(w, timeout_s=10)
    doomed = start_worker(defaults, f"doomed-{time.monotonic_ns()}@faults", "--concurrency", "4")
    env["workers"].append(doomed)
    receiver = WebhookReceiver()
    try:
        ids = submit_faults(env, 4, webhook=receiver.url, mode="slow", sleep_ms=1500)
        wait_store_status(env, ids, "IN_PROGRESS")
        doomed.kill()
        doomed.wait()
        heir = start_worker(defaults, f"heir-{time.monotonic_ns()}@faults", "--concurrency", "4")
        env["workers"].append(heir)
        wait_store_status(env, ids, "COMPLETED", timeout_s=40)
        jobs = assert_done_once(env, ids)
        assert [(j.error, j.crashes) for j in jobs] == [(None, 1)] * 4
        assert_webhooks_once(receiver, ids)
    finally:
        receiver.close()


def test_webhook_whose_message_was_lost_is_delivered_once(env):
    """The job completed and its delivery record exists, but the message was popped and never
    recorded (kombu's window): the recovery sweep sends it again; a later duplicate posts nothing."""
    import uuid

    from darkroom import broker
    from darkroom.job import JobRecord

    for w in env["workers"]:
        stop_process(w, timeout_s=10)
    receiver = WebhookReceiver()
    try:
        js = store(env)
        job = JobRecord(id=str(uuid.uuid4()), app_id=FAULTS, base_id=FAULTS, created_at=time.time(), seed=1,
                        input={"image_url": "x", "seed": 1}, webhook_url=receiver.url)
        js.create(job)
        js.start(job, "ghost")
        assert js.complete(job, {"images": []}, {}, worker="ghost").won
        client = redis.Redis.from_url(env["settings"].redis_url)
        assert job.id.encode() in client.rpop("darkroom.webhooks")  # popped, never recorded
        ensure_worker(env)
        assert_webhooks_once(receiver, [job.id])
        wait_for(lambda: js.get(job.id) and WebhookStore(js.r, 60).get(job.id)["state"] == "delivered")
        broker.push(client, broker.WEBHOOK_QUEUE, broker.webhook_message(job.id))  # comes back
        wait_for(lambda: messages_gone(env, job.id), timeout_s=20)
        assert webhook_posts(receiver)[job.id] == 1
    finally:
        receiver.close()


def test_redis_dying_between_idempotency_claim_and_creation(env):
    """The API claimed the key, then Redis died before the job was created: the claim survives the
    restart (AOF) but expires within idempotency_claim_ttl_s, so the client's retry gets through, and
    the key then maps to exactly one job."""
    import asyncio

    from api.app import build_services
    from api.idempotency import fingerprint, submit_once
    from darkroom.apps import APPS

    settings = env["settings"]
    svc = build_services(settings)
    body = {"image_url": png_data_uri(gradient(8, 8))}
    same_body = fingerprint(FAULTS, APPS[FAULTS].input_model.model_validate(body))

    async def submit_while_redis_dies(record):
        kill_and_restart_redis(env, down_s=0.2)
        raise redis.ConnectionError("Redis went away before the job was created")

    with pytest.raises(redis.ConnectionError):
        asyncio.run(submit_once(svc, "order-crash", same_body, submit_while_redis_dies))
    url = f"{settings.api_base_url}/{FAULTS}"
    headers = {"Idempotency-Key": "order-crash"}
    statuses = []

    def accepted():
        resp = httpx.post(url, json=body, headers=headers, timeout=10)
        statuses.append(resp.status_code)
        return resp if resp.status_code == 200 else None

    first = wait_for(accepted, timeout_s=15, interval_s=0.2)
    assert 429 in statuses[:1], "the claim outlived the restart and was honoured at first"
    again = httpx.post(url, json=body, headers=headers, timeout=10)
    assert again.json()["request_id"] == first.json()["request_id"]
    ensure_worker(env)
    wait_store_status(env, [first.json()["request_id"]], "COMPLETED")
