"""`darkroom keys create | list | revoke`: manage API keys (docs/decisions.md §17) in the job store's Redis.

Redis is ``DARKROOM_REDIS_URL``; when that is unset, the private Redis of a running `darkroom up`
(its URL is kept in ``<data-dir>/redis/url`` and a per-user record: ``darkroom.cli.state``).
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import redis

from darkroom.cli.state import data_dir_option, locate_redis
from darkroom.settings import Settings
from storage.apikeys import ApiKeyInfo, ApiKeyStore
from storage.jobs import redis_client


def _store(data_dir: Path | None) -> ApiKeyStore:
    url = locate_redis(Settings().redis_url, data_dir).url
    client = redis_client(url, 3)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise click.ClickException(f"cannot reach Redis at {url}: {exc}") from None
    return ApiKeyStore(client)


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _row(info: ApiKeyInfo) -> str:
    state = f"revoked {_when(info.revoked_at)}" if info.revoked else "active"
    return f"{info.key_id}  {_when(info.created_at)}  {state:<28}  {info.name}"



@click.group()
def keys() -> None:
    """Create, list and revoke API keys (stored only as hashes)."""


@keys.command()
@click.option("--name", default="", help="A label to recognise the key by.")
@data_dir_option
def create(name: str, data_dir: Path | None) -> None:
    """Create a key and print it. It is shown this once: only its hash is kept."""
    info, key = _store(data_dir).create(name)
    click.echo(key)
    click.echo(
        f"Created API key {info.key_id}{f' ({name})' if name else ''}. Store it now: it cannot be shown "
        "again. Clients send it as 'Authorization: Key <key>' (use it as FAL_KEY as it is).",
        err=True,
    )


@keys.command(name="list")
@data_dir_option
def list_keys(data_dir: Path | None) -> None:
    """List keys: id, creation time, state and name (never the key)."""
    found = _store(data_dir).all()
    if not found:
        click.echo("no API keys; create one with `darkroom keys create`", err=True)
        return
    click.echo(f"{'KEY ID':<19}  {'CREATED':<19}  {'STATE':<28}  NAME")
    for info in found:
        click.echo(_row(info))


@keys.command()
@click.argument("key_id")
@data_dir_option
def revoke(key_id: str, data_dir: Path | None) -> None:
    """Revoke a key by its id (dk_…): requests with it are refused from now on."""
    info = _store(data_dir).revoke(key_id.strip().split(":", 1)[0])
    if info is None:
        raise click.ClickException(f"no API key {key_id!r}; see `darkroom keys list`")
    click.echo(f"revoked {info.key_id}")
