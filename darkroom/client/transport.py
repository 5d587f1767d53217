"""The one place where httpx's transport failures become ``ServerUnreachable``.

``Client`` and ``AsyncClient`` talk through these subclasses of httpx's clients: every request goes
through ``send`` (``get``, ``post``, ``stream``… all do), so a refused connection, a timeout or a
connection dropped in the middle of a status stream surfaces as a ``DarkroomClientError`` naming the
URL, with a hint when the URL is the Darkroom server itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx

from darkroom.client.errors import ServerUnreachable


def origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.lower()


def unreachable(server: str, request: httpx.Request, cause: httpx.TransportError) -> ServerUnreachable:
    own = origin(str(request.url)) == origin(server)
    where = server if own else f"{request.url.scheme}://{request.url.netloc.decode()}"
    return ServerUnreachable(where, f"{request.method} {request.url.path}", cause, own)


class _GuardedStream(httpx.SyncByteStream):
    def __init__(self, inner: Any, server: str, request: httpx.Request) -> None:
        self.inner, self.server, self.request = inner, server, request

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self.inner
        except httpx.TransportError as exc:
            raise unreachable(self.server, self.request, exc) from exc

    def close(self) -> None:
        self.inner.close()


class _AsyncGuardedStream(httpx.AsyncByteStream):
    def __init__(self, inner: Any, server: str, request: httpx.Request) -> None:
        self.inner, self.server, self.request = inner, server, request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.inner:
                yield chunk
        except httpx.TransportError as exc:
            raise unreachable(self.server, self.request, exc) from exc

    async def aclose(self) -> None:
        await self.inner.aclose()


class GuardedClient(httpx.Client):
    """httpx.Client whose transport failures raise ServerUnreachable (``server``: the Darkroom URL)."""

    def __init__(self, server: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.darkroom_server = server

    def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        try:
            response = super().send(request, **kwargs)
        except httpx.TransportError as exc:
            raise unreachable(self.darkroom_server, request, exc) from exc
        if kwargs.get("stream"):
            response.stream = _GuardedStream(response.stream, self.darkroom_server, request)
        return response


class GuardedAsyncClient(httpx.AsyncClient):
    """httpx.AsyncClient whose transport failures raise ServerUnreachable."""

    def __init__(self, server: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.darkroom_server = server

    async def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        try:
            response = await super().send(request, **kwargs)
        except httpx.TransportError as exc:
            raise unreachable(self.darkroom_server, request, exc) from exc
        if kwargs.get("stream"):
            response.stream = _AsyncGuardedStream(response.stream, self.darkroom_server, request)
        return response
