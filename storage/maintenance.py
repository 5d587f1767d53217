"""Operator maintenance over the job store and object storage (behind `darkroom jobs`).

Listing walks ``keys.JOBS_INDEX`` (request id -> created_at) newest first; purging removes old
finished jobs — record, logs, webhook record, index entry and objects (``inputs/<id>/`` and
``<id>/``) — plus what Redis expiry leaves behind: index entries whose record expired, and objects
older than the cut-off that no record owns any more (old uploads included).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from darkroom.errors import RequestCancelled
from darkroom.job import JobRecord
from darkroom.status import JobStatus
from storage import keys
from storage.jobs import JobStore
from storage.objects import ObjectStore, request_prefixes

STATUS_FILTERS = ("IN_QUEUE", "IN_PROGRESS", "COMPLETED", "FAILED")  # FAILED: COMPLETED with an error
CANCELLED = RequestCancelled.code
_CHUNK = 500


@dataclass(frozen=True)
class JobFilter:
    app: str | None = None
    status: str | None = None  # one of STATUS_FILTERS
    error_type: str | None = None
    created_before: float | None = None  # unix seconds
    exclude_error_types: tuple[str, ...] = ()

    def matches(self, job: JobRecord) -> bool:
        if self.app and job.app_id != self.app:
            return False
        error_type = (job.error or {}).get("error_type")
        if (self.error_type and error_type != self.error_type) or error_type in self.exclude_error_types:
            return False
        if self.status == "FAILED":
            return job.status is JobStatus.COMPLETED and job.failed
        return not self.status or job.status.value == self.status


def _decode(raw: dict) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in raw.items()}


def _index_newest_first(store: JobStore, before: float | None) -> Iterator[str]:
    """Request ids of the index, newest first, paging by score (safe while jobs are added)."""
    hi: float | str = "+inf" if before is None else f"({before}"
    boundary: set[str] = set()  # ids already yielded at score ``hi``
    while True:
        rows = store.r.zrevrangebyscore(
            keys.JOBS_INDEX, hi, "-inf", start=0, num=_CHUNK + len(boundary), withscores=True
        )
        fresh = [(m.decode(), s) for m, s in rows if m.decode() not in boundary]
        if not fresh:
            return
        for rid, _ in fresh:
            yield rid
        last = fresh[-1][1]
        boundary = {rid for rid, s in fresh if s == last} | (boundary if last == hi else set())
        hi = last


def iter_jobs(store: JobStore, flt: JobFilter) -> Iterator[JobRecord]:
    """Jobs matching ``flt``, newest first (records that expired meanwhile are skipped)."""
    ids = _index_newest_first(store, flt.created_before)
    while True:
        chunk = [rid for _, rid in zip(range(_CHUNK), ids, strict=False)]
        if not chunk:
            return
        pipe = store.r.pipeline(transaction=False)
        for rid in chunk:
            pipe.hgetall(keys.job(rid))
        for raw in pipe.execute():
            if raw:
                job = JobRecord.from_hash(_decode(raw))
                if flt.matches(job):
                    yield job


def list_jobs(store: JobStore, flt: JobFilter, limit: int | None) -> list[JobRecord]:
    out: list[JobRecord] = []
    for job in iter_jobs(store, flt):
        if limit is not None and len(out) >= limit:
            break
        out.append(job)
    return out


def job_details(store: JobStore, request_id: str) -> dict | None:
    """Everything stored about one job: its record (fields the model does not know included), logs,
    webhook deliveries and the time left before Redis expires it."""
    raw = store.r.hgetall(keys.job(request_id))
    if not raw:
        return None
    data = _decode(raw)
    record = JobRecord.from_hash(data).model_dump(mode="json")
    record.update({k: v for k, v in data.items() if k not in record})
    return {
        "record": record,
        "logs": store.logs(request_id),
        "webhook": _decode(store.r.hgetall(keys.job_webhook(request_id))) or None,
        "expires_in_s": store.r.ttl(keys.job(request_id)),
    }


def delete_job(store: JobStore, objects: ObjectStore, request_id: str) -> int:
    """Remove one request for good: its objects (inputs and outputs), then its record, logs and
    webhook record. Returns how many objects were deleted."""
    removed = sum(objects.delete_prefix(prefix) for prefix in request_prefixes(request_id))
    store.delete(request_id)
    return removed


def _is_request_id(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def object_owner(key: str) -> tuple[str | None, str] | None:
    """(request id or None for an upload, the prefix to delete) for Darkroom's keys; None otherwise."""
    head, _, rest = key.partition("/")
    if head == "uploads" and rest:
        return None, key
    if head == "inputs":
        rid = rest.partition("/")[0]
        return (rid, f"inputs/{rid}/") if _is_request_id(rid) else None
    if _is_request_id(head) and rest:
        return head, f"{head}/"
    return None  # not Darkroom's: never touched


@dataclass
class PurgeReport:
    records: list[str] = field(default_factory=list)  # old finished jobs removed
    expired: list[str] = field(default_factory=list)  # index entries whose record had expired
    skipped: list[str] = field(default_factory=list)  # old but still queued or running: left alone
    prefixes: list[str] = field(default_factory=list)  # object prefixes removed
    objects: int = 0

    def as_dict(self) -> dict:
        return {
            "records": len(self.records), "expired_index_entries": len(self.expired),
            "skipped_unfinished": self.skipped, "object_prefixes": len(self.prefixes),
            "objects": self.objects,
        }


class Purger:
    """One purge run; ``dry_run`` reports what would go and deletes nothing."""

    def __init__(self, store: JobStore, objects: ObjectStore, older_than_s: float, dry_run: bool = False):
        self.store, self.objects, self.dry_run = store, objects, dry_run
        self.cutoff = time.time() - older_than_s
        self.report = PurgeReport()
        self._done: set[str] = set()

    def run(self, include_objects: bool = True) -> PurgeReport:
        self.purge_index()
        if include_objects:
            self.purge_orphan_objects()
        return self.report

    def purge_index(self) -> None:
        """Old finished jobs, and index entries (any age) whose record Redis already expired."""
        entries = list(self.store.r.zscan_iter(keys.JOBS_INDEX, count=_CHUNK))
        for start in range(0, len(entries), _CHUNK):
            chunk = entries[start:start + _CHUNK]
            pipe = self.store.r.pipeline(transaction=False)
            for member, _ in chunk:
                pipe.hget(keys.job(member.decode()), "status")
            for (member, created_at), status in zip(chunk, pipe.execute(), strict=True):
                self._purge_entry(member.decode(), created_at, status)

    def _purge_entry(self, rid: str, created_at: float, status: bytes | None) -> None:
        if status is None:
            self.report.expired.append(rid)
        elif created_at >= self.cutoff:
            return
        elif status.decode() != JobStatus.COMPLETED.value:
            self.report.skipped.append(rid)
            return
        else:
            self.report.records.append(rid)
        for prefix in request_prefixes(rid):
            self._delete_prefix(prefix)
        self._done.add(rid)
        if not self.dry_run:
            self.store.delete(rid)

    def purge_orphan_objects(self) -> None:
        """Object prefixes whose newest object is older than the cut-off and that no record owns."""
        newest: dict[str, float] = {}
        owners: dict[str, str | None] = {}
        for info in self.objects.list_objects():
            owned = object_owner(info.key)
            if owned is None or owned[0] in self._done:
                continue
            rid, prefix = owned
            owners[prefix] = rid
            newest[prefix] = max(newest.get(prefix, 0.0), info.modified_at)
        for prefix, modified_at in newest.items():
            rid = owners[prefix]
            if modified_at < self.cutoff and not (rid and self.store.r.exists(keys.job(rid))):
                self._delete_prefix(prefix)

    def _delete_prefix(self, prefix: str) -> None:
        if self.dry_run:
            count = sum(1 for _ in self.objects.list_objects(prefix))
        else:
            count = self.objects.delete_prefix(prefix)
        if count:
            self.report.prefixes.append(prefix)
            self.report.objects += count
