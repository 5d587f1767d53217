"""One error hierarchy with stable codes. HTTP statuses are assigned only at the API edge."""

from __future__ import annotations

from typing import ClassVar


class DarkroomError(Exception):
    """Base class: ``code`` is the stable ``error_type``; ``retryable`` tells workers whether to retry."""

    code: ClassVar[str] = "internal_error"
    retryable: ClassVar[bool] = False

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def to_dict(self) -> dict[str, str]:
        return {"detail": self.detail, "error_type": self.code}


class InvalidInput(DarkroomError):
    code = "invalid_input"


class OutputTooLarge(InvalidInput):
    """The output cannot be encoded within the request's ``max_bytes``."""

    code = "output_too_large"


class ReadOnly(DarkroomError):
    """A change to something Darkroom keeps fixed (e.g. a built-in recipe)."""

    code = "read_only"


class ImageTooLarge(InvalidInput):
    code = "image_too_large"


class UnsupportedImage(InvalidInput):
    code = "unsupported_image"


class FetchRefused(InvalidInput):
    code = "fetch_refused"


class FetchFailed(InvalidInput):
    """The input URL answered with a 4xx or is unreachable for good."""

    code = "fetch_failed"


class TransientError(DarkroomError):
    retryable = True
    code = "transient_error"


class FetchUnavailable(TransientError):
    """Input fetch timed out or got a 5xx: worth retrying."""

    code = "fetch_unavailable"


class StorageUnavailable(TransientError):
    code = "storage_unavailable"


class DeviceOutOfMemory(TransientError):
    code = "device_out_of_memory"


class NotFound(DarkroomError):
    code = "not_found"


class RequestCancelled(DarkroomError):
    code = "request_cancelled"


class RequestTimeout(DarkroomError):
    code = "request_timeout"


class ModelUnavailable(DarkroomError):
    code = "model_unavailable"


class WorkerCrash(DarkroomError):
    code = "worker_crash"


class InternalError(DarkroomError):
    code = "internal_error"


class QueueFull(DarkroomError):
    code = "queue_full"
    retryable = True


class ServiceUnavailable(DarkroomError):
    code = "service_unavailable"
    retryable = True


class Unauthorized(DarkroomError):
    """No API key, an unknown one, or a revoked one, where keys are required."""

    code = "unauthorized"


class RateLimited(DarkroomError):
    """The caller's key is over its request rate; ``retry_after_s`` says when a request fits again."""

    code = "rate_limited"
    retryable = True

    def __init__(self, detail: str, retry_after_s: float = 1.0) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class RequestNotFinished(DarkroomError):
    """An operation that needs a finished request (DELETE) met a queued or running one."""

    code = "request_not_finished"


class IdempotencyKeyInUse(DarkroomError):
    """A request with the same Idempotency-Key is being accepted right now: retry shortly."""

    code = "idempotency_key_in_use"
    retryable = True


class ProxyTargetRefused(DarkroomError):
    """The client proxy route was asked for a URL that is not a fal URL Darkroom serves."""

    code = "proxy_target_refused"


class Superseded(Exception):
    """Not a request error (never reaches a client): a worker's attempt at a job was taken over by
    another worker, because its lease lapsed while this process was stopped or cut off from Redis.
    The attempt stops quietly and records nothing."""
