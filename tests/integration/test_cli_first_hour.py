"""A new user's first hour, without a worker: misspelt parameters, missing files, placeholder keys,
a server that is not running, unknown apps and requests, and `darkroom jobs` / `keys` finding the
Redis of `darkroom up` from any directory (and saying so when it has stopped).

Servers are real: the session API, an API subprocess with a plugin app, redis-servers of our own.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from darkroom.apps import APPS
from darkroom.cli import main
from darkroom.cli.client_display import echo_status
from darkroom.cli.embedded import embedded_url_file, free_port, start_redis
from darkroom.cli.state import record_embedded_redis
from darkroom.client import (
    AsyncClient,
    Client,
    DarkroomClientError,
    InvalidKey,
    RequestLog,
    ServerUnreachable,
    Status,
    UnknownApp,
    UnknownParameter,
)
from tests.support.harness import ROOT, answers, make_settings, stop_process, wait_for
from tests.support.images import gradient, png_bytes, png_data_uri

pytestmark = pytest.mark.timeout(60)
APP = "fal-ai/post-processing"
PLACEHOLDER = "dk_…:…"  # the key of docs/client.md's examples
PLUGIN_APP = "first-hour/echo"  # tests/integration/first_hour_plugin.py: never imported here


def cli(*args: str, env: dict | None = None):
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


@pytest.fixture
def nowhere() -> str:
    """A server URL nothing listens on."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def photo(tmp_path) -> Path:
    path = tmp_path / "photo.png"
    path.write_bytes(png_bytes(gradient(8, 8)))
    return path


# ---- 3. misspelt parameters ------------------------------------------------------------------------
def test_the_client_refuses_a_misspelt_parameter_before_any_network_call(nowhere):
    with Client(nowhere) as client, pytest.raises(UnknownParameter) as refused:
        client.submit(APP, {"image_url": "https://h.test/a.png", "enable_grian": True})
    assert str(refused.value) == (
        "unknown parameter 'enable_grian' for fal-ai/post-processing; did you mean 'enable_grain'?"
    )
    assert isinstance(refused.value, ValueError) and isinstance(refused.value, DarkroomClientError)
    assert refused.value.suggestions == {"enable_grian": "enable_grain"}
    assert refused.value.status_code is None and refused.value.error_type == "unknown_parameter"

    with Client(nowhere, strict=False) as lenient, pytest.raises(ServerUnreachable):  # it was sent
        lenient.submit(APP, {"image_url": "https://h.test/a.png", "enable_grian": True})

    async def single_effect() -> None:
        async with AsyncClient(nowhere) as client:
            await client.submit(f"{APP}/blur", {"image_url": "x", "blurr_radius": 3, "zzz": 1})

    with pytest.raises(UnknownParameter) as both:
        asyncio.run(single_effect())
    assert "'blurr_radius' (did you mean 'blur_radius'?), 'zzz'" in str(both.value)
    assert "its parameters: image_url, seed" in str(both.value)


def test_the_cli_refuses_a_misspelt_parameter_and_no_check_sends_it(photo, nowhere):
    refused = cli("run", str(photo), "--set", "enable_grian=true", "--server", nowhere)
    assert refused.exit_code == 2
    assert "Error: Invalid value for --set: unknown parameter 'enable_grian' for fal-ai/post-processing; " \
        "did you mean 'enable_grain'?" in refused.stderr
    bulk = cli("submit", str(photo), "-o", str(photo.parent / "out"), "--set", "grain_intesity=0.2",
               "--server", nowhere)
    assert bulk.exit_code == 2 and "did you mean 'grain_intensity'?" in bulk.stderr
    sent = cli("run", str(photo), "--set", "enable_grian=true", "--no-check", "--server", nowhere)
    assert sent.exit_code == 1 and "cannot reach" in sent.stderr  # checked no more: it tried to send


@pytest.fixture(scope="module")
def plugin_api(redis_url, tmp_path_factory) -> Iterator[str]:
    """An API serving an app this process does not know (loaded by the server only)."""
    assert PLUGIN_APP not in APPS
    settings = make_settings(
        redis_url.rsplit("/", 1)[0] + "/13", None, free_port(),
        local_storage_dir=tmp_path_factory.mktemp("plugin-objects"),
        plugins="tests.integration.first_hour_plugin",
    )
    env = {**os.environ, **settings.to_env()}
    proc = subprocess.Popen([sys.executable, "-m", "darkroom.cli", "api"], env=env, cwd=ROOT)
    try:
        wait_for(lambda: answers(settings.api_base_url + "/health"), timeout_s=40, interval_s=0.1)
        yield settings.api_base_url
    finally:
        stop_process(proc)


def test_apps_the_client_does_not_know_are_checked_against_the_servers_openapi(plugin_api):
    body = {"image_url": png_data_uri(gradient(4, 4))}
    with Client(plugin_api) as client:
        with pytest.raises(UnknownParameter, match="did you mean 'echo_strength'"):
            client.submit(PLUGIN_APP, {**body, "echo_strenght": 0.3})
        assert client.input_fields(PLUGIN_APP)[-1] == "echo_strength"
        assert client.submit(PLUGIN_APP, {**body, "echo_strength": 0.3}).request_id
        with pytest.raises(UnknownApp) as unknown:
            client.submit("first-hour/ecko", body)
    assert "did you mean 'first-hour/echo'?" in str(unknown.value)
    served = str(unknown.value).split("This server's apps are: ", 1)[1].split(", ")
    assert {"darkroom/refine", APP, PLUGIN_APP} <= set(served) and served == sorted(served)


# ---- 4. tracebacks instead of messages ---------------------------------------------------------------
def test_a_missing_image_is_a_usage_error(tmp_path, nowhere):
    result = cli("run", str(tmp_path / "missing.png"), "--server", nowhere)
    assert result.exit_code == 2
    assert "Error: Invalid value for IMAGE: " in result.stderr
    assert "missing.png: no such file" in result.stderr
    folder = cli("run", str(tmp_path), "--server", nowhere)
    assert folder.exit_code == 2 and "is not a file" in folder.stderr


def test_a_placeholder_key_is_a_clear_error(photo, nowhere, monkeypatch):
    with pytest.raises(InvalidKey) as refused:
        Client(nowhere, key=PLACEHOLDER)
    assert isinstance(refused.value, DarkroomClientError) and isinstance(refused.value, ValueError)
    assert "must be printable ASCII" in str(refused.value) and "placeholder" in str(refused.value)
    monkeypatch.setenv("DARKROOM_API_KEY", PLACEHOLDER)
    with pytest.raises(InvalidKey, match=r"\$DARKROOM_API_KEY"):
        AsyncClient(nowhere)

    result = cli("run", str(photo), "--server", nowhere)  # the key from the environment
    assert result.exit_code == 2
    assert "Error: Invalid value for --key: the API key from --key / $DARKROOM_API_KEY must be printable " \
        "ASCII, but it holds '…' at position 3" in result.stderr
    status = cli("status", "abc", "--server", nowhere, "--key", "dk_1:s\u00e9cret")
    assert status.exit_code == 2 and "'é' at position 6" in status.stderr


# ---- 10. client errors ----------------------------------------------------------------------------
def test_every_call_to_a_server_that_is_not_running_says_so(nowhere, photo):
    calls = {
        "upload": lambda c: c.upload(photo),
        "submit": lambda c: c.submit(APP, {"image_url": "https://h.test/a.png"}),
        "status": lambda c: c.status(APP, "some-id"),
        "result": lambda c: c.result(APP, "some-id"),
        "cancel": lambda c: c.cancel(APP, "some-id"),
        "download": lambda c: c.download(f"{nowhere}/files/x.png"),
        "stream": lambda c: next(iter(c.stream_status(APP, "some-id"))),
    }
    with Client(nowhere) as client:
        for name, call in calls.items():
            with pytest.raises(ServerUnreachable) as failed:
                call(client)
            assert str(failed.value).startswith(f"cannot reach {nowhere} ("), name
            assert "is the server running? Start one with `darkroom up`" in str(failed.value), name
            assert failed.value.status_code is None and failed.value.__cause__ is not None

    async def async_status() -> None:
        async with AsyncClient(nowhere) as client:
            await client.status(APP, "some-id")

    with pytest.raises(ServerUnreachable, match="GET /fal-ai/post-processing/requests/some-id/status"):
        asyncio.run(async_status())
    result = cli("status", "some-id", "--server", nowhere)
    assert result.exit_code == 1 and f"Error: cannot reach {nowhere}" in result.stderr
    bulk = cli("submit", str(photo), str(photo), "-o", str(photo.parent / "out"), "--server", nowhere)
    assert bulk.exit_code == 1 and bulk.stderr.count("cannot reach") == 1  # once, not once per input
    assert bulk.stderr.startswith(f"Error: cannot reach {nowhere} (GET /health: ")


def test_unknown_requests_and_apps_say_what_is_unknown(api_url, photo):
    missing = "00000000-0000-0000-0000-000000000000"
    with Client(api_url) as client:
        with pytest.raises(DarkroomClientError) as no_request:
            client.cancel(f"{APP}/blur", missing)
        assert no_request.value.message.startswith(f"HTTP 404 not_found: no request {missing} in app {APP}")
        with pytest.raises(UnknownApp) as no_app:
            client.submit("fal-ai/post-procesing", {"image_url": png_data_uri(gradient(4, 4))})
        with pytest.raises(UnknownApp, match="unknown app 'fal-ai/post-procesing'"):
            client.status("fal-ai/post-procesing", missing)  # the server says 404: Not Found
    text = str(no_app.value)
    assert text.startswith(f"unknown app 'fal-ai/post-procesing' on {api_url}; did you mean '{APP}'?")
    served = text.split("This server's apps are: ", 1)[1].split(", ")
    assert {"darkroom/refine", "darkroom/upscale", APP, f"{APP}/blur"} <= set(served)

    with Client(api_url, strict=False) as lenient, pytest.raises(UnknownApp) as routed:
        lenient.submit("nobody/nothing", {"image_url": png_data_uri(gradient(4, 4))})
    assert routed.value.status_code == 404 and "This server's apps are" in str(routed.value)

    cancel = cli("cancel", missing, "--server", api_url)
    assert cancel.exit_code == 1 and f"no request {missing} in app {APP}" in cancel.stderr
    run = cli("run", str(photo), "--app", "darkroom/upscal", "--server", api_url)
    assert run.exit_code == 2 and "did you mean 'darkroom/upscale'?" in run.stderr


# ---- 6. `darkroom jobs` / `keys` find the Redis of `darkroom up` -----------------------------------
@pytest.fixture
def isolated(tmp_path, monkeypatch) -> dict:
    """No DARKROOM_REDIS_URL, a per-user state directory of our own, and an unrelated working
    directory."""
    monkeypatch.delenv("DARKROOM_REDIS_URL", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return {"DARKROOM_REDIS_URL": None, "XDG_STATE_HOME": str(tmp_path / "state")}


def test_jobs_find_the_redis_of_darkroom_up_from_any_directory_and_say_when_it_stopped(tmp_path, isolated):
    data = tmp_path / "project" / "data"
    proc, url = start_redis(data / "redis", appendonly=False)
    try:
        record_embedded_redis(data, url)  # what `darkroom up` records
        listed = cli("jobs", "list", env=isolated)
        assert listed.exit_code == 0, listed.output
        assert listed.stdout.startswith("REQUEST ID")
        assert cli("keys", "list", env=isolated).exit_code == 0
    finally:
        stop_process(proc)
    started = time.monotonic()
    stopped = cli("jobs", "list", env=isolated)
    assert stopped.exit_code == 1 and time.monotonic() - started < 10
    port = url.rsplit(":", 1)[1].split("/")[0]
    assert stopped.stderr.strip() == (
        f"Error: the embedded Redis at 127.0.0.1:{port} recorded by `darkroom up` in "
        f"{embedded_url_file(data).resolve()} is not running; start `darkroom up` or set DARKROOM_REDIS_URL"
    )
    assert "Traceback" not in stopped.output


def test_jobs_read_what_darkroom_up_writes_today_from_a_subdirectory(tmp_path, isolated, monkeypatch):
    project = tmp_path / "project"
    proc, url = start_redis(project / "data" / "redis", appendonly=False)
    try:
        embedded_url_file(project / "data").write_text(url)  # only the data-dir file, no per-user record
        (project / "photos").mkdir()
        monkeypatch.chdir(project / "photos")
        assert cli("jobs", "list", "--json", env=isolated).exit_code == 0
        explicit = cli("keys", "list", "--data-dir", str(project / "data"), env=isolated)
        assert explicit.exit_code == 0, explicit.output
    finally:
        stop_process(proc)
    monkeypatch.chdir(tmp_path / "elsewhere")
    nothing = cli("jobs", "list", env=isolated)
    assert nothing.exit_code == 2
    assert "DARKROOM_REDIS_URL is not set and no `darkroom up` recorded its Redis" in nothing.stderr


# ---- progress: `darkroom run` turns step lines into a bar --------------------------------------------
def test_run_shows_each_status_once_and_steps_as_a_progress_bar(capsys):
    logs = [RequestLog(message="attempt 1 started"), RequestLog(message="step 1/3")]
    with echo_status() as show:
        show(Status(status="IN_QUEUE", queue_position=0))
        show(Status(status="IN_PROGRESS", logs=logs))
        show(Status(status="IN_PROGRESS", logs=[*logs, RequestLog(message="step 2/3")]))
        show(Status(status="IN_PROGRESS", logs=[*logs, *(RequestLog(message=f"step {i}/3") for i in (2, 3))]))
        show(Status(status="COMPLETED", logs=logs))
    err = capsys.readouterr().err
    assert "IN_QUEUE (position 0)" in err and err.count("IN_PROGRESS") == 1 and "COMPLETED" in err
    assert "[INFO] attempt 1 started" in err and "[INFO] step" not in err
    assert "running: 100%" in err and "3/3" in err
