"""Logging set-up for entry points: text in development, JSON lines in compose.

Every line logged while a job is being worked on carries its request id: the worker binds the id(s)
to a context variable (``request_context``) around a task, a job and a batch, and a filter on the
root handler copies it onto each record — Celery's own lines inside a task included. Text lines
show it as ``[req=<id>]``, JSON lines as ``request_id``; a batch shows its ids comma-separated.
"""

from __future__ import annotations

import ast
import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_request_id: ContextVar[str | None] = ContextVar("darkroom_request_id", default=None)
TASK_PREFIX = "darkroom."  # Celery task names whose first argument is a request id


def current_request_id() -> str | None:
    return _request_id.get()


@contextmanager
def request_context(*request_ids: str) -> Iterator[None]:
    """Tag every log line of this thread (or task) with ``request_ids`` until the block ends."""
    token = _request_id.set(",".join(request_ids) or None)
    try:
        yield
    finally:
        _request_id.reset(token)


def bind_request_id(request_id: str | None) -> None:
    """Set the current request id without a block (Celery's task_prerun/task_postrun signals)."""
    _request_id.set(request_id)


def _celery_request_id(record: logging.LogRecord) -> str | None:
    """Celery's "Task … received" line comes from its consumer thread, outside any task; it passes the
    task's name and argument repr as ``extra={"data": …}``, and Darkroom's tasks take a request id."""
    data = getattr(record, "data", None)
    if not (isinstance(data, dict) and str(data.get("name", "")).startswith(TASK_PREFIX)):
        return None
    try:
        args = ast.literal_eval(str(data.get("args", "")))
    except (ValueError, SyntaxError):
        return None
    if isinstance(args, list | tuple) and args and isinstance(args[0], str):
        return args[0]
    return None


class RequestIdFilter(logging.Filter):
    """Copies the current request id onto each record (an explicit ``extra={"request_id": …}`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            rid = _request_id.get() or _celery_request_id(record)
            if rid:
                record.request_id = rid
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s%(req)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        rid = getattr(record, "request_id", None)
        record.req = f" [req={rid}]" if rid else ""
        return super().format(record)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("request_id", "worker"):
            if getattr(record, key, None) is not None:
                out[key] = getattr(record, key)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
