"""The Celery task that delivers webhooks (queue ``darkroom.webhooks``): a thin adapter over
worker.webhooks. One message, one attempt: retries are sent by the recovery sweep when due
(storage/recovery.py), so no delivery waits in a worker's memory.

A ``shared_task``, so importing this module before the worker starts (``darkroom worker`` does)
registers it on the worker's app; it builds its own stores and never touches torch.
"""

from __future__ import annotations

import logging

from celery import shared_task

from darkroom.broker import WEBHOOK_TASK
from darkroom.settings import get_settings
from storage.jobs import JobStore
from storage.objects import build_object_store
from worker.webhooks import WebhookSender

log = logging.getLogger(__name__)
_sender: WebhookSender | None = None


def sender() -> WebhookSender:
    """The process's sender, built once."""
    global _sender
    if _sender is None:
        settings = get_settings()
        _sender = WebhookSender(settings, JobStore.from_settings(settings), build_object_store(settings))
    return _sender


@shared_task(name=WEBHOOK_TASK)
def deliver_webhook_task(request_id: str) -> None:
    sender().deliver(request_id)
