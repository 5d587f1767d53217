"""What a worker process builds once: settings, stores, device and input limits."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from darkroom.settings import Settings
from storage.jobs import JobStore, redis_client
from storage.objects import ObjectStore, build_object_store
from worker.imaging import ImageLimits

log = logging.getLogger(__name__)


@dataclass
class WorkerContext:
    settings: Settings
    store: JobStore
    objects: ObjectStore
    device: torch.device
    limits: ImageLimits


def pick_device(name: str) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def build_context(settings: Settings) -> WorkerContext:
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    client = redis_client(settings.redis_url, settings.redis_socket_timeout_s)
    device = pick_device(settings.device)
    log.info("worker context ready: device=%s threads=%d", device, torch.get_num_threads())
    return WorkerContext(
        settings,
        JobStore(client, settings.retention_s, settings.max_queue_length),
        build_object_store(settings),
        device,
        ImageLimits.from_settings(settings),
    )
