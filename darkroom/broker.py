"""The Celery application's configuration, shared by the API (which only sends) and the workers.

Torch-free: the job store builds messages with it; worker.app.create_worker registers the tasks.

Delivery settings and why:
- ``task_acks_late``: a job's message is acknowledged only after the job ended, so a worker that dies
  mid-job leaves it in Redis for another worker.
- ``task_reject_on_worker_lost``: when a pool child dies, the message is re-queued instead of acked.
- ``task_acks_on_failure_or_timeout = False``: the runner records every job failure itself; an
  exception that escapes the task means the job store was unreachable. Celery then rejects the
  message without requeue (it is gone); the job comes back from its record, through the workers'
  recovery sweep (storage/recovery.py), as does anything else a lost message or worker leaves.
- ``worker_prefetch_multiplier = 1``: each slot reserves one message, so idle workers get work and a
  dying worker strands as little as possible.
- ``visibility_timeout``: the broker's last resort: Redis redelivers an unacked message after this;
  it must be longer than the hard time limit (Settings enforces it) or a slow job would run twice.
  Workers sweep for such messages every ``broker_restore_interval_s``.
- ``worker_soft_shutdown_timeout``: on SIGTERM running jobs get ``shutdown_grace_s`` to finish;
  then the worker stops and its unacked messages go back to the queue.
- ``broker_transport``: kombu's Redis transport, with one client per channel instead of a new one
  per step (darkroom/redis_transport.py).
- Time limits: Celery's thread pool cannot enforce them, so the runner checks the soft limit at every
  step boundary and a watchdog ends the process past the hard limit (worker/health.py).
"""

from __future__ import annotations

import base64
import json
import os
import socket

import redis
from celery import Celery

from darkroom.settings import Settings

RUN_JOB_TASK = "darkroom.run_job"
EFFECTS_QUEUE = "darkroom"
PRIORITY = {"normal": 0, "low": 9}  # kombu's Redis transport: lower number is served first
QUEUE_SEP = ":"  # kombu's Redis transport keeps priority p > 0 of queue q in the list "q:p"
TRANSPORT = "darkroom.redis_transport:Transport"  # kombu's Redis transport, reusing its clients
WEBHOOK_TASK = "darkroom.deliver_webhook"
WEBHOOK_QUEUE = "darkroom.webhooks"  # its own queue, so deliveries never wait behind effects jobs


def make_celery(settings: Settings) -> Celery:
    app = Celery("darkroom", broker=settings.redis_url, backend=None)
    app.conf.update(
        broker_transport=TRANSPORT,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=False,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_default_queue=EFFECTS_QUEUE,
        task_routes={WEBHOOK_TASK: {"queue": WEBHOOK_QUEUE}},
        task_soft_time_limit=settings.task_soft_time_limit_s,
        task_time_limit=settings.task_hard_time_limit_s,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=settings.redis_socket_timeout_s,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_s,
            "priority_steps": [0, 9],
            "sep": QUEUE_SEP,
            "queue_order_strategy": "priority",
            "socket_timeout": settings.redis_socket_timeout_s,
            "socket_connect_timeout": settings.redis_socket_timeout_s,
            "unacked_restore_interval": settings.broker_restore_interval_s,
            "unacked_restore_throttle": 1,
        },
        worker_soft_shutdown_timeout=settings.shutdown_grace_s,
        worker_enable_soft_shutdown_on_idle=True,
        task_publish_retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.2},
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
    )
    return app


def queue_key(priority: str) -> str:
    """The Redis list that kombu's transport consumes for the effects queue at ``priority``."""
    step = PRIORITY[priority]
    return f"{EFFECTS_QUEUE}{QUEUE_SEP}{step}" if step else EFFECTS_QUEUE


_ORIGIN = f"gen{os.getpid()}@{socket.gethostname()}"
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def task_message(task: str, request_id: str, queue: str, priority: int = 0) -> str:
    """A message for ``task(request_id)`` exactly as Celery's ``send_task`` would push it onto
    ``queue`` (task protocol 2, kombu's Redis envelope). Darkroom pushes its own messages so that the
    job store can push them inside the Lua script that changes the record (a record and its message
    exist together or not at all, in one round trip). tests/integration/test_broker.py checks them
    against what Celery itself sends."""
    task_id, delivery_tag = _uuid4_pair()
    return render_task_message(task, request_id, queue, priority, task_id, delivery_tag)


def envelope(task: str, request_id: str, queue: str, priority: int, task_id: str, delivery_tag: str) -> dict:
    """The message as a dict: the body (the task's arguments, JSON then base64), its headers and the
    transport's properties."""
    args = [request_id]
    body = json.dumps([args, {}, _EMBED]).encode()
    headers = {
        "lang": "py", "task": task, "id": task_id, "shadow": None, "eta": None,
        "expires": None, "group": None, "group_index": None, "retries": 0, "timelimit": [None, None],
        "root_id": task_id, "parent_id": None, "argsrepr": repr(args), "kwargsrepr": "{}",
        "origin": _ORIGIN, "ignore_result": None, "replaced_task_nesting": 0,
        "stamped_headers": None, "stamps": {},
    }
    properties = {
        "correlation_id": task_id, "reply_to": None, "delivery_mode": 2,
        "delivery_info": {"exchange": "", "routing_key": queue},
        "priority": priority, "body_encoding": "base64", "delivery_tag": delivery_tag,
    }
    return {
        "body": base64.b64encode(body).decode(), "content-encoding": "utf-8",
        "content-type": "application/json", "headers": headers, "properties": properties,
    }


def render_task_message(task: str, request_id: str, queue: str, priority: int, task_id: str,
                        delivery_tag: str) -> str:
    """``json.dumps(envelope(...))``, written into the JSON text of the same envelope with marks in
    place of the four values that change per message (cached per task, queue, priority and origin; with
    :func:`_uuid4_pair`, a quarter of the time). ``task_id`` and ``delivery_tag`` must be uuid4 strings
    (nothing to escape)."""
    key = (task, queue, priority, _ORIGIN)
    parts = _TEMPLATES.get(key)
    if parts is None:
        parts = _TEMPLATES[key] = _template(task, queue, priority)
    body_head, body_tail, head, after_body, after_id, after_root, after_args, after_corr, tail = parts
    body = base64.b64encode(f"{body_head}{json.dumps(request_id)}{body_tail}".encode()).decode()
    return (f'{head}"{body}"{after_body}"{task_id}"{after_id}"{task_id}"{after_root}'
            f'{json.dumps(repr([request_id]))}{after_args}"{task_id}"{after_corr}"{delivery_tag}"{tail}')


# marks for the per-message values, in the order json.dumps writes them (control characters: the JSON of
# a mark, \u0000…, cannot occur in the rest of the envelope's text)
_MARKS = ("\0body\0", "\0id\0", "\0root_id\0", "\0argsrepr\0", "\0correlation_id\0", "\0delivery_tag\0")
_TEMPLATES: dict[tuple[str, str, int, str], tuple[str, ...]] = {}


def _template(task: str, queue: str, priority: int) -> tuple[str, ...]:
    """The texts around the marks: the body's two, then the envelope's seven."""
    body_head, body_tail = json.dumps([["\0"], {}, _EMBED]).split(json.dumps("\0"))
    marked = envelope(task, "", queue, priority, _MARKS[1], _MARKS[5])
    marked["body"] = _MARKS[0]
    marked["headers"]["root_id"] = _MARKS[2]
    marked["headers"]["argsrepr"] = _MARKS[3]
    marked["properties"]["correlation_id"] = _MARKS[4]
    text = json.dumps(marked)
    pieces = []
    for mark in _MARKS:
        before, text = text.split(json.dumps(mark))  # ValueError unless each mark occurs exactly once
        pieces.append(before)
    return (body_head, body_tail, *pieces, text)


def _uuid4_pair() -> tuple[str, str]:
    """Two ``str(uuid.uuid4())``: the same bytes from os.urandom with the same version and variant
    bits, formatted alike, without building UUID objects (a third of the time), from one read."""
    raw = bytearray(os.urandom(32))
    for at in (0, 16):
        raw[at + 6] = raw[at + 6] & 0x0F | 0x40  # version 4
        raw[at + 8] = raw[at + 8] & 0x3F | 0x80  # variant: RFC 4122
    h = raw.hex()
    return (f"{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}",
            f"{h[32:40]}-{h[40:44]}-{h[44:48]}-{h[48:52]}-{h[52:64]}")


def job_message(request_id: str, priority: str) -> str:
    """The ``darkroom.run_job`` message of a job, for :func:`queue_key` (``priority``)."""
    return task_message(RUN_JOB_TASK, request_id, EFFECTS_QUEUE, PRIORITY[priority])


def webhook_message(request_id: str) -> str:
    """The ``darkroom.deliver_webhook`` message of a job's webhook, for the list ``WEBHOOK_QUEUE``."""
    return task_message(WEBHOOK_TASK, request_id, WEBHOOK_QUEUE)


def push(client: redis.Redis, key: str, message: str, front: bool = False) -> None:
    """Put a message on a broker list: at the back (LPUSH, behind everything waiting) or, with
    ``front``, where the next consumer takes it (kombu's workers BRPOP from the right)."""
    if front:
        client.rpush(key, message)
    else:
        client.lpush(key, message)

