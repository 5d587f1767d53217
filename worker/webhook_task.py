"""The Celery task that delivers webhooks (queue ``darkroom.webhooks``): a thin adapter over
worker.webhooks, retried with capped exponential backoff up to ``webhook_max_attempts``.

A ``shared_task``, so importing this module before the worker starts (``darkroom worker`` does)
registers it on the worker's app; it builds its own stores and never touches torch.
"""

from __future__ import annotations

import logging

from celery import shared_task

from darkroom.broker import WEBHOOK_TASK
from darkroom.settings import get_settings
from storage.jobs import JobStore, redis_client
from storage.objects import build_object_store
from worker.webhooks import WebhookSender, webhook_backoff_s

log = logging.getLogger(__name__)
_sender: WebhookSender | None = None


def sender() -> WebhookSender:
    """The process's sender, built once."""
    global _sender
    if _sender is None:
        settings = get_settings()
        client = redis_client(settings.redis_url, settings.redis_socket_timeout_s)
        store = JobStore(client, settings.retention_s, settings.max_queue_length)
        _sender = WebhookSender(settings, store, build_object_store(settings))
    return _sender


@shared_task(name=WEBHOOK_TASK, bind=True)
def deliver_webhook_task(self, request_id: str) -> None:
    s = sender()
    attempt = self.request.retries + 1
    outcome = s.deliver(request_id, attempt)
    if outcome.retry and attempt < s.settings.webhook_max_attempts:
        delay = webhook_backoff_s(s.settings, attempt - 1)
        raise self.retry(countdown=delay, max_retries=s.settings.webhook_max_attempts - 1)
