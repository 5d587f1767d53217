"""What a worker process builds once: settings, stores, device, limits, the batcher and health threads."""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field

import torch

from darkroom.acceptance import ImageLimits
from darkroom.apps import APPS
from darkroom.errors import RequestCancelled, RequestTimeout, Superseded
from darkroom.models import use_models_config
from darkroom.plugins import load_plugins
from darkroom.settings import Settings
from storage.jobs import JobStore
from storage.objects import ObjectStore, build_object_store
from storage.recovery import Recovery
from worker.batcher import Batcher
from worker.health import Heartbeat, JobTracker, RecoverySweeper, Watchdog, worker_id
from worker.memory import tune_malloc
from worker.metrics import serve_metrics

log = logging.getLogger(__name__)


@dataclass
class WorkerContext:
    settings: Settings
    store: JobStore
    objects: ObjectStore
    device: torch.device
    limits: ImageLimits
    worker_id: str = field(default_factory=worker_id)
    tracker: JobTracker = field(default_factory=JobTracker)
    batcher: Batcher | None = None
    threads: list = field(default_factory=list)

    def step_stop(self, request_id: str) -> Exception | None:
        """Why a job should not pass its next step boundary: another attempt took it over
        (Superseded), it was cancelled, or it ran past its soft time limit; None to go on."""
        return self._stop_for(request_id, *self.store.step_check(request_id))

    def step_stops(self, request_ids: list[str]) -> list[Exception | None]:
        """:meth:`step_stop` for the jobs of a batch, asked in one round trip."""
        checks = self.store.step_checks(request_ids)
        return [self._stop_for(rid, *check) for rid, check in zip(request_ids, checks, strict=True)]

    def _stop_for(self, request_id: str, cancelled: bool, latest: str) -> Exception | None:
        if latest and latest != self.worker_id:
            return Superseded(f"another attempt of job {request_id} started on {latest}")
        if cancelled:
            return RequestCancelled("The request was cancelled")
        limit = self.settings.task_soft_time_limit_s
        if self.tracker.elapsed_s(request_id) > limit:
            return RequestTimeout(f"The job ran longer than its {limit:g}s time limit")
        return None

    def start_background(self) -> None:
        """Heartbeat, hard-limit watchdog and recovery sweep (the batcher starts with the context)."""
        s = self.settings
        self.threads = [
            Heartbeat(self.store, self.worker_id, self.tracker, s.heartbeat_interval_s, s.heartbeat_ttl_s),
            Watchdog(self.tracker, s.task_hard_time_limit_s),
            RecoverySweeper(
                Recovery(self.store.r, s.recovery_grace_s), lambda: list(APPS), s.recovery_interval_s
            ),
        ]
        for t in self.threads:
            t.start()
        serve_metrics(s, self.device)  # /metrics on DARKROOM_METRICS_PORT (0: off)

    def stop(self) -> None:
        for t in self.threads:
            t.stop()
        if self.batcher is not None:
            self.batcher.stop()


def pick_device(name: str) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def start_fused_effects(settings: Settings, device: torch.device) -> None:
    """On the CPU, let point-wise effects run compiled (worker.effects.fused) and queue the compiles of a
    sample request's kernels; wait for them up to ``worker_fuse_wait_s``."""
    from worker.effects import fused, warmup

    if not settings.worker_fuse_effects or device.type != "cpu":
        return
    t0 = time.perf_counter()
    fused.enable(wait_s=settings.worker_fuse_wait_s)
    warmup.prime(device)  # with a wait, each kernel's first call waits for its compile
    if settings.worker_fuse_wait_s > 0:
        done = fused.wait(settings.worker_fuse_wait_s)
        state = "ready" if done else "still compiling"
        log.info("fused kernels %s after %.1f s", state, time.perf_counter() - t0)


def build_context(settings: Settings) -> WorkerContext:
    from worker.runner import check_steps, run_batch

    if settings.worker_tune_malloc:
        tune_malloc()
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    if settings.worker_switch_interval_ms:
        sys.setswitchinterval(settings.worker_switch_interval_ms / 1000)
    load_plugins(settings)
    use_models_config(settings)
    device = pick_device(settings.device)
    start_fused_effects(settings, device)
    ctx = WorkerContext(
        settings,
        JobStore.from_settings(settings),
        build_object_store(settings),
        device,
        ImageLimits.from_settings(settings),
    )
    ctx.batcher = Batcher(
        lambda batch: run_batch(ctx, batch), settings.max_batch_size, settings.max_wait_ms,
        request_id=lambda prepared: prepared.job.id,  # a batch's log lines carry its jobs' ids
        admit=lambda batch: check_steps(ctx, [prepared.job for prepared in batch]),
    )
    log.info("worker %s ready: device=%s threads=%d", ctx.worker_id, device, torch.get_num_threads())
    return ctx
