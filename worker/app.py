"""Building a worker: :func:`create_worker` turns settings into a Celery app with Darkroom's tasks
registered, and a :class:`WorkerProcess` that builds what the tasks need on first use.

Nothing is built at import, so a test can build a worker in-process with its own settings; the
`darkroom worker` command builds one from the environment and runs it.
"""

from __future__ import annotations

import logging
import threading
import warnings

from celery import Celery
from celery.exceptions import SecurityWarning
from celery.signals import celeryd_init, task_postrun, task_prerun, worker_ready, worker_shutdown
from kombu.utils.url import maybe_sanitize_url

from darkroom.broker import RUN_JOB_TASK, WEBHOOK_TASK, make_celery
from darkroom.logs import TASK_PREFIX, bind_request_id
from darkroom.settings import Settings
from storage.jobs import JobStore
from storage.objects import build_object_store
from worker import tasks
from worker.context import WorkerContext, build_context
from worker.webhooks import WebhookSender

log = logging.getLogger(__name__)


class WorkerProcess:
    """What one worker process builds from its settings, once, on first use: the job context
    (stores, device, batcher; torch) and the webhook sender (torch-free)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._context: WorkerContext | None = None
        self._sender: WebhookSender | None = None

    def context(self) -> WorkerContext:
        with self._lock:  # the first messages arrive on several slots at once
            if self._context is None:
                self._context = build_context(self.settings)
            return self._context

    def webhook_sender(self) -> WebhookSender:
        with self._lock:
            if self._sender is None:
                store = JobStore.from_settings(self.settings)
                self._sender = WebhookSender(self.settings, store, build_object_store(self.settings))
            return self._sender

    def stop(self) -> None:
        if self._context is not None:
            self._context.stop()


def create_worker(settings: Settings) -> Celery:
    """A Celery app for ``settings`` with ``darkroom.run_job`` and ``darkroom.deliver_webhook``
    registered; when its worker is ready it starts the heartbeat, watchdog and recovery sweep."""
    app = make_celery(settings)
    process = app.darkroom_process = WorkerProcess(settings)

    @app.task(name=RUN_JOB_TASK, bind=True)
    def run_job(self, request_id: str) -> None:
        tasks.run_job_task(self, process, request_id)

    @app.task(name=WEBHOOK_TASK)
    def deliver_webhook(request_id: str) -> None:
        tasks.deliver_webhook_task(process, request_id)

    def on_ready(sender=None, **_: object) -> None:
        if getattr(sender, "app", None) is app:
            if not settings.worker_banner:
                log_started(sender)
            process.context().start_background()

    def on_shutdown(sender=None, **_: object) -> None:
        process.stop()

    worker_ready.connect(on_ready, weak=False)
    worker_shutdown.connect(on_shutdown, weak=False)
    quiet_start(app, settings)
    return app


def quiet_start(app: Celery, settings: Settings) -> None:
    """Leave out Celery's start-up banner (``worker_banner``) and its warning about running as root
    (``worker_root_warning``) as ``settings`` say; `darkroom up` turns both off. Both happen while
    Celery builds the worker, right after ``celeryd_init``: its handler sets the worker's own
    ``quiet`` flag (what ``celery --quiet`` sets) and ignores that one warning."""

    def on_init(instance=None, **_: object) -> None:
        if getattr(instance, "app", None) is not app:
            return
        if not settings.worker_banner:
            instance.quiet = True
        if not settings.worker_root_warning:
            warnings.filterwarnings(
                "ignore", message=r"You're running the worker with superuser privileges",
                category=SecurityWarning,
            )

    celeryd_init.connect(on_init, weak=False)


def log_started(consumer) -> None:
    """The banner's gist in one log line: name, job slots, queues and broker (password masked)."""
    try:
        queues = ", ".join(sorted(consumer.app.amqp.queues.consume_from or {}))
        log.info("worker %s started: %s job slots, queues %s, broker %s", consumer.hostname,
                 consumer.controller.concurrency, queues, maybe_sanitize_url(consumer.app.conf.broker_url))
    except Exception:  # noqa: BLE001 - a log line never stops a worker from starting
        log.debug("could not describe the worker", exc_info=True)


@task_prerun.connect
def _tag_logs(task=None, args=None, **_: object) -> None:
    """Every line logged while a Darkroom task runs, Celery's own included, carries its request id."""
    name = getattr(task, "name", "") or ""
    bind_request_id(str(args[0]) if args and name.startswith(TASK_PREFIX) else None)


@task_postrun.connect
def _untag_logs(**_: object) -> None:
    bind_request_id(None)
