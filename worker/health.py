"""A worker process's health: its heartbeat and leases, the hard time limit watchdog and the
recovery sweep.

Celery's thread pool cannot enforce hard time limits, so a watchdog thread does: when a job has run
longer than the hard limit, the process exits. Its leases then lapse and the recovery sweep re-sends
its jobs within seconds; the job store counts that as a crash, and a job that keeps doing it ends as
``worker_crash``. Time the process was not running at all (stopped with SIGSTOP, a suspended host)
is not counted against its jobs: the watchdog notices the gap in its own ticks.
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
from storage.recovery import Recovery

log = logging.getLogger(__name__)
HARD_LIMIT_EXIT_CODE = 70


def worker_id() -> str:
    """This process's identity in job records and heartbeat keys: ``<hostname>:<pid>``."""
    return f"{socket.gethostname()}:{os.getpid()}"


class JobTracker:
    """Time each job spends in active phases (prepare, its batch on the device, finish).

    Waiting for a batch slot is not counted: it is not the job's doing. The watchdog looks at the
    phase running now; the soft limit at the total so far.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: dict[str, float] = {}
        self._spent: dict[str, float] = {}

    def running(self) -> list[str]:
        """Jobs between start and end of an attempt here (their leases are kept alive)."""
        with self._lock:
            return list(self._spent)

    def begin(self, request_id: str) -> None:
        with self._lock:
            self._spent.setdefault(request_id, 0.0)

    @contextmanager
    def track(self, *request_ids: str) -> Iterator[None]:
        now = time.monotonic()
        with self._lock:
            for rid in request_ids:
                self._active[rid] = now
        try:
            yield
        finally:
            end = time.monotonic()
            with self._lock:
                for rid in request_ids:
                    started = self._active.pop(rid, end)
                    self._spent[rid] = self._spent.get(rid, 0.0) + end - started

    def exclude(self, seconds: float) -> None:
        """Do not count the last ``seconds`` against the phases running now (the process was stopped)."""
        with self._lock:
            for rid in self._active:
                self._active[rid] += seconds

    def forget(self, request_id: str) -> None:
        with self._lock:
            self._spent.pop(request_id, None)

    def elapsed_s(self, request_id: str) -> float:
        with self._lock:
            started = self._active.get(request_id)
            spent = self._spent.get(request_id, 0.0)
        return spent + (0.0 if started is None else time.monotonic() - started)

    def longest(self) -> tuple[str | None, float]:
        """The job whose current phase has run longest, and for how long."""
        with self._lock:
            if not self._active:
                return None, 0.0
            rid, started = min(self._active.items(), key=lambda kv: kv[1])
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
    """Writes the worker's heartbeat and keeps the leases of the jobs it runs alive."""

    def __init__(self, store: JobStore, worker: str, tracker: JobTracker, interval_s: float, ttl_s: float):
        super().__init__("darkroom-heartbeat", interval_s)
        self.store, self.worker, self.tracker, self.ttl_s = store, worker, tracker, ttl_s
        self.tick()

    def tick(self) -> None:
        try:
            self.store.heartbeat(self.worker, self.ttl_s)
            for rid in self.store.refresh_leases(self.tracker.running(), self.worker, self.ttl_s):
                log.warning("job %s was taken over by another worker; this attempt will stop", rid)
        except Exception as exc:  # Redis away: keep trying, the key simply expires meanwhile
            log.warning("heartbeat failed: %s", exc)


class Watchdog(_Periodic):
    def __init__(self, tracker: JobTracker, hard_limit_s: float) -> None:
        super().__init__("darkroom-watchdog", min(1.0, hard_limit_s / 10))
        self.tracker, self.hard_limit_s = tracker, hard_limit_s
        self._last = time.monotonic()

    def tick(self) -> None:
        now = time.monotonic()
        gap = now - self._last - self.interval_s
        self._last = now
        if gap > max(1.0, self.interval_s):  # this thread did not run: the process was stopped
            log.warning("the worker did not run for %.1fs (stopped?); not counted against its jobs", gap)
            self.tracker.exclude(gap)
        rid, elapsed = self.tracker.longest()
        if rid is not None and elapsed > self.hard_limit_s:
            limit = self.hard_limit_s
            log.critical("job %s ran %.1fs, past the hard limit of %.1fs: exiting", rid, elapsed, limit)
            logging.shutdown()
            os._exit(HARD_LIMIT_EXIT_CODE)


class RecoverySweeper(_Periodic):
    """Runs the recovery sweep (storage/recovery.py) every ``recovery_interval_s``, in one worker at a
    time (a lock that lapses with the interval, so a dead worker's turn passes to another)."""

    def __init__(self, recovery: Recovery, app_ids, interval_s: float) -> None:
        super().__init__("darkroom-recovery", interval_s)
        self.recovery, self.app_ids = recovery, app_ids

    def tick(self) -> None:
        try:
            if self.recovery.take_turn(self.interval_s):
                self.sweep()
        except Exception as exc:  # Redis away: try again next tick
            log.warning("recovery sweep failed: %s", exc)

    def sweep(self) -> None:
        resent = self.recovery.sweep(list(self.app_ids()))
        for what, ids in (("job (message lost)", resent.queued), ("job (worker lost)", resent.running),
                          ("webhook (message or worker lost)", resent.webhooks)):
            for rid in ids:
                log.warning("%s %s: sending it again", what, rid)
        if resent.webhook_retries:
            log.info("sent %d due webhook retries", len(resent.webhook_retries))
