"""The job record shared by the API and the workers (stored as a Redis hash by storage.jobs)."""

from __future__ import annotations

import json
import operator
import types
from collections.abc import Callable
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, Field

from darkroom.status import JobStatus

Priority = Literal["normal", "low"]
WebhookStyle = Literal["fal", "eachlabs"]
_JSON_FIELDS = ("input", "result", "error", "metrics")
_ENCODE_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode  # NaN/inf: the slow path
_JSON_SCALARS = frozenset({str, int, float, bool, type(None)})
_STR_ONLY = frozenset({str})
_JSON_MAX_DEPTH = 32


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
        """The record as Redis hash fields: JSON for the dict fields, "1"/"0" for booleans, ``str`` for
        the rest; None is left out. Exactly what the pydantic dump below gives (tests/unit/
        test_hotpath_job_hash.py compares them), built straight from the fields when every value has
        its field's plain type (the submit path: about a third less time)."""
        fast = _fast_hash(self) if type(self) is JobRecord else None
        return fast if fast is not None else self._dumped_hash()

    def _dumped_hash(self) -> dict[str, str]:
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


def _finite_str(value: float) -> str:
    if value - value != 0.0:  # inf and NaN: a JSON-mode dump makes them None
        raise ValueError(value)
    return repr(value)


def _json_text(value: dict) -> str:
    if not value:
        return "{}"
    if not _plain_json(value):
        raise ValueError("not plain JSON")
    return _ENCODE_JSON(value)  # NaN and inf raise ValueError


class _NoPlainType:
    """The type of no value: a field without one plain type always takes the pydantic dump."""


_CONVERT = {str: str, int: int.__repr__, float: _finite_str, bool: {True: "1", False: "0"}.__getitem__,
            dict: _json_text}


def _fast_field(name: str, annotation: Any) -> tuple[str, type, Callable[[Any], str]]:
    """(name, the exact type its value must have for the fast path, how to write it)."""
    kind = dict if name in _JSON_FIELDS else _scalar_type(annotation)
    if kind is None:
        return name, _NoPlainType, str
    if issubclass(kind, Enum):
        return name, kind, operator.attrgetter("value")
    return name, kind, _CONVERT[kind]


def _scalar_type(annotation: Any) -> type | None:
    """The one plain type a scalar field holds besides None (``float | None`` -> float, a Literal of
    strings -> str, a str enum -> itself), or None when there is no such single type."""
    if get_origin(annotation) is Literal:
        kinds = {type(arg) for arg in get_args(annotation)}
        return str if kinds == {str} else None
    if get_origin(annotation) in (Union, types.UnionType):
        rest = [arg for arg in get_args(annotation) if arg is not type(None)]
        return _scalar_type(rest[0]) if len(rest) == 1 else None
    if annotation in (str, int, float, bool):
        return annotation
    if isinstance(annotation, type) and issubclass(annotation, Enum) and issubclass(annotation, str):
        return annotation
    return None


def _plain_json(value: Any, depth: int = 0) -> bool:
    """True when ``value`` is made only of exact dicts with str keys, lists, str, int, float, bool and
    None, so that json.dumps writes what a pydantic JSON-mode dump of it would give."""
    if depth > _JSON_MAX_DEPTH:
        return False
    if type(value) is dict:
        if not set(map(type, value)) <= _STR_ONLY:
            return False
        items = value.values()
    elif type(value) is list:
        items = value
    else:
        return type(value) in _JSON_SCALARS
    if set(map(type, items)) <= _JSON_SCALARS:
        return True
    return all(type(item) in _JSON_SCALARS or _plain_json(item, depth + 1) for item in items)


_FAST_FIELDS = tuple(_fast_field(name, field.annotation) for name, field in JobRecord.model_fields.items())


def _fast_hash(job: JobRecord) -> dict[str, str] | None:
    """:meth:`JobRecord.to_hash` without the pydantic dump, or None when a value is not of its field's
    plain type (an int in a float field, a non-finite float, a tuple or set inside ``input``…)."""
    values = job.__dict__
    out: dict[str, str] = {}
    try:
        for name, kind, write in _FAST_FIELDS:
            value = values[name]
            if value is None:
                continue
            if type(value) is not kind:
                return None
            out[name] = write(value)
    except (KeyError, ValueError):  # a field left unset (model_construct); NaN or inf; not plain JSON
        return None
    return out
