"""Prometheus metrics on the API and on a worker, and the request id on every worker log line."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from darkroom.apps import APPS
from darkroom.cli.embedded import free_port
from darkroom.logs import JsonFormatter, RequestIdFilter, TextFormatter, request_context
from tests.support.fal_queue import APP, submit, wait_done
from tests.support.harness import make_settings, start_worker, stop_process, wait_for
from tests.support.images import gradient, png_data_uri

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


def test_api_metrics_show_queue_depth_per_app_and_submits(client):
    before = client.get("/metrics")
    assert before.status_code == 200 and before.headers["content-type"].startswith("text/plain")
    assert sample(before.text, "darkroom_redis_up") == 1
    depths = {
        (s.labels["app"], s.labels["priority"])
        for f in text_string_to_metric_families(before.text) for s in f.samples
        if s.name == "darkroom_queue_depth"
    }
    assert depths == {(app, prio) for app in APPS for prio in ("normal", "low")}
    submitted = sample(before.text, "darkroom_jobs_submitted_total", app=f"{APP}/grain")
    wait_done(client, submit(client, {"image_url": png_data_uri(gradient(8, 8))}, f"{APP}/grain"))
    after = client.get("/metrics").text
    assert sample(after, "darkroom_jobs_submitted_total", app=f"{APP}/grain") == submitted + 1
    assert sample(after, "process_resident_memory_bytes") > 0


def test_api_counts_the_cancellations_it_completes(redis_url, s3_endpoint):
    """No worker on this database: the job stays queued, so the API's cancel completes it."""
    from api.app import create_app

    settings = make_settings(redis_url.rsplit("/", 1)[0] + "/14", s3_endpoint, 8990)
    labels = dict(app=APP, outcome="cancelled", error_type="request_cancelled")
    with TestClient(create_app(settings)) as client:
        first = client.get("/metrics").text
        depth = sample(first, "darkroom_queue_depth", app=APP, priority="normal")
        rid = submit(client, {"image_url": png_data_uri(gradient(4, 4))})["request_id"]
        queued = client.get("/metrics").text
        assert sample(queued, "darkroom_queue_depth", app=APP, priority="normal") == depth + 1
        assert client.put(f"/{APP}/requests/{rid}/cancel").status_code == 202
        after = client.get("/metrics").text
    assert sample(after, "darkroom_queue_depth", app=APP, priority="normal") == depth
    assert sample(after, "darkroom_jobs_completed_total", **labels) == sample(
        first, "darkroom_jobs_completed_total", **labels) + 1


def test_api_metrics_can_be_turned_off(redis_url, s3_endpoint):
    from api.app import create_app

    settings = make_settings(redis_url.rsplit("/", 1)[0] + "/14", s3_endpoint, 8989, api_metrics=False)
    with TestClient(create_app(settings)) as client:
        assert client.get("/metrics").status_code == 404


@pytest.fixture(scope="module")
def observed(redis_url, s3_endpoint, tmp_path_factory) -> Iterator[dict]:
    """A worker of its own (Redis db 15) with a metrics port and JSON logs captured, after it ran
    three jobs that succeed and one whose input host refuses connections (retried, then failed)."""
    from api.app import create_app

    log_path = tmp_path_factory.mktemp("worker-log") / "worker.log"
    settings = make_settings(
        redis_url.rsplit("/", 1)[0] + "/15", s3_endpoint, 8988,
        metrics_port=free_port(), log_format="json", max_wait_ms=200,
    )
    with open(log_path, "w") as log_file, TestClient(create_app(settings)) as client:
        worker = start_worker(settings, "metrics@localhost", stderr=log_file)
        try:
            metrics_url = f"http://127.0.0.1:{settings.metrics_port}/metrics"
            wait_for(lambda: _answers(metrics_url), timeout_s=30)
            body = {"image_url": png_data_uri(gradient(8, 8)), "enable_grain": True}
            ok = [submit(client, body) for _ in range(3)]
            bad = submit(client, {"image_url": "http://127.0.0.1:1/refused.png"})
            statuses = {sub["request_id"]: wait_done(client, sub) for sub in [*ok, bad]}
            metrics = httpx.get(metrics_url, timeout=5).text
        finally:
            stop_process(worker)
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    ok_ids = [sub["request_id"] for sub in ok]
    yield {"ok": ok_ids, "bad": bad["request_id"], "statuses": statuses, "metrics": metrics, "lines": lines}


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


def test_worker_metrics_count_outcomes_batches_and_retries(observed):
    text = observed["metrics"]
    assert observed["statuses"][observed["bad"]]["error_type"] == "fetch_unavailable"
    assert sample(text, "darkroom_jobs_completed_total", app=APP, outcome="success", error_type="") == 3
    assert sample(
        text, "darkroom_jobs_completed_total", app=APP, outcome="error", error_type="fetch_unavailable"
    ) == 1
    assert sample(text, "darkroom_job_retries_total", error_type="fetch_unavailable") == 2  # retry_max
    assert sample(text, "darkroom_batch_size_sum", pipeline="effects") == 3  # each job ran in one batch
    assert sample(text, "darkroom_batch_size_count", pipeline="effects") >= 1
    assert sample(text, "darkroom_queue_wait_seconds_count", app=APP) == 4
    assert sample(text, "darkroom_job_processing_seconds_count", app=APP, outcome="success") == 3
    assert sample(text, "darkroom_job_processing_seconds_count", app=APP, outcome="error") == 1
    assert sample(text, "darkroom_device_memory_bytes", device="cpu") > 10_000_000


def test_every_worker_line_of_a_job_carries_its_request_id(observed):
    ids = {*observed["ok"], observed["bad"]}
    about_jobs = [line for line in observed["lines"] if any(rid in line["message"] for rid in ids)
                  or line["logger"].startswith(("celery.app.trace", "celery.worker.strategy", "worker.runner",
                                                "worker.tasks", "worker.outcomes", "worker.batcher"))]
    assert len(about_jobs) >= 2 * len(ids)  # at least "received" and "succeeded" for each
    for line in about_jobs:
        assert "request_id" in line, line
        tagged = set(line["request_id"].split(","))
        assert tagged <= ids, line
        assert all(rid in tagged for rid in ids if rid in line["message"]), line
    assert {rid for line in about_jobs for rid in line["request_id"].split(",")} == ids
    retries = [line for line in about_jobs if "retry" in line["message"].lower()]
    assert retries and all(line["request_id"] == observed["bad"] for line in retries)


def _record(logger: logging.Logger, formatter: logging.Formatter) -> list[str]:
    out: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            out.append(self.format(record))

    handler = Collect()
    handler.setFormatter(formatter)
    handler.addFilter(RequestIdFilter())
    logger.addHandler(handler)
    logger.propagate = False
    return out


def test_text_and_json_lines_carry_the_request_id_of_their_context():
    text_log, json_log = logging.getLogger("test.logs.text"), logging.getLogger("test.logs.json")
    texts, jsons = _record(text_log, TextFormatter()), _record(json_log, JsonFormatter())
    for log in (text_log, json_log):
        log.warning("outside")
        with request_context("r-1"):
            log.warning("one job")
            with request_context("r-2", "r-3"):
                log.warning("a batch")
            log.warning("the job again")
    assert "[req=" not in texts[0]
    assert [t.split(" [req=")[1].split("]")[0] for t in texts[1:]] == ["r-1", "r-2,r-3", "r-1"]
    assert [json.loads(j).get("request_id") for j in jsons] == [None, "r-1", "r-2,r-3", "r-1"]


def test_celerys_received_line_is_tagged_from_its_task_arguments():
    record = logging.LogRecord("celery.worker.strategy", logging.INFO, __file__, 1, "Task %(name)s received",
                               None, None)
    record.data = {"name": "darkroom.run_job", "args": "('abc-123',)", "id": "celery-task-id"}
    assert RequestIdFilter().filter(record) and record.request_id == "abc-123"
    other = logging.LogRecord("celery.worker.strategy", logging.INFO, __file__, 1, "x", None, None)
    other.data = {"name": "celery.backend_cleanup", "args": "()"}
    assert RequestIdFilter().filter(other) and not hasattr(other, "request_id")


def test_grafana_dashboard_only_uses_metrics_that_exist():
    import re
    from pathlib import Path

    from prometheus_client.metrics import MetricWrapperBase

    from darkroom import metrics as shared
    from worker import metrics as worker_metrics

    known = {"darkroom_queue_depth", "darkroom_redis_up"}  # computed at scrape time by the API
    for module in (shared, worker_metrics):
        for value in vars(module).values():
            if isinstance(value, MetricWrapperBase):
                known.update(family.name for family in value.describe())
    dashboard = json.loads((Path(__file__).resolve().parents[2] / "docs/grafana/darkroom.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {re.sub(r"_(total|bucket|sum|count)$", "", name) for e in exprs
            for name in re.findall(r"darkroom_[a-z_]+", e)}
    assert used and used <= known, used - known
    assert {"darkroom_queue_depth", "darkroom_jobs_completed", "darkroom_queue_wait_seconds",
            "darkroom_job_processing_seconds", "darkroom_batch_size", "darkroom_job_retries",
            "darkroom_model_load_seconds", "darkroom_device_memory_bytes"} <= used
