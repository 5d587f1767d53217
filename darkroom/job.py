"""The job record shared by the API and the workers (stored as a Redis hash by storage.jobs)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from darkroom.status import JobStatus

Priority = Literal["normal", "low"]
WebhookStyle = Literal["fal", "eachlabs"]
_JSON_FIELDS = ("input", "result", "error", "metrics")


class LogEntry(BaseModel):
    message: str
    level: str = "INFO"
    source: str = "USER"
    timestamp: str

    @classmethod
    def now(cls, message: str, level: str = "INFO") -> LogEntry:
        ts = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return cls(message=message, level=level, timestamp=ts)


class JobRecord(BaseModel):
    id: str
    app_id: str
    base_id: str
    input: dict[str, Any]
    owner: str = ""
    status: JobStatus = JobStatus.IN_QUEUE
    priority: Priority = "normal"
    seq: int = 0
    seed: int = 0
    created_at: float
    started_at: float | None = None
    completed_at: float | None = None
    deadline_at: float | None = None  # X-Fal-Request-Timeout: must have started by then
    attempts: int = 0
    crashes: int = 0
    requeued_at: float | None = None  # set by `darkroom jobs requeue` (storage.jobs.JobStore.requeue)
    requeues: int = 0
    cancel_requested: bool = False
    webhook_url: str = ""
    webhook_style: WebhookStyle = "fal"  # payload and signature: fal's, or eachlabs' (HMAC)
    webhook_secret: str = ""  # eachlabs webhook_secret (HMAC key)
    no_retry: bool = False  # x-fal-no-retry: a transient failure fails the job at once
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.error is not None

    def to_hash(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, value in self.model_dump(mode="json").items():
            if value is None:
                continue
            if name in _JSON_FIELDS:
                out[name] = json.dumps(value, separators=(",", ":"))
            elif isinstance(value, bool):
                out[name] = "1" if value else "0"
            else:
                out[name] = str(value)
        return out

    @classmethod
    def from_hash(cls, data: dict[str, str]) -> JobRecord:
        values: dict[str, Any] = {}
        for name, raw in data.items():
            if name in _JSON_FIELDS:
                values[name] = json.loads(raw)
            elif name == "cancel_requested":
                values[name] = raw == "1"
            elif name in cls.model_fields:
                values[name] = raw
        return cls.model_validate(values)
