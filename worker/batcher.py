"""Dynamic batching: one thread per worker process owns the device and runs batches of prepared jobs.

Job slots (Celery's thread pool, each holding one late-acked message) prepare their job, hand it to
the batcher and wait on a future. The batcher groups items by batch key and runs a group when it is
full (``max_batch_size``), when its oldest item has waited ``max_wait_ms``, or at once when no other
slot is still preparing a job (nothing more could join, so waiting would only add latency). Each item
keeps its own outcome: when a batch raises, its items are re-run one by one so only the bad one
fails; when the device runs out of memory, the batch is split in halves.

A multi-step item (a pipeline) answers a batch with :class:`Requeue`: the batcher files it under its
next step's key at once, on its own thread, so batch-mates that reach the same step together batch
there again and intermediate images never leave the device between steps.

With an ``admit`` check (the runner's step boundary: cancelled, taken over, past its time limit), the
batcher asks once per batch, for all its items together, right before an item's first batch runs and
right after its last one (before its output is handed back); an item that should stop gets that
reason as its outcome and its batch-mates go on. One question per batch instead of two per job.
Between the steps of a multi-step item its pipeline checks (and logs) for itself.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from darkroom.errors import DeviceOutOfMemory
from darkroom.logs import request_context

log = logging.getLogger(__name__)

RunBatch = Callable[[Sequence[Any]], list[Any]]
# For each item, why it should not pass this step boundary (an exception to hand to its future), or None.
Admit = Callable[[Sequence[Any]], list[BaseException | None]]


def is_out_of_memory(exc: BaseException) -> bool:
    return type(exc).__name__ in ("OutOfMemoryError", "MemoryError") or "out of memory" in str(exc)


@dataclass(frozen=True)
class Requeue:
    """A batch output meaning "not done: run this item again in a batch of ``key``"."""

    key: Hashable


@dataclass
class _Group:
    since: float
    items: list[tuple[Any, Future]] = field(default_factory=list)


class Batcher:
    def __init__(
        self, run_batch: RunBatch, max_batch_size: int, max_wait_ms: float,
        request_id: Callable[[Any], str] | None = None, admit: Admit | None = None,
    ) -> None:
        self.run_batch = run_batch
        self.admit = admit  # the step-boundary check, once per batch before and after it runs
        self.request_id = request_id  # an item's request id, for the log lines of its batch
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000
        self._cond = threading.Condition()
        self._groups: dict[Hashable, _Group] = {}
        self._preparing = 0
        self._stopped = False
        self._requeued: weakref.WeakSet[Future] = weakref.WeakSet()  # items past their first step
        self._thread = threading.Thread(target=self._loop, name="darkroom-batcher", daemon=True)
        self._thread.start()

    # --- called by job slots ---------------------------------------------------------------------
    def preparing(self) -> None:
        """A slot started preparing a job that will be submitted (or abandoned) soon."""
        with self._cond:
            self._preparing += 1

    def abandoned(self) -> None:
        """A slot that announced ``preparing`` will not submit (its job failed or was skipped)."""
        with self._cond:
            self._preparing = max(0, self._preparing - 1)
            self._cond.notify()

    def submit(self, key: Hashable, item: Any) -> Future:
        """Queue ``item`` for a batch of items sharing ``key``; the future gets its output."""
        fut: Future = Future()
        with self._cond:
            if self._stopped:
                raise RuntimeError("batcher stopped")
            self._preparing = max(0, self._preparing - 1)
            self._groups.setdefault(key, _Group(time.monotonic())).items.append((item, fut))
            self._cond.notify()
        return fut

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(timeout=5)

    # --- the batcher thread ----------------------------------------------------------------------
    def _next_group(self) -> list[tuple[Any, Future]] | None:
        """Wait for a group that should run now; None when stopped and drained."""
        with self._cond:
            while True:
                if self._groups:
                    key, wait_s = self._ready()
                    if key is not None:
                        group = self._groups[key]
                        batch = group.items[: self.max_batch_size]
                        group.items = group.items[self.max_batch_size:]
                        if not group.items:
                            del self._groups[key]
                        return batch
                    self._cond.wait(timeout=wait_s)
                elif self._stopped:
                    return None
                else:
                    self._cond.wait()

    def _ready(self) -> tuple[Hashable | None, float]:
        now = time.monotonic()
        oldest_key, oldest = min(self._groups.items(), key=lambda kv: kv[1].since)
        for key, group in self._groups.items():
            if len(group.items) >= self.max_batch_size:
                return key, 0.0
        remaining = oldest.since + self.max_wait_s - now
        if remaining <= 0 or self._preparing == 0 or self._stopped:
            return oldest_key, 0.0
        return None, remaining

    def _loop(self) -> None:
        while (batch := self._next_group()) is not None:
            self._run(batch)

    def _run(self, batch: list[tuple[Any, Future]]) -> None:
        ids = [self.request_id(item) for item, _ in batch] if self.request_id else []
        with request_context(*ids):
            passed = {id(f) for _, f in self._admitted([e for e in batch if e[1] not in self._requeued])}
            batch = [e for e in batch if e[1] in self._requeued or id(e[1]) in passed]
            if not batch:
                return
            try:
                outputs = self.run_batch([item for item, _ in batch])
            except BaseException as exc:  # noqa: BLE001 - every failure is handed to its futures
                self._recover(batch, exc)
                return
            requeued, done = [], []
            for (item, fut), out in zip(batch, outputs, strict=True):
                if isinstance(out, Requeue):
                    requeued.append((out.key, item, fut))
                    self._requeued.add(fut)
                else:
                    done.append((item, fut, out))
            if done:  # the boundary after the batch: outputs of stopped items are dropped
                passed = {id(fut) for _, fut in self._admitted([(item, fut) for item, fut, _ in done])}
                for _, fut, out in done:
                    if id(fut) in passed:
                        fut.set_result(out)
        if requeued:
            with self._cond:
                now = time.monotonic()
                for key, item, fut in requeued:
                    self._groups.setdefault(key, _Group(now)).items.append((item, fut))
                self._cond.notify()

    def _admitted(self, batch: list[tuple[Any, Future]]) -> list[tuple[Any, Future]]:
        """The items that pass the ``admit`` check; the others get their reason as their outcome (all
        of them get the check's own error, when asking fails)."""
        if self.admit is None or not batch:
            return batch
        try:
            stops = self.admit([item for item, _ in batch])
        except BaseException as exc:  # noqa: BLE001 - handed to every future of the batch
            for _, fut in batch:
                fut.set_exception(exc)
            return []
        passed = []
        for (item, fut), stop in zip(batch, stops, strict=True):
            if stop is None:
                passed.append((item, fut))
            else:
                fut.set_exception(stop)
        return passed

    def _recover(self, batch: list[tuple[Any, Future]], exc: BaseException) -> None:
        if len(batch) == 1:
            _, fut = batch[0]
            if is_out_of_memory(exc):
                exc = DeviceOutOfMemory(f"the device ran out of memory on a single image: {exc}")
            fut.set_exception(exc)
            return
        if is_out_of_memory(exc):
            half = len(batch) // 2
            log.warning("out of memory on a batch of %d; retrying in halves", len(batch))
            self._run(batch[:half])
            self._run(batch[half:])
            return
        log.warning("a batch of %d failed (%s); re-running its items one by one", len(batch), exc)
        for one in batch:
            self._run([one])
