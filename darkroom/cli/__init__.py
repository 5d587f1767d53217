"""The `darkroom` command line: run the whole service, or its parts."""

from __future__ import annotations

import gc
import importlib.util
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import click

from darkroom import __version__
from darkroom.cli.client_commands import register as register_client_commands
from darkroom.cli.models import models
from darkroom.cli.state import record_embedded_redis
from darkroom.logs import configure_logging
from darkroom.settings import Settings

log = logging.getLogger("darkroom")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="darkroom")
def main() -> None:
    """Darkroom: self-hosted image post-processing, compatible with fal-ai/post-processing.

    Configure with DARKROOM_* environment variables (see docs/configuration.md).
    """


@main.command()
@click.option("--host", default=None, help="Bind address (default: DARKROOM_HOST or 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default: DARKROOM_PORT or 8000).")
def api(host: str | None, port: int | None) -> None:
    """Run the HTTP API (needs DARKROOM_REDIS_URL)."""
    _need_extra("server", "uvicorn")
    import uvicorn

    settings = _settings(host=host, port=port)
    configure_logging(settings.log_level, settings.log_format)
    from api.app import create_app
    from api.auth import AuthConfigError

    try:
        app = create_app(settings)
    except AuthConfigError as exc:
        raise click.ClickException(str(exc)) from None

    # Modules, routes and models live as long as the process: move them out of the collector's
    # generations, so a full collection walks only per-request garbage (walking everything was a
    # pause of tens of ms in the submit latency tail).
    gc.collect()
    gc.freeze()
    tls = {}
    if settings.tls_certfile and settings.tls_keyfile:  # HTTPS (fal clients insist on it)
        tls = {"ssl_certfile": str(settings.tls_certfile), "ssl_keyfile": str(settings.tls_keyfile)}
    # uvicorn picks uvloop and httptools by itself when installed (the server extra has both). Its
    # access lines are INFO, below "warning" anyway: access_log=False skips building them at all.
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False, **tls)


@main.command(context_settings={"ignore_unknown_options": True})
@click.option("--concurrency", type=int, default=None,
              help="Job slots (default: DARKROOM_WORKER_CONCURRENCY).")
@click.option("--name", default=None, help="Worker name (default: darkroom@<hostname>-<pid>).")
@click.option("--check", is_flag=True,
              help="Health check: exit 0 if a worker on this host has a live heartbeat.")
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(concurrency: int | None, name: str | None, check: bool, celery_args: tuple[str, ...]) -> None:
    """Run a Celery worker that processes jobs (needs DARKROOM_REDIS_URL).

    Extra arguments are passed to `celery worker`.
    """
    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    if not settings.redis_url:
        raise click.UsageError("DARKROOM_REDIS_URL is not set")
    if check:
        sys.exit(_check_worker(settings))
    _need_extra("worker", "torch")
    os.environ["HF_HUB_OFFLINE"] = "1"  # workers never download models (`darkroom models pull` does)
    from darkroom.broker import EFFECTS_QUEUE, WEBHOOK_QUEUE
    from worker.app import create_worker

    app = create_worker(settings)

    argv = [
        "worker",
        "--pool", "threads",
        "--concurrency", str(concurrency or settings.worker_concurrency),
        "--queues", f"{EFFECTS_QUEUE},{WEBHOOK_QUEUE}",
        "--hostname", name or f"darkroom@%h-{os.getpid()}",
        "--loglevel", settings.log_level,
        "--without-gossip", "--without-mingle",
        *celery_args,
    ]
    app.worker_main(argv)


@main.command()
@click.option("--port", type=int, default=None, help="API port (default: DARKROOM_PORT or 8000).")
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path("data"), show_default=True,
              help="Where the embedded Redis and local storage keep their files.")
def up(port: int | None, data_dir: Path) -> None:
    """Run everything on this machine: Redis (unless DARKROOM_REDIS_URL is set), a worker and the API.

    Stops all of them on Ctrl-C or SIGTERM.
    """
    _need_extra("worker", "torch")
    from darkroom.cli.embedded import check_api_port, listening, start_redis, worker_env

    env = dict(os.environ)
    if port:
        env["DARKROOM_PORT"] = str(port)
    env.setdefault("DARKROOM_LOCAL_STORAGE_DIR", str(data_dir / "objects"))
    settings = Settings(**_env_overrides(env))
    configure_logging(settings.log_level, settings.log_format)
    check_api_port(settings.host, settings.port)  # before anything starts
    env.update(worker_env(env, settings.host))
    procs: list[subprocess.Popen] = []
    if not settings.redis_url:
        redis_proc, url = start_redis(data_dir / "redis")
        procs.append(redis_proc)
        record_embedded_redis(data_dir, url)  # for `darkroom jobs` / `keys`, from any directory
        env["DARKROOM_REDIS_URL"] = url
    exe = [sys.executable, "-m", "darkroom.cli"]
    procs.append(subprocess.Popen([*exe, "worker"], env=env))
    procs.append(subprocess.Popen([*exe, "api"], env=env))
    _supervise(
        procs, restart={len(procs) - 2: lambda: subprocess.Popen([*exe, "worker"], env=env)},
        ready=lambda: listening(settings.host, settings.port),
        ready_message=f"Darkroom is running at {settings.api_base_url}  (Ctrl-C to stop)",
    )


def _check_worker(settings: Settings) -> int:
    """0 when a worker process on this host wrote its heartbeat within its TTL, else 1."""
    import socket

    import redis

    from storage.jobs import JobStore

    try:
        alive = JobStore.from_settings(settings, socket_timeout_s=2).live_workers(socket.gethostname())
    except redis.RedisError as exc:
        click.echo(f"unhealthy: Redis unreachable ({exc})", err=True)
        return 1
    if not alive:
        click.echo("unhealthy: no live worker heartbeat on this host", err=True)
        return 1
    click.echo(f"healthy: {len(alive)} worker(s) alive")
    return 0


def _env_overrides(env: dict[str, str]) -> dict:
    return {k.removeprefix("DARKROOM_").lower(): v for k, v in env.items() if k.startswith("DARKROOM_")}


def _supervise(
    procs: list[subprocess.Popen], restart: dict | None = None,
    ready: Callable[[], bool] | None = None, ready_message: str = "",
) -> None:
    """Wait for Ctrl-C/SIGTERM, then stop ``procs`` in reverse order. A process listed in ``restart``
    (index -> how to start it again: the worker, which exits past a job's hard time limit) is
    restarted when it dies; any other dying stops everything. ``ready_message`` is printed once
    ``ready()`` is true (the API listens)."""
    stopping = False

    def stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    restart = restart or {}
    while not stopping:
        dead = [i for i, p in enumerate(procs) if p.poll() is not None]
        lost = [procs[i] for i in dead if i not in restart]
        if lost:
            log.error("process %d exited with %s; stopping Darkroom", lost[0].pid, lost[0].returncode)
            break
        if ready is not None and ready():
            click.echo(ready_message)
            ready = None
        for i in dead:
            log.warning("process %d exited with %s; restarting it", procs[i].pid, procs[i].returncode)
            procs[i] = restart[i]()
        time.sleep(0.2)
    code = 0 if stopping else 1
    for p in reversed(procs):  # API first, then the worker, Redis last
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
    log.info("all Darkroom processes stopped")
    sys.exit(code)


def _settings(**overrides) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def _missing_extra(extra: str, module: str) -> click.ClickException:
    return click.ClickException(
        f"this command needs Darkroom's {extra} parts ({module} is not installed): "
        f"pip install 'darkroom[{extra}]'"
    )


def _need_extra(extra: str, module: str) -> None:
    """A clear message instead of an ImportError when this installation lacks a server part."""
    if importlib.util.find_spec(module) is None:
        raise _missing_extra(extra, module)


def _add_operator_commands(group: click.Group) -> None:
    """`jobs` and `keys` talk to Redis: with only the client installed (`pip install darkroom`) they
    say which extra to install instead."""
    try:
        from darkroom.cli.jobs import jobs
        from darkroom.cli.keys import keys
    except ImportError as exc:
        missing = exc.name or "a server dependency"
        for name in ("jobs", "keys"):
            @group.command(name=name, context_settings={"ignore_unknown_options": True},
                           help=f"(needs pip install 'darkroom[server]': {missing} is missing)")
            @click.argument("args", nargs=-1, type=click.UNPROCESSED)
            def unavailable(args: tuple[str, ...], _missing: str = missing) -> None:
                raise _missing_extra("server", _missing)
        return
    group.add_command(keys)
    group.add_command(jobs)


_add_operator_commands(main)
main.add_command(models)
register_client_commands(main)  # submit, run, status, cancel

if __name__ == "__main__":
    main()
