"""``Batcher`` with an ``admit`` check (the runner's step boundary): asked once per batch, for all its
items, right before the batch runs and right after it; a stopped item gets its reason as its outcome
while its batch-mates go on. The real batcher thread runs every batch."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from darkroom.errors import RequestCancelled
from worker.batcher import Batcher, Requeue

pytestmark = pytest.mark.timeout(30)
TIMEOUT_S = 10


class Device:
    """``run_batch``: doubles each number; ``stop_after`` names items the check stops once they ran."""

    def __init__(self) -> None:
        self.ran: list[list[int]] = []
        self.lock = threading.Lock()

    def __call__(self, items: Sequence[int]) -> list:
        with self.lock:
            self.ran.append(list(items))
        return [2 * x for x in items]


class Check:
    """``admit``: records every question; stops the items in ``before`` (not run yet) or ``after``."""

    def __init__(self, before: set[int] = frozenset(), after: set[int] = frozenset()) -> None:
        self.before, self.after = set(before), set(after)
        self.asked: list[list[int]] = []
        self.seen: set[int] = set()

    def __call__(self, items: Sequence[int]) -> list[BaseException | None]:
        self.asked.append(list(items))
        stops = []
        for x in items:
            stop = x in (self.after if x in self.seen else self.before)
            self.seen.add(x)
            stops.append(RequestCancelled(f"{x} was cancelled") if stop else None)
        return stops


def run_together(batcher: Batcher, items: list[int]) -> list:
    for _ in items:
        batcher.preparing()  # every item announced first: they run as one batch
    return [batcher.submit("k", x) for x in items]


def outcome(future) -> object:
    exc = future.exception(timeout=TIMEOUT_S)
    return type(exc).__name__ if exc is not None else future.result()


@pytest.fixture
def made():
    batchers: list[Batcher] = []
    yield batchers
    for b in batchers:
        b.stop()


def make(made, check, device: Device | None = None) -> tuple[Batcher, Device]:
    device = device or Device()
    batcher = Batcher(device, max_batch_size=8, max_wait_ms=10_000, admit=check)
    made.append(batcher)
    return batcher, device


def test_one_question_before_and_one_after_each_batch(made):
    check = Check()
    batcher, device = make(made, check)
    futures = run_together(batcher, [1, 2, 3])
    assert [outcome(f) for f in futures] == [2, 4, 6]
    assert device.ran == [[1, 2, 3]]
    assert check.asked == [[1, 2, 3], [1, 2, 3]]


def test_an_item_stopped_before_the_batch_does_not_run(made):
    check = Check(before={2})
    batcher, device = make(made, check)
    futures = run_together(batcher, [1, 2, 3])
    assert [outcome(f) for f in futures] == [2, "RequestCancelled", 6]
    assert device.ran == [[1, 3]]
    assert check.asked == [[1, 2, 3], [1, 3]]


def test_an_item_stopped_after_the_batch_loses_its_output(made):
    check = Check(after={3})
    batcher, device = make(made, check)
    futures = run_together(batcher, [1, 2, 3])
    assert [outcome(f) for f in futures] == [2, 4, "RequestCancelled"]
    assert device.ran == [[1, 2, 3]]


def test_a_check_that_fails_fails_its_whole_batch(made):
    def broken(items: Sequence[int]) -> list:
        raise ConnectionError("job store away")

    batcher, device = make(made, broken)
    futures = run_together(batcher, [1, 2])
    assert [outcome(f) for f in futures] == ["ConnectionError", "ConnectionError"]
    assert device.ran == []


def test_requeued_items_are_checked_before_their_first_step_and_after_their_last(made):
    check = Check()
    steps: list[list[int]] = []

    def two_steps(items: Sequence[int]) -> list:
        steps.append(list(items))
        return [Requeue("second") for _ in items] if len(steps) == 1 else [10 * x for x in items]

    batcher = Batcher(two_steps, max_batch_size=8, max_wait_ms=10_000, admit=check)
    made.append(batcher)
    futures = run_together(batcher, [5, 7])
    assert [outcome(f) for f in futures] == [50, 70]
    assert steps == [[5, 7], [5, 7]]
    # between steps the item's own pipeline checks (and logs why it stops)
    assert check.asked == [[5, 7], [5, 7]]
