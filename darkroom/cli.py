"""The `darkroom` command line: run the whole service, or its parts."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from darkroom import __version__
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
    import uvicorn

    settings = _settings(host=host, port=port)
    configure_logging(settings.log_level, settings.log_format)
    from api.app import create_app

    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning")


@main.command(context_settings={"ignore_unknown_options": True})
@click.option("--concurrency", type=int, default=None,
              help="Job slots (default: DARKROOM_WORKER_CONCURRENCY).")
@click.option("--name", default=None, help="Worker name (default: darkroom@<hostname>-<pid>).")
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(concurrency: int | None, name: str | None, celery_args: tuple[str, ...]) -> None:
    """Run a Celery worker that processes jobs (needs DARKROOM_REDIS_URL).

    Extra arguments are passed to `celery worker`.
    """
    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    if not settings.redis_url:
        raise click.UsageError("DARKROOM_REDIS_URL is not set")
    from darkroom.broker import EFFECTS_QUEUE
    from worker.tasks import app

    argv = [
        "worker",
        "--pool", "threads",
        "--concurrency", str(concurrency or settings.worker_concurrency),
        "--queues", EFFECTS_QUEUE,
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
    from darkroom.embedded import start_redis

    env = dict(os.environ)
    if port:
        env["DARKROOM_PORT"] = str(port)
    env.setdefault("DARKROOM_LOCAL_STORAGE_DIR", str(data_dir / "objects"))
    settings = Settings(**_env_overrides(env))
    configure_logging(settings.log_level, settings.log_format)
    procs: list[subprocess.Popen] = []
    if not settings.redis_url:
        redis_proc, url = start_redis(data_dir / "redis")
        procs.append(redis_proc)
        env["DARKROOM_REDIS_URL"] = url
    exe = [sys.executable, "-m", "darkroom.cli"]
    procs.append(subprocess.Popen([*exe, "worker"], env=env))
    procs.append(subprocess.Popen([*exe, "api"], env=env))
    click.echo(f"Darkroom is running at {settings.api_base_url}  (Ctrl-C to stop)")
    _supervise(procs)


def _env_overrides(env: dict[str, str]) -> dict:
    return {k.removeprefix("DARKROOM_").lower(): v for k, v in env.items() if k.startswith("DARKROOM_")}


def _supervise(procs: list[subprocess.Popen]) -> None:
    stopping = False

    def stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping and all(p.poll() is None for p in procs):
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


if __name__ == "__main__":
    main()
