"""Status streams (server-sent events): pushed by pub/sub, first event at once, keep-alives, closing
after COMPLETED, logs sent as deltas that add up to the status endpoint's logs."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import httpx
import pytest

from darkroom.cli.embedded import free_port
from storage.jobs import JobStore, redis_client
from tests.support.fal_queue import APP, image_body, log_messages, status, submit
from tests.support.harness import make_settings, wait_for
from tests.support.images import gradient, png_data_uri
from tests.support.servers import running_api

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


class StreamReader(threading.Thread):
    """Reads one status stream in the background: events (parsed), comment lines, and whether the
    server closed it."""

    def __init__(self, url: str, logs: str = "1") -> None:
        super().__init__(daemon=True)
        self.url, self.logs = url, logs
        self.events: list[dict] = []
        self.comments: list[str] = []
        self.headers: dict[str, str] = {}
        self.closed = False

    def run(self) -> None:
        with httpx.stream("GET", self.url, params={"logs": self.logs}, timeout=30) as resp:
            assert resp.status_code == 200, resp.read()
            self.headers = dict(resp.headers)
            for line in resp.iter_lines():
                if line.startswith("data: "):
                    self.events.append(json.loads(line[len("data: "):]))
                elif line.startswith(":"):
                    self.comments.append(line)
        self.closed = True


def stream(status_url: str, logs: str = "1") -> StreamReader:
    reader = StreamReader(status_url + "/stream", logs)
    reader.start()
    return reader


def idle_api(redis_url: str, s3_endpoint: str, keepalive_s: float) -> Iterator[tuple[str, JobStore]]:
    """An API on a Redis database no worker consumes: the test makes the transitions itself."""
    db3 = redis_url.rsplit("/", 1)[0] + "/3"
    settings = make_settings(db3, s3_endpoint, free_port(), sse_keepalive_s=keepalive_s)
    store = JobStore(redis_client(settings.redis_url, 1.5), settings.retention_s)
    with running_api(settings) as url:
        yield url, store


@pytest.fixture(scope="module")
def paused(redis_url, s3_endpoint) -> Iterator[tuple[str, JobStore]]:
    """Keep-alives every 0.1 s."""
    yield from idle_api(redis_url, s3_endpoint, 0.1)


@pytest.fixture(scope="module")
def quiet(redis_url, s3_endpoint) -> Iterator[tuple[str, JobStore]]:
    """Keep-alives every 60 s: anything arriving sooner was pushed by pub/sub."""
    yield from idle_api(redis_url, s3_endpoint, 60)


def test_events_follow_each_transition_and_the_stream_closes(quiet):
    url, store = quiet
    sub = submit(url, image_body())
    reader = stream(sub["status_url"])
    wait_for(lambda: reader.events)
    first = reader.events[0]
    assert first["status"] == "IN_QUEUE" and isinstance(first["queue_position"], int)
    assert first["logs"] == [] and first["request_id"] == sub["request_id"]
    assert reader.headers["x-fal-request-id"] == sub["request_id"]
    assert reader.headers["content-type"].startswith("text/event-stream")

    job = store.get(sub["request_id"])
    store.start(job)
    wait_for(lambda: len(reader.events) == 2)
    store.add_log(job.id, "hello from the worker")
    wait_for(lambda: len(reader.events) == 3)
    store.complete(job, {"images": []}, {"inference_time": 0.25})
    reader.join(timeout=10)

    assert reader.closed, "the server must close the stream after COMPLETED"
    statuses = [e["status"] for e in reader.events]
    assert statuses == ["IN_QUEUE", "IN_PROGRESS", "IN_PROGRESS", "COMPLETED"]
    assert [e["message"] for e in reader.events[2]["logs"]] == ["hello from the worker"]
    assert reader.events[3]["logs"] == [] and reader.events[3]["metrics"] == {"inference_time": 0.25}
    accumulated = [entry for e in reader.events for entry in e["logs"]]
    assert accumulated == status(url, sub)["logs"]


def test_keep_alive_comments_while_waiting_and_cancel_ends_the_stream(paused):
    url, _ = paused
    sub = submit(url, image_body())
    reader = stream(sub["status_url"], logs="0")
    wait_for(lambda: len(reader.comments) >= 2, timeout_s=10)
    assert reader.comments[0] == ": keep-alive"
    assert [e["status"] for e in reader.events] == ["IN_QUEUE"] and reader.events[0]["logs"] is None
    assert httpx.put(sub["cancel_url"]).status_code == 202
    reader.join(timeout=10)
    assert reader.closed
    last = reader.events[-1]
    assert last["status"] == "COMPLETED" and last["error_type"] == "request_cancelled"


def test_finished_request_streams_one_event_and_unknown_is_404(paused):
    url, store = paused
    sub = submit(url, image_body())
    job = store.get(sub["request_id"])
    store.start(job)
    store.fail(job, "invalid_input", "bad pixels")
    reader = stream(sub["status_url"])
    reader.join(timeout=10)
    assert reader.closed and len(reader.events) == 1
    assert reader.events[0]["status"] == "COMPLETED" and reader.events[0]["error"] == "bad pixels"
    missing = httpx.get(f"{url}/{APP}/requests/00000000-0000-0000-0000-000000000000/status/stream")
    assert missing.status_code == 404
    bad = httpx.get(sub["status_url"] + "/stream", params={"logs": "maybe"})
    assert bad.status_code == 422


def test_real_worker_stream_ends_with_the_result(client):
    body = {"image_url": png_data_uri(gradient()), "enable_solarize": True}
    sub = submit(client, body)
    reader = stream(sub["status_url"])
    reader.join(timeout=30)
    assert reader.closed
    statuses = [e["status"] for e in reader.events]
    order = ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]
    assert statuses[-1] == "COMPLETED" and "error" not in reader.events[-1]
    changes = [s for i, s in enumerate(statuses) if i == 0 or s != statuses[i - 1]]
    assert changes == sorted(set(changes), key=order.index), "statuses only move forward"
    assert statuses.count("COMPLETED") == 1
    assert reader.events[-1]["metrics"]["inference_time"] > 0
    accumulated = [entry["message"] for e in reader.events for entry in e["logs"]]
    final = log_messages(status(client, sub))
    assert final[: len(accumulated)] == accumulated and accumulated, "stream logs are the status logs so far"


def test_a_client_that_goes_away_leaves_no_subscription(paused):
    url, store = paused
    sub = submit(url, image_body())
    channel = f"darkroom:events:{sub['request_id']}"
    with httpx.stream("GET", sub["status_url"] + "/stream") as resp:
        lines = resp.iter_lines()  # (dropping this iterator would close the connection)
        first = next(lines)
        assert first.startswith("data: ") and json.loads(first[6:])["status"] == "IN_QUEUE"
        assert store.r.pubsub_numsub(channel)[0][1] == 1
    wait_for(lambda: store.r.pubsub_numsub(channel)[0][1] == 0, timeout_s=10)
