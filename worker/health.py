"""A worker process's health: its heartbeat key, and the hard time limit watchdog.

Celery's thread pool cannot enforce hard time limits, so a watchdog thread does: when a job has run
longer than the hard limit, the process exits. Its late-acked messages stay in Redis and are
redelivered after the visibility timeout; the job store counts that as a crash, and a job that keeps
doing it ends as ``worker_crash``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from storage.jobs import JobStore

log = logging.getLogger(__name__)
HARD_LIMIT_EXIT_CODE = 70


def worker_id() -> str:
    """This process's identity in job records and heartbeat keys: ``<hostname>:<pid>``."""
    return f"{socket.gethostname()}:{os.getpid()}"


class JobTracker:
    """The jobs this process is running, with their start times (monotonic)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, float] = {}

    @contextmanager
    def track(self, request_id: str) -> Iterator[None]:
        with self._lock:
            self._running[request_id] = time.monotonic()
        try:
            yield
        finally:
            with self._lock:
                self._running.pop(request_id, None)

    def elapsed_s(self, request_id: str) -> float:
        with self._lock:
            started = self._running.get(request_id)
        return 0.0 if started is None else time.monotonic() - started

    def longest(self) -> tuple[str | None, float]:
        with self._lock:
            if not self._running:
                return None, 0.0
            rid, started = min(self._running.items(), key=lambda kv: kv[1])
        return rid, time.monotonic() - started


class _Periodic(threading.Thread):
    def __init__(self, name: str, interval_s: float) -> None:
        super().__init__(name=name, daemon=True)
        self.interval_s = interval_s
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval_s):
            self.tick()

    def tick(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def stop(self) -> None:
        self.stopped.set()


class Heartbeat(_Periodic):
    def __init__(self, store: JobStore, worker: str, interval_s: float, ttl_s: float) -> None:
        super().__init__("darkroom-heartbeat", interval_s)
        self.store, self.worker, self.ttl_s = store, worker, ttl_s
        self.tick()

    def tick(self) -> None:
        try:
            self.store.heartbeat(self.worker, self.ttl_s)
        except Exception as exc:  # Redis away: keep trying, the key simply expires meanwhile
            log.warning("heartbeat failed: %s", exc)


class Watchdog(_Periodic):
    def __init__(self, tracker: JobTracker, hard_limit_s: float) -> None:
        super().__init__("darkroom-watchdog", min(1.0, hard_limit_s / 10))
        self.tracker, self.hard_limit_s = tracker, hard_limit_s

    def tick(self) -> None:
        rid, elapsed = self.tracker.longest()
        if rid is not None and elapsed > self.hard_limit_s:
            limit = self.hard_limit_s
            log.critical("job %s ran %.1fs, past the hard limit of %.1fs: exiting", rid, elapsed, limit)
            logging.shutdown()
            os._exit(HARD_LIMIT_EXIT_CODE)
