"""`darkroom jobs list | show | requeue | purge`: look at and repair jobs in the job store.

Redis is ``DARKROOM_REDIS_URL`` (when unset, the private Redis of a running `darkroom up`, found from
any directory: ``darkroom.cli.state``); object storage and retention come from the same DARKROOM_*
settings as the service. See docs/operations.md.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import click
import redis

from darkroom.cli.state import data_dir_option, locate_redis
from darkroom.job import JobRecord
from darkroom.settings import Settings
from storage.jobs import JobStore
from storage.maintenance import CANCELLED, STATUS_FILTERS, JobFilter, Purger, job_details, list_jobs

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class Duration(click.ParamType):
    """``90s``, ``30m``, ``1h``, ``7d``, ``2w`` or plain seconds."""

    name = "duration"

    def convert(self, value, param, ctx) -> float:
        if isinstance(value, int | float):
            return float(value)
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", str(value))
        if not match:
            self.fail(f"{value!r} is not a duration like 90s, 30m, 1h, 7d or 2w", param, ctx)
        return float(match.group(1)) * _UNITS[match.group(2) or "s"]


DURATION = Duration()


def _settings(data_dir: Path | None) -> Settings:
    """The service's settings, with the Redis of `darkroom up` when DARKROOM_REDIS_URL is unset."""
    settings = Settings()
    return settings.model_copy(update={"redis_url": locate_redis(settings.redis_url, data_dir).url})


def _store(settings: Settings) -> JobStore:
    store = JobStore.from_settings(settings, socket_timeout_s=max(settings.redis_socket_timeout_s, 3.0))
    try:
        store.ping()
    except redis.RedisError as exc:
        raise click.ClickException(f"cannot reach Redis at {settings.redis_url}: {exc}") from None
    return store


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) if ts else "-"


def _span(start: float | None, end: float | None) -> str:
    return f"{end - start:.2f}s" if start and end else "-"


def _table(jobs: list[JobRecord]) -> str:
    header = ("REQUEST ID", "APP", "STATUS", "ERROR TYPE", "CREATED (UTC)", "WAIT", "RUN", "ATTEMPTS")
    rows = [header] + [
        (
            j.id, j.app_id, j.status.value, (j.error or {}).get("error_type", "-"), _when(j.created_at),
            _span(j.requeued_at or j.created_at, j.started_at), _span(j.started_at, j.completed_at),
            str(j.attempts),
        )
        for j in jobs
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def _dumps(value: object) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def _created_before(older_than_s: float | None) -> float | None:
    return time.time() - older_than_s if older_than_s is not None else None


@click.group()
def jobs() -> None:
    """List, inspect, requeue and purge jobs (docs/operations.md)."""


app_option = click.option("--app", default=None, help="Only jobs of this app id (exact).")
older_option = click.option("--older-than", type=DURATION, default=None,
                            help="Only jobs submitted longer ago than this (90s, 30m, 1h, 7d).")


@jobs.command(name="list")
@app_option
@click.option("--status", type=click.Choice(STATUS_FILTERS, case_sensitive=False), default=None,
              help="IN_QUEUE, IN_PROGRESS, COMPLETED (failed ones included) or FAILED.")
@click.option("--error-type", default=None, help="Only failed jobs with this error_type.")
@older_option
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON record per line instead of a table.")
@data_dir_option
def list_cmd(app, status, error_type, older_than, limit, as_json, data_dir) -> None:
    """Jobs, newest first."""
    store = _store(_settings(data_dir))
    flt = JobFilter(app, status.upper() if status else None, error_type, _created_before(older_than))
    found = list_jobs(store, flt, limit)
    if as_json:
        for job in found:
            click.echo(job.model_dump_json())
    else:
        click.echo(_table(found))


@jobs.command()
@click.argument("request_id")
@data_dir_option
def show(request_id: str, data_dir: Path | None) -> None:
    """One job's record, logs and webhook deliveries, as JSON."""
    details = job_details(_store(_settings(data_dir)), request_id)
    if details is None:
        raise click.ClickException(f"no job {request_id} (unknown, deleted or expired)")
    click.echo(_dumps(details))


@jobs.command()
@click.argument("request_ids", nargs=-1)
@click.option("--failed", is_flag=True, help="Every failed job matching --app/--error-type/--older-than.")
@app_option
@click.option("--error-type", default=None,
              help="With --failed: only this error_type (cancelled jobs only when named here).")
@older_option
@click.option("--limit", type=click.IntRange(min=1), default=None, help="With --failed: at most this many.")
@click.option("--dry-run", is_flag=True, help="Show what would be requeued.")
@data_dir_option
def requeue(request_ids, failed, app, error_type, older_than, limit, dry_run, data_dir) -> None:
    """Run failed jobs again: each goes back to IN_QUEUE (same id and input) behind the queue.

    Only jobs that COMPLETED with an error qualify; their error, result, attempts and crash count are
    reset. A job with a webhook gets it again with the new outcome.
    """
    if bool(request_ids) == failed:
        raise click.UsageError("give request ids, or --failed (not both)")
    settings = _settings(data_dir)
    store = _store(settings)
    if failed:
        skip = () if error_type else (CANCELLED,)  # a cancel was someone's decision: only on request
        flt = JobFilter(app, "FAILED", error_type, _created_before(older_than), exclude_error_types=skip)
        targets: list = list_jobs(store, flt, limit)
    else:
        targets = [store.get(rid) or rid for rid in request_ids]
    if dry_run:
        for job in targets:
            found = isinstance(job, JobRecord)
            click.echo(f"{_id(job)}  {'would be requeued' if found else 'NOT_FOUND'}")
        return
    outcomes = [_requeue_one(store, job) for job in targets]
    for job, outcome in zip(targets, outcomes, strict=True):
        click.echo(f"{_id(job)}  {outcome}")
    done = outcomes.count("REQUEUED")
    click.echo(f"requeued {done} of {len(targets)} job(s)", err=True)
    if done < len(targets):
        raise SystemExit(1)


def _id(job: JobRecord | str) -> str:
    return job.id if isinstance(job, JobRecord) else job


def _requeue_one(store: JobStore, job: JobRecord | str) -> str:
    """REQUEUED (the record and its message together), or why not (NOT_FOUND, NOT_FINISHED, SUCCEEDED)."""
    if not isinstance(job, JobRecord):
        return "NOT_FOUND"
    outcome = store.requeue(job)
    if outcome == "REQUEUED":
        store.add_log(job.id, "requeued by an operator (darkroom jobs requeue)")
    return outcome


@jobs.command()
@click.option("--older-than", type=DURATION, default=None,
              help="Remove finished jobs submitted longer ago than this (default: DARKROOM_RETENTION_S).")
@click.option("--dry-run", is_flag=True, help="Report what would be removed; remove nothing.")
@click.option("--no-objects", is_flag=True,
              help="Skip the walk over object storage for objects no job owns any more.")
@data_dir_option
def purge(older_than, dry_run, no_objects, data_dir) -> None:
    """Remove old finished jobs: records, logs, index entries and their objects (inputs/<id>/, <id>/).

    Also drops index entries whose record Redis already expired (with their objects), and objects
    older than the cut-off that no job owns (old uploads included). Queued and running jobs are never
    touched.
    """
    settings = _settings(data_dir)
    from storage.objects import build_object_store

    purger = Purger(_store(settings), build_object_store(settings),
                    older_than if older_than is not None else settings.retention_s, dry_run)
    report = purger.run(include_objects=not no_objects)
    summary = report.as_dict()
    summary["dry_run"] = dry_run
    click.echo(_dumps(summary))
