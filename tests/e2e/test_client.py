"""The Python client (``darkroom.client``) and the CLI client (`darkroom submit | run | status | cancel`).

Real runs go through the session API and worker; status sequences are driven by hand on an API whose
Redis database no worker consumes (the test moves the job along from ``on_update``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from click.testing import CliRunner

from darkroom.cli import main
from darkroom.cli.client_commands import parse_sets
from darkroom.cli.embedded import free_port
from darkroom.client import AsyncClient, Client, DarkroomClientError, Image, Result, Status
from darkroom.client.batch import expand_inputs, plan
from storage.jobs import JobStore, redis_client
from tests.support.harness import make_settings
from tests.support.images import decode_png, gradient, png_bytes, png_data_uri
from tests.support.servers import running_api

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]
APP = "fal-ai/post-processing"
FAKE_RESULT = {
    "images": [{"url": "https://cdn.example.test/r/0.png", "content_type": "image/png", "file_name": "0.png",
                "file_size": 123, "width": 8, "height": 6}],
    "seed": 7,
}


def write_png(path: Path, rgb: np.ndarray | None = None) -> Path:
    path.write_bytes(png_bytes(gradient(24, 16) if rgb is None else rgb))
    return path


def is_grey(data: bytes) -> bool:
    rgb = decode_png(data).astype(int)
    return int((rgb.max(axis=2) - rgb.min(axis=2)).max()) <= 2


def small() -> dict:
    return {"image_url": png_data_uri(gradient(8, 8))}


def cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


# ---- pure helpers ----------------------------------------------------------------------------------
def test_set_values_are_json_when_they_parse():
    fields = parse_sets(("a=1", "b=true", "c=0.5", "d=luminance (Rec.709)", "e=", "f=[1,2]", "g=x=y"))
    assert fields == {
        "a": 1, "b": True, "c": 0.5, "d": "luminance (Rec.709)", "e": "", "f": [1, 2], "g": "x=y",
    }
    with pytest.raises(Exception, match="KEY=VALUE"):
        parse_sets(("novalue",))


def test_inputs_expand_and_names_stay_stable(tmp_path):
    (tmp_path / "d").mkdir()
    for name in ("b.png", "a.JPG", ".hidden.png", "notes.txt"):
        (tmp_path / "d" / name).write_bytes(b"x")
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "a.png").write_bytes(b"x")
    url, missing = "https://h.test/p/a.webp?x=1", str(tmp_path / "no")
    sources, problems = expand_inputs([str(tmp_path / "d"), str(tmp_path / "e" / "*.png"), url, missing])
    assert [Path(s).name for s in sources[:3]] == ["a.JPG", "b.png", "a.png"]
    assert sources[3] == url
    assert problems == [(missing, "no such file or directory (and not an http(s) URL)")]
    items = plan(sources, tmp_path / "out", "jpeg")
    names = [i.output.name for i in items]
    assert names[1] == "b.jpg"
    assert all(n.startswith("a-") and n.endswith(".jpg") for n in names[:1] + names[2:]), "same stems: hashed"
    assert len(set(names)) == 4 and plan(sources, tmp_path / "out", "jpeg") == items


# ---- CLI against the session API and worker -------------------------------------------------------
def test_submit_a_folder_reports_the_bad_item_and_resumes(api_url, worker, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("one", "two", "three"):
        write_png(folder / f"{name}.png")
    (folder / "broken.png").write_text("this is not an image")
    out = tmp_path / "out"
    args = ["submit", str(folder), "-o", str(out), "--server", api_url, "-j", "3",
            "--set", "enable_desaturate=true"]

    first = cli(*args)
    assert first.exit_code == 1, first.output
    assert "3 done, 0 skipped (output exists), 1 failed" in first.stdout
    assert "processing" in first.stderr and "4/4" in first.stderr  # the progress bar
    assert "broken.png" in first.stderr and "422" in first.stderr
    assert sorted(p.name for p in out.iterdir()) == ["one.png", "three.png", "two.png"]
    assert all(is_grey(p.read_bytes()) for p in out.iterdir())

    before = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    again = cli(*args, str(tmp_path / "missing.png"))
    assert again.exit_code == 1
    assert "0 done, 3 skipped (output exists), 2 failed" in again.stdout
    assert "missing.png: no such file" in again.stderr
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == before, "existing outputs are not redone"


def test_run_saves_one_image_and_status_reports(api_url, worker, tmp_path):
    source = write_png(tmp_path / "photo.png")
    target = tmp_path / "result.png"
    done = cli("run", str(source), "-o", str(target), "--set", "enable_desaturate=true", "--server", api_url)
    assert done.exit_code == 0, done.output
    assert "COMPLETED" in done.stderr and done.stdout.strip() == str(target)
    assert is_grey(target.read_bytes())

    printed = cli("run", str(source), "--app", f"{APP}/solarize", "--server", api_url)
    assert printed.exit_code == 0, printed.output
    result = Result.model_validate_json(printed.stdout)
    assert result.images[0].width == 24 and result.images[0].height == 16

    with Client(api_url) as client:
        handle = client.submit(APP, small())
        client.wait(APP, handle.request_id)
    status = cli("status", handle.request_id, "--logs", "--server", api_url)
    assert status.exit_code == 0 and Status.model_validate_json(status.stdout).status == "COMPLETED"
    assert cli("cancel", handle.request_id, "--server", api_url).stdout.strip() == "ALREADY_COMPLETED"
    missing = cli("cancel", "00000000-0000-0000-0000-000000000000", "--server", api_url)
    assert missing.exit_code == 1 and "HTTP 404" in missing.stderr


# ---- the Python client against the real worker ---------------------------------------------------
def test_sync_client_uploads_subscribes_and_gets_a_typed_result(api_url, worker):
    updates: list[Status] = []
    with Client(api_url) as client:
        url = client.upload(png_bytes(gradient(20, 10)), file_name="g.png")
        assert url.startswith(api_url + "/files/uploads/")
        body = {"image_url": url, "enable_desaturate": True}
        result = client.subscribe(APP, body, on_update=updates.append)
        assert isinstance(result.images[0], Image) and isinstance(result.seed, int)
        assert (result.images[0].width, result.images[0].height) == (20, 10)
        assert result.request_id and is_grey(client.download(result.images[0].url))
        with pytest.raises(DarkroomClientError) as refused:
            client.submit(APP, {"image_url": url, "grain_intensity": 5})
    assert updates[0].status == "IN_QUEUE" and updates[-1].status == "COMPLETED"
    assert updates[-1].logs and updates[-1].metrics["inference_time"] > 0
    assert refused.value.status_code == 422 and "grain_intensity" in str(refused.value)


# ---- status sequences driven by hand --------------------------------------------------------------
@pytest.fixture(scope="module")
def idle(redis_url, s3_endpoint) -> Iterator[tuple[str, JobStore]]:
    settings = make_settings(redis_url.rsplit("/", 1)[0] + "/14", s3_endpoint, free_port())
    store = JobStore(redis_client(settings.redis_url, 1.5), settings.retention_s)
    with running_api(settings) as url:
        yield url, store


def driver(store: JobStore, seen: list[Status], fail: bool = False):
    """An on_update that moves the job on: IN_QUEUE -> start, IN_PROGRESS -> log + finish."""

    def on_update(status: Status) -> None:
        seen.append(status)
        job = store.get(status.request_id)
        if status.status == "IN_QUEUE":
            store.start(job)
        elif status.status == "IN_PROGRESS" and "step 1/1" not in [log.message for log in status.logs or []]:
            store.add_log(job.id, "step 1/1")
        elif status.status == "IN_PROGRESS" and fail:
            store.fail(job, "invalid_input", "bad pixels")
        elif status.status == "IN_PROGRESS":
            store.complete(job, FAKE_RESULT, {})

    return on_update


def test_subscribe_sees_each_status_over_the_stream(idle):
    url, store = idle
    seen: list[Status] = []
    with Client(url) as client:
        result = client.subscribe(APP, small(), on_update=driver(store, seen))
    assert [s.status for s in seen] == ["IN_QUEUE", "IN_PROGRESS", "IN_PROGRESS", "COMPLETED"]
    assert seen[0].queue_position == 0
    assert [log.message for log in seen[-1].logs] == ["attempt 1 started", "step 1/1"]
    assert result.images[0].url == FAKE_RESULT["images"][0]["url"] and result.seed == 7


def test_a_failed_request_raises_with_its_error_type_and_polling_is_the_fallback(idle, monkeypatch):
    url, store = idle

    def no_stream(*args, **kwargs):
        raise httpx.ConnectError("no stream here")

    monkeypatch.setattr(Client, "stream_status", no_stream)
    seen: list[Status] = []
    with Client(url) as client, pytest.raises(DarkroomClientError) as failed:
        client.subscribe(APP, small(), on_update=driver(store, seen, fail=True))
    assert failed.value.error_type == "invalid_input" and "bad pixels" in str(failed.value)
    assert [s.status for s in seen][-1] == "COMPLETED" and seen[-1].failed


def test_async_client_subscribe_and_cancel(idle):
    url, store = idle
    seen: list[Status] = []
    sync_driver = driver(store, seen)

    async def on_update(status: Status) -> None:
        sync_driver(status)

    async def scenario() -> tuple[Result, str, Status]:
        async with AsyncClient(url) as client:
            result = await client.subscribe(APP, small(), on_update=on_update)
            queued = await client.submit(APP, small())
            outcome = await client.cancel(APP, queued.request_id)
            return result, outcome, await client.status(APP, queued.request_id)

    result, outcome, cancelled = asyncio.run(scenario())
    assert [s.status for s in seen] == ["IN_QUEUE", "IN_PROGRESS", "IN_PROGRESS", "COMPLETED"]
    assert result.seed == 7 and outcome == "CANCELLATION_REQUESTED"
    assert cancelled.failed and cancelled.error_type == "request_cancelled"
