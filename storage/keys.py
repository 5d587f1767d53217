"""Every Redis key and channel name Darkroom uses, in one place."""

from __future__ import annotations

PREFIX = "darkroom"

SEQUENCE = f"{PREFIX}:seq"  # submit order, for queue positions
JOBS_INDEX = f"{PREFIX}:jobs"  # zset id -> created_at, for operators


def job(request_id: str) -> str:
    return f"{PREFIX}:job:{request_id}"


def job_logs(request_id: str) -> str:
    return f"{PREFIX}:job:{request_id}:logs"


def job_events(request_id: str) -> str:
    """Pub/sub channel announcing every change of one job."""
    return f"{PREFIX}:events:{request_id}"


def queued(app_id: str, priority: str) -> str:
    """Sorted set (score = submit sequence) of the app's jobs still IN_QUEUE at ``priority``."""
    return f"{PREFIX}:queued:{app_id}:{priority}"


def heartbeat(worker_name: str) -> str:
    return f"{PREFIX}:heartbeat:{worker_name}"


HEARTBEAT_PATTERN = f"{PREFIX}:heartbeat:*"
