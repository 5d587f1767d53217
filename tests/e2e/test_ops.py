"""`darkroom jobs list | show | requeue | purge` against the session Redis (and worker), via CliRunner."""

from __future__ import annotations

import json
import os
import time
import uuid

import pytest
from click.testing import CliRunner

from darkroom.cli import main
from darkroom.cli.jobs import DURATION
from darkroom.job import JobRecord
from storage import keys
from storage.jobs import JobStore, redis_client
from storage.objects import LocalObjectStore
from tests.support.fal_queue import APP, submit, wait_done
from tests.support.fileserver import FileServer
from tests.support.harness import make_settings
from tests.support.images import gradient, png_bytes, png_data_uri

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]
DAY_S = 86400


def jobs_cli(settings, *args: str, code: int = 0):
    result = CliRunner().invoke(main, ["jobs", *args], env=settings.to_env(), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def test_durations():
    assert [DURATION.convert(v, None, None) for v in ("90", "90s", "30m", "1h", "7d", "2w", "1.5h")] == [
        90, 90, 1800, 3600, 7 * DAY_S, 14 * DAY_S, 5400
    ]


def test_list_and_show(client, settings):
    body = {"image_url": png_data_uri(gradient(8, 8)), "enable_solarize": True}
    sub = submit(client, body, f"{APP}/blur")
    wait_done(client, sub)
    rid = sub["request_id"]
    table = jobs_cli(settings, "list", "--app", f"{APP}/blur", "--status", "COMPLETED", "--limit", "500")
    assert table.output.splitlines()[0].split()[:3] == ["REQUEST", "ID", "APP"]
    assert any(line.startswith(rid) and "COMPLETED" in line for line in table.output.splitlines())
    rows = jobs_cli(settings, "list", "--app", f"{APP}/blur", "--json", "--limit", "500").output.splitlines()
    assert rid in [json.loads(r)["id"] for r in rows]
    assert all(json.loads(r)["app_id"] == f"{APP}/blur" for r in rows)
    for other in (["--status", "IN_QUEUE"], ["--status", "FAILED"], ["--older-than", "1h"]):
        assert rid not in jobs_cli(settings, "list", "--limit", "500", *other).output
    shown = json.loads(jobs_cli(settings, "show", rid).output)
    assert shown["record"]["status"] == "COMPLETED" and shown["record"]["worker"]
    assert any("completed in" in entry["message"] for entry in shown["logs"])
    assert 0 < shown["expires_in_s"] <= settings.retention_s
    missing = jobs_cli(settings, "show", str(uuid.uuid4()), code=1)
    assert "no job" in missing.output


def test_requeue_a_failed_job_runs_it_again(client, settings):
    files = FileServer()
    try:
        sub = submit(client, {"image_url": files.url("/file/late.png")})
        rid = sub["request_id"]
        failed = wait_done(client, sub)
        assert failed["error_type"] == "fetch_failed"
        dry = jobs_cli(settings, "requeue", "--failed", "--error-type", "fetch_failed", "--dry-run")
        assert f"{rid}  would be requeued" in dry.output
        files.add("late.png", png_bytes(gradient(8, 8)))
        assert f"{rid}  REQUEUED" in jobs_cli(settings, "requeue", rid).output
        done = wait_done(client, sub)
        assert done["status"] == "COMPLETED" and "error" not in done, done
        assert client.get(f"/{APP}/requests/{rid}").json()["images"][0]["width"] == 8
        record = json.loads(jobs_cli(settings, "show", rid).output)["record"]
        assert record["requeues"] == 1 and record["attempts"] == 1 and record["requeued_at"]
        assert any("requeued by an operator" in e["message"] for e in json.loads(
            jobs_cli(settings, "show", rid).output)["logs"])
        again = jobs_cli(settings, "requeue", rid, str(uuid.uuid4()), code=1)  # succeeded; unknown
        assert f"{rid}  SUCCEEDED" in again.output and "NOT_FOUND" in again.output
    finally:
        files.close()


def test_requeue_refuses_running_and_queued_jobs(redis_url, s3_endpoint):
    settings = make_settings(redis_url.rsplit("/", 1)[0] + "/14", s3_endpoint, 8992)
    store = JobStore(redis_client(settings.redis_url, 2), settings.retention_s)
    job = JobRecord(id=str(uuid.uuid4()), app_id=APP, base_id=APP, input={}, created_at=time.time())
    store.create(job)
    assert store.requeue(job) == "NOT_FINISHED"
    store.start(job, "w")
    assert store.requeue(job) == "NOT_FINISHED"
    store.fail(job, "internal_error", "boom")
    assert store.requeue(job) == "REQUEUED"
    again = store.get(job.id)
    assert again.status.value == "IN_QUEUE" and again.error is None and again.attempts == 0
    assert store.position(again) >= 0 and store.r.zscore(keys.queued(APP, "normal"), job.id)
    store.r.zrem(keys.queued(APP, "normal"), job.id)
    store.delete(job.id)


def _job(store: JobStore, created_at: float, finish: bool) -> str:
    job = JobRecord(id=str(uuid.uuid4()), app_id=APP, base_id=APP, input={}, created_at=created_at)
    store.create(job)
    if finish:
        store.start(job, "w")
        store.complete(job, {"images": []}, {})
    return job.id


def _put(objects: LocalObjectStore, key: str, age_s: float = 0) -> str:
    objects.put(key, b"x", "image/png")
    if age_s:
        then = time.time() - age_s
        os.utime(objects.path(key), (then, then))
    return key


def test_purge_removes_old_finished_jobs_expired_entries_and_orphans(redis_url, tmp_path):
    settings = make_settings(redis_url.rsplit("/", 1)[0] + "/14", None, 8991, local_storage_dir=tmp_path)
    store = JobStore(redis_client(settings.redis_url, 2), settings.retention_s)
    objects = LocalObjectStore(tmp_path, settings.api_base_url)
    now = time.time()
    old_done = _job(store, now - 10 * DAY_S, finish=True)
    old_queued = _job(store, now - 10 * DAY_S, finish=False)
    recent = _job(store, now, finish=True)
    expired = str(uuid.uuid4())  # Redis expired its record; the index entry and objects stay behind
    store.r.zadd(keys.JOBS_INDEX, {expired: now - 9 * DAY_S})
    gone = [_put(objects, f"inputs/{old_done}/image_url"), _put(objects, f"{old_done}/0.png"),
            _put(objects, f"{expired}/0.png"), _put(objects, "uploads/old.png", 8 * DAY_S),
            _put(objects, f"{uuid.uuid4()}/0.png", 8 * DAY_S)]
    kept = [_put(objects, f"{recent}/0.png"), _put(objects, "uploads/new.png"),
            _put(objects, f"inputs/{uuid.uuid4()}/image_url"),  # a submit whose record is not written yet
            _put(objects, "someone-else/notes.txt", 30 * DAY_S)]

    dry = json.loads(jobs_cli(settings, "purge", "--older-than", "7d", "--dry-run").output)
    assert dry["dry_run"] and dry["records"] >= 1 and dry["objects"] >= len(gone)
    assert all(objects.path(k).exists() for k in gone) and store.get(old_done)

    report = json.loads(jobs_cli(settings, "purge", "--older-than", "7d").output)
    assert report["records"] >= 1 and report["expired_index_entries"] >= 1
    assert old_queued in report["skipped_unfinished"]
    assert not any(objects.path(k).exists() for k in gone)
    assert all(objects.path(k).exists() for k in kept)
    assert store.get(old_done) is None and store.logs(old_done) == []
    assert store.r.zscore(keys.JOBS_INDEX, old_done) is None
    assert store.r.zscore(keys.JOBS_INDEX, expired) is None
    assert store.get(recent) and store.get(old_queued)
    assert store.r.zscore(keys.JOBS_INDEX, recent) and store.r.zscore(keys.JOBS_INDEX, old_queued)
    store.r.zrem(keys.queued(APP, "normal"), old_queued)
    for rid in (recent, old_queued):
        store.delete(rid)
