"""``Batcher`` with :class:`Requeue`: an item answered ``Requeue(key)`` runs again in a batch of that
key, beside other items of the key, and its future gets its final output. The real batcher thread
runs a small multi-stage pipeline: each job walks its ``route`` of keys, one stage per batch."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import pytest

from worker.batcher import Batcher, Requeue

TIMEOUT_S = 10


@dataclass
class Job:
    name: str
    route: list[str]  # the key of each stage, in order
    fail_at: str | None = None  # the key whose batch this job breaks
    stage: int = 0
    seen: list[tuple[str, int]] = field(default_factory=list)  # (key, batch size) of each stage run

    @property
    def key(self) -> str:
        return self.route[self.stage]


class Stages:
    """``run_batch``: one stage for every job of the batch; jobs change only when the whole batch
    succeeds, so the batcher can re-run a failed batch's jobs one by one."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, list[str]]] = []  # (key, job names), failed batches included
        self.lock = threading.Lock()

    def __call__(self, jobs: Sequence[Job]) -> list:
        keys = {job.key for job in jobs}
        assert len(keys) == 1, f"a batch mixed keys {keys}"
        key = keys.pop()
        with self.lock:
            self.batches.append((key, [job.name for job in jobs]))
        for job in jobs:
            if job.fail_at == key:
                raise ValueError(f"{job.name} failed at {key}")
        outputs = []
        for job in jobs:
            job.seen.append((key, len(jobs)))
            job.stage += 1
            outputs.append(Requeue(job.key) if job.stage < len(job.route) else f"{job.name} done")
        return outputs

    def sizes(self) -> list[tuple[str, int]]:
        with self.lock:
            return [(key, len(names)) for key, names in self.batches]


@pytest.fixture
def stages() -> Stages:
    return Stages()


@pytest.fixture
def make_batcher(stages) -> Iterator:
    made: list[Batcher] = []

    def make(max_batch_size: int = 8, max_wait_ms: float = 10_000) -> Batcher:
        batcher = Batcher(stages, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms)
        made.append(batcher)
        return batcher

    yield make
    for batcher in made:
        batcher.stop()


def submit_together(batcher: Batcher, jobs: list[Job]) -> list:
    """Announce every job first, so the batcher waits until the last one is in."""
    for _ in jobs:
        batcher.preparing()
    return [batcher.submit(job.key, job) for job in jobs]


def test_requeued_items_batch_again_at_each_stage(make_batcher, stages):
    jobs = [Job(f"job{i}", ["resize", "pad", "encode"]) for i in range(3)]
    futures = submit_together(make_batcher(), jobs)
    assert [f.result(timeout=TIMEOUT_S) for f in futures] == ["job0 done", "job1 done", "job2 done"]
    assert stages.sizes() == [("resize", 3), ("pad", 3), ("encode", 3)]
    assert all(job.seen == [("resize", 3), ("pad", 3), ("encode", 3)] for job in jobs)


def test_a_requeued_item_joins_the_items_waiting_under_its_key(make_batcher, stages):
    batcher = make_batcher()
    early, waiting = Job("early", ["crop", "pad"]), Job("waiting", ["pad"])
    batcher.preparing()
    batcher.preparing()
    first = batcher.submit("crop", early)  # a slot is still preparing: the batcher waits
    second = batcher.submit("pad", waiting)
    assert first.result(timeout=TIMEOUT_S) == "early done"
    assert second.result(timeout=TIMEOUT_S) == "waiting done"
    assert stages.batches == [("crop", ["early"]), ("pad", ["waiting", "early"])]
    assert early.seen == [("crop", 1), ("pad", 2)]


def test_requeued_items_split_by_their_next_key(make_batcher, stages):
    jobs = [Job("a", ["decode", "resize"]), Job("b", ["decode", "crop"]), Job("c", ["decode", "resize"])]
    futures = submit_together(make_batcher(), jobs)
    assert [f.result(timeout=TIMEOUT_S) for f in futures] == ["a done", "b done", "c done"]
    assert stages.batches[0] == ("decode", ["a", "b", "c"])
    assert sorted(stages.batches[1:]) == [("crop", ["b"]), ("resize", ["a", "c"])]


def test_an_item_may_requeue_under_the_same_key(make_batcher, stages):
    job = Job("loop", ["effects", "effects", "effects"])
    future = make_batcher().submit("effects", job)
    assert future.result(timeout=TIMEOUT_S) == "loop done"
    assert stages.sizes() == [("effects", 1)] * 3


def test_the_future_waits_for_the_last_stage(stages):
    at_last_stage, release = threading.Event(), threading.Event()

    def gated(batch: Sequence[Job]) -> list:
        if batch[0].key == "b":
            at_last_stage.set()
            assert release.wait(TIMEOUT_S)
        return stages(batch)

    batcher = Batcher(gated, max_batch_size=4, max_wait_ms=10_000)
    try:
        future = batcher.submit("a", Job("slow", ["a", "b"]))
        assert at_last_stage.wait(TIMEOUT_S)
        assert not future.done()  # stage a answered Requeue: nothing for the caller yet
        release.set()
        assert future.result(timeout=TIMEOUT_S) == "slow done"
        assert stages.sizes() == [("a", 1), ("b", 1)]
    finally:
        release.set()
        batcher.stop()


def test_a_failure_in_a_requeued_stage_fails_only_that_item(make_batcher, stages):
    route = ["decode", "resize", "encode"]
    jobs = [Job("good0", route), Job("bad", route, fail_at="resize"), Job("good1", route)]
    futures = submit_together(make_batcher(), jobs)
    assert futures[0].result(timeout=TIMEOUT_S) == "good0 done"
    assert futures[2].result(timeout=TIMEOUT_S) == "good1 done"
    with pytest.raises(ValueError, match="bad failed at resize"):
        futures[1].result(timeout=TIMEOUT_S)
    assert stages.batches == [
        ("decode", ["good0", "bad", "good1"]),
        ("resize", ["good0", "bad", "good1"]),  # raised: re-run one by one
        ("resize", ["good0"]),
        ("resize", ["bad"]),
        ("resize", ["good1"]),
        ("encode", ["good0", "good1"]),  # the survivors batch together again
    ]
    assert jobs[1].seen == [("decode", 3)]
    assert jobs[0].seen == [("decode", 3), ("resize", 1), ("encode", 2)]


def test_a_failure_at_the_last_stage_keeps_the_others_outputs(make_batcher, stages):
    jobs = [Job("ok", ["a", "b"]), Job("broken", ["a", "b"], fail_at="b")]
    futures = submit_together(make_batcher(), jobs)
    assert futures[0].result(timeout=TIMEOUT_S) == "ok done"
    assert isinstance(futures[1].exception(timeout=TIMEOUT_S), ValueError)
    assert stages.sizes() == [("a", 2), ("b", 2), ("b", 1), ("b", 1)]


def test_requeued_groups_respect_the_batch_size(make_batcher, stages):
    jobs = [Job(f"job{i}", ["a", "b"]) for i in range(7)]
    futures = submit_together(make_batcher(max_batch_size=3), jobs)
    assert sorted(f.result(timeout=TIMEOUT_S) for f in futures) == sorted(f"job{i} done" for i in range(7))
    sizes = stages.sizes()
    assert all(1 <= n <= 3 for _, n in sizes)
    assert sum(n for key, n in sizes if key == "a") == 7
    assert sum(n for key, n in sizes if key == "b") == 7
    assert all(job.seen[0][0] == "a" and job.seen[1][0] == "b" for job in jobs)
