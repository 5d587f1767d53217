"""What every object store is: the interface, the key layout (the only place object keys are
spelled) and the registry of backends by name."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from darkroom.settings import Settings

# --- the object key layout (the only place it is spelled) ---


def input_key(request_id: str, field: str) -> str:
    """Where an inline (data URI) input of a request is kept."""
    return f"inputs/{request_id}/{field}"


def output_key(request_id: str, file_name: str) -> str:
    """Where a request's output file is written; deterministic, so a re-run writes the same key."""
    return f"{request_id}/{file_name}"


def request_prefixes(request_id: str) -> list[str]:
    """Every prefix holding objects of one request (its inputs, its outputs)."""
    return [f"inputs/{request_id}/", f"{request_id}/"]


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    modified_at: float  # unix seconds
    size: int


class ObjectStore(ABC):
    @abstractmethod
    def put(self, key: str, data: bytes, content_type: str) -> None: ...

    @abstractmethod
    def get(self, key: str) -> bytes: ...

    @abstractmethod
    def url(self, key: str) -> str:
        """A URL a client can download the object from (presigned or public)."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int: ...

    @abstractmethod
    def check(self) -> None:
        """Raise StorageUnavailable when the store cannot be reached."""

    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (for `darkroom jobs purge`)."""
        raise NotImplementedError(f"{type(self).__name__} cannot list its objects")


def check_key(key: str) -> str:
    if not key or key.startswith("/") or ".." in key.split("/"):
        raise ValueError(f"invalid object key {key!r}")
    return key


BACKENDS: dict[str, Callable[[Settings], ObjectStore]] = {}


def register_backend(name: str):
    """Make a backend buildable as ``storage_backend = name`` (decorates its ``from_settings``)."""
    def add(factory: Callable[[Settings], ObjectStore]) -> Callable[[Settings], ObjectStore]:
        BACKENDS[name] = factory
        return factory
    return add
