"""Per-step progress and cancellation for a batch running in a diffusers pipeline.

A :class:`StepMonitor` is told about every denoising step of a batch. At each one it checks every
member (cancelled? past its soft time limit?) and raises :class:`MembersStopped` naming the members
that must stop; the pipeline call unwinds at once, within one step. It also writes ``step k/N`` into
each member's logs, at most every ``interval_s`` and always at the last step.

Pipelines report steps differently, so there is one adapter each: ``callback_on_step_end``
(image-to-image), the older ``callback`` (the SD 4x upscaler) and, for pipelines with neither (LDM
super-resolution), a forward hook on the denoising UNet, which runs once per step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from darkroom.errors import DarkroomError, RequestCancelled, RequestTimeout, Superseded
from darkroom.job import JobRecord


class MembersStopped(Exception):
    """Some members of a running batch must stop: ``stopped`` maps member index -> its error."""

    def __init__(self, stopped: dict[int, DarkroomError | Superseded]) -> None:
        super().__init__(f"{len(stopped)} batch member(s) stopped")
        self.stopped = stopped


class StepMonitor:
    def __init__(
        self,
        jobs: Sequence[JobRecord],
        check: Callable[[JobRecord], None],
        log: Callable[[str, str], None],
        interval_s: float = 0.5,
    ) -> None:
        self.jobs = list(jobs)
        self.check_job = check  # raises RequestCancelled / RequestTimeout / Superseded: it must stop
        self.log = log  # (request_id, message)
        self.interval_s = interval_s
        self.total = 1
        self.done = 0
        self._last_log = float("-inf")

    def expect(self, total: int) -> None:
        """The number of steps this call will run (all tiles together)."""
        self.total = max(1, total)

    def check(self) -> None:
        """MembersStopped if any member was cancelled, ran out of time or was taken over."""
        stopped: dict[int, DarkroomError | Superseded] = {}
        for i, job in enumerate(self.jobs):
            try:
                self.check_job(job)
            except (RequestCancelled, RequestTimeout, Superseded) as exc:
                stopped[i] = exc
        if stopped:
            raise MembersStopped(stopped)

    def step(self) -> None:
        """One denoising step finished: stop members that must stop, then report progress."""
        self.done += 1
        self.check()
        now = time.monotonic()
        if self.done >= self.total or now - self._last_log >= self.interval_s:
            self._last_log = now
            for job in self.jobs:
                self.log(job.id, f"step {self.done}/{self.total}")

    # --- adapters --------------------------------------------------------------------------------
    def on_step_end(self, pipe, step: int, timestep, callback_kwargs: dict) -> dict:
        """For ``callback_on_step_end``."""
        self.step()
        return callback_kwargs

    def legacy_callback(self, step: int, timestep, latents) -> None:
        """For the older ``callback=`` (with ``callback_steps=1``)."""
        self.step()

    @contextmanager
    def unet_hook(self, unet) -> Iterator[None]:
        """For pipelines without callbacks: count the UNet's forward passes (one per step)."""
        handle = unet.register_forward_hook(lambda module, args, output: self.step())
        try:
            yield
        finally:
            handle.remove()
