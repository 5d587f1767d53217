"""Which Redis the operator commands (`darkroom jobs`, `darkroom keys`) use, from any directory.

``DARKROOM_REDIS_URL`` when it is set. Otherwise the private Redis of `darkroom up`, which writes its
URL into ``<data-dir>/redis/url`` (``data/`` of the directory it was started in, by default) and —
through ``record_embedded_redis`` — into a per-user record,
``$XDG_STATE_HOME/darkroom/embedded-redis.json`` (default ``~/.local/state/…``), so the commands find
it from anywhere. They look at, in order: ``--data-dir`` when given; else ``./data`` and the
``data/`` of each parent directory, then the per-user record. The first whose Redis answers is used;
when none does, the message says which one was recorded and that it is not running — no traceback,
no hanging on a port that nothing (or something else) listens on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import click

from darkroom.cli.embedded import embedded_url_file

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 1.0  # an embedded Redis is on loopback: it answers at once or not at all
USER_RECORD = "embedded-redis.json"
SUBMIT_RECORDS = "submit"

data_dir_option = click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Data directory of the `darkroom up` whose Redis to use when DARKROOM_REDIS_URL is unset "
    "(default: ./data or the nearest parent directory's data/, else the last `darkroom up` started "
    "by this user).",
)


@dataclass(frozen=True)
class RedisLocation:
    url: str
    recorded_in: str  # "DARKROOM_REDIS_URL", or the file `darkroom up` wrote it into

    @property
    def embedded(self) -> bool:
        return self.recorded_in != "DARKROOM_REDIS_URL"

    @property
    def address(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.hostname}:{parts.port or 6379}"

    def not_running(self, exc: Exception) -> click.ClickException:
        if not self.embedded:
            return click.ClickException(f"cannot reach Redis at {self.url} (DARKROOM_REDIS_URL): {exc}")
        return click.ClickException(
            f"the embedded Redis at {self.address} recorded by `darkroom up` in {self.recorded_in} is not "
            "running; start `darkroom up` or set DARKROOM_REDIS_URL"
        )


def user_state_dir() -> Path:
    """Darkroom's per-user state: ``$XDG_STATE_HOME/darkroom`` (default ``~/.local/state/darkroom``)."""
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "darkroom"


def user_record_file() -> Path:
    """The per-user record of the last `darkroom up`'s Redis."""
    return user_state_dir() / USER_RECORD


def submit_record(outdir: Path) -> Path:
    """Where `darkroom submit` notes the settings of the outputs in ``outdir`` (one file per directory,
    so the output directory holds nothing but results)."""
    key = hashlib.sha256(str(outdir.resolve()).encode()).hexdigest()[:20]
    return user_state_dir() / SUBMIT_RECORDS / f"{key}.jsonl"


def record_embedded_redis(data_dir: Path, url: str) -> None:
    """What `darkroom up` calls once its Redis answers: the URL into ``<data-dir>/redis/url`` (as
    before) and, with the absolute data directory, into the per-user record."""
    url_file = embedded_url_file(data_dir)
    url_file.write_text(url)
    record = user_record_file()
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        body = {"url": url, "url_file": str(url_file.resolve()), "pid": os.getpid()}
        tmp = record.with_name(f".{record.name}.{os.getpid()}")
        tmp.write_text(json.dumps(body))
        tmp.replace(record)
    except OSError as exc:  # a read-only home must not stop `darkroom up`
        log.warning("could not write %s (%s); `darkroom jobs` will need --data-dir", record, exc)


def _from_url_file(path: Path) -> RedisLocation | None:
    try:
        url = path.read_text().strip()
    except OSError:
        return None
    return RedisLocation(url, str(path.resolve())) if url else None


def _from_user_record() -> RedisLocation | None:
    record = user_record_file()
    try:
        body = json.loads(record.read_text())
        return RedisLocation(str(body["url"]), str(body.get("url_file") or record))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def candidates(data_dir: Path | None) -> list[RedisLocation]:
    """Every recorded embedded Redis, nearest first (``data_dir`` alone when given)."""
    if data_dir is not None:
        found = _from_url_file(embedded_url_file(data_dir))
        return [found] if found else []
    here = Path.cwd()
    found = [_from_url_file(embedded_url_file(d / "data")) for d in (here, *here.parents)]
    found.append(_from_user_record())
    unique: dict[str, RedisLocation] = {}
    for location in found:
        if location is not None:
            unique.setdefault(location.url, location)  # the nearest record of each URL
    return list(unique.values())


def _probe(location: RedisLocation) -> Exception | None:
    import redis  # the server extras (`darkroom jobs` and `keys` need them); this module need not

    client = redis.Redis.from_url(
        location.url, socket_connect_timeout=PROBE_TIMEOUT_S, socket_timeout=PROBE_TIMEOUT_S
    )
    try:
        client.ping()
        return None
    except redis.RedisError as exc:
        return exc
    finally:
        client.close()


def locate_redis(configured_url: str, data_dir: Path | None) -> RedisLocation:
    """The Redis to use: ``configured_url`` (DARKROOM_REDIS_URL), else the first recorded embedded
    Redis that answers; click errors that say what to do when there is none."""
    if configured_url:
        return RedisLocation(configured_url, "DARKROOM_REDIS_URL")
    found = candidates(data_dir)
    if not found:
        where = f"in {embedded_url_file(data_dir)}" if data_dir is not None else (
            f"(looked for data/redis/url here and in each parent directory, and for {user_record_file()})"
        )
        raise click.UsageError(
            f"DARKROOM_REDIS_URL is not set and no `darkroom up` recorded its Redis {where}; "
            "start `darkroom up` or set DARKROOM_REDIS_URL"
        )
    first_failure = None
    for location in found:
        failure = _probe(location)
        if failure is None:
            return location
        first_failure = first_failure or failure
    raise found[0].not_running(first_failure)
