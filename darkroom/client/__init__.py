"""A Python client for a Darkroom server (or anything speaking fal's queue protocol), on httpx.

    from darkroom.client import Client

    with Client("http://127.0.0.1:8000", key="dk_…:…") as dr:
        url = dr.upload("photo.png")
        result = dr.subscribe("fal-ai/post-processing", {"image_url": url, "enable_grain": True},
                              on_update=lambda s: print(s.status, s.queue_position))
        open("out.png", "wb").write(dr.download(result.images[0].url))

``AsyncClient`` has the same methods as coroutines. ``server`` defaults to ``$DARKROOM_SERVER`` (else
http://127.0.0.1:8000) and ``key`` to ``$DARKROOM_API_KEY``; the key goes out as
``Authorization: Key <key>``, only to the server itself. Failures raise ``DarkroomClientError``
(its kinds are in ``darkroom.client.errors``); arguments are checked against the app's input fields
before they are sent (``darkroom.client.catalog``; ``strict=False`` turns that off).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from darkroom import __version__
from darkroom.client.catalog import Catalog, check, is_unknown_route, own_fields, unknown_app
from darkroom.client.errors import (
    DarkroomClientError,
    InvalidKey,
    ServerUnreachable,
    UnknownApp,
    UnknownParameter,
    WaitTimedOut,
    check_key,
)
from darkroom.client.transport import GuardedAsyncClient, GuardedClient, origin
from darkroom.client.types import (
    Image,
    LogAccumulator,
    Request,
    RequestLog,
    Result,
    SSEParser,
    Status,
    SubmitHandle,
    Upload,
    cancel_outcome,
    raise_for_answer,
    request_url,
    result_from,
    status_from,
)

__all__ = [
    "AsyncClient", "Client", "DarkroomClientError", "Image", "InvalidKey", "Request", "RequestLog",
    "Result", "ServerUnreachable", "Status", "SubmitHandle", "UnknownApp", "UnknownParameter", "Upload",
    "WaitTimedOut",
]

log = logging.getLogger(__name__)

DEFAULT_SERVER = "http://127.0.0.1:8000"
STREAM_READ_TIMEOUT_S = 60.0  # the server sends a keep-alive every 15 s by default
OnUpdate = Callable[[Status], Any]
Source = str | Path | bytes
RECIPES = "/darkroom/recipes"


def _recipe_url(server: str, name: str) -> str:
    return f"{server}{RECIPES}/{quote(name, safe='')}"


def _server(server: str | None) -> str:
    return (server or os.environ.get("DARKROOM_SERVER") or DEFAULT_SERVER).rstrip("/")


def _headers(key: str | None) -> dict[str, str]:
    """The client's headers; InvalidKey (before anything is sent) for a key that is not ASCII."""
    source = "the key argument" if key is not None else "$DARKROOM_API_KEY"
    key = check_key(key if key is not None else os.environ.get("DARKROOM_API_KEY", ""), source)
    headers = {"User-Agent": f"darkroom-client/{__version__}"}
    if key:
        headers["Authorization"] = f"Key {key}"
    return headers


def _file_part(source: Source, file_name: str | None) -> tuple[str, bytes]:
    if isinstance(source, bytes):
        return file_name or "upload", source
    path = Path(source)
    return file_name or path.name, path.read_bytes()


def _flag(value: bool) -> str:
    return "1" if value else "0"


class _Progress:
    """Turns statuses into on_update calls: only changes (status, position, log count), in order."""

    def __init__(self, on_update: OnUpdate | None) -> None:
        self.on_update = on_update
        self.last: tuple | None = None

    def changed(self, status: Status) -> bool:
        mark = (status.status, status.queue_position, len(status.logs))
        if mark == self.last:
            return False
        self.last = mark
        return True


class _Base:
    def __init__(self, server: str | None, key: str | None, strict: bool) -> None:
        self.server = _server(server)
        self.headers = _headers(key)
        self.strict = strict
        self.catalog: Catalog | None = None  # the server's apps, from /openapi.json (fetched when needed)
        self.catalog_url = f"{self.server}/openapi.json"
        self._catalog_asked = False

    def _needs_catalog(self, app: str) -> bool:
        """Checking a call to ``app`` needs the server's catalog: an app this client does not know."""
        return self.strict and not self._catalog_asked and own_fields(app) is None

    def _remember_catalog(self, resp: httpx.Response) -> None:
        self._catalog_asked = True
        self.catalog = Catalog.from_answer(resp)

    def _vet(self, app: str, arguments: dict[str, Any] | None) -> None:
        if self.strict:
            check(app, arguments, self.catalog, self.server)

    def input_fields(self, app: str) -> tuple[str, ...] | None:
        """The input fields of ``app``: Darkroom's own apps always, others once ``check`` fetched the
        server's catalog; None when unknown."""
        fields = own_fields(app)
        if fields is None and self.catalog is not None:
            fields = self.catalog.apps.get(app.strip("/"))
        return fields

    def _unknown_app(self, app: str) -> UnknownApp:
        return unknown_app(app, self.server, self.catalog, 404)

    def _submit_args(self, app: str, arguments: dict[str, Any], webhook_url: str | None) -> dict[str, Any]:
        return {
            "url": f"{self.server}/{app.strip('/')}",
            "json": arguments,
            "params": {"fal_webhook": webhook_url} if webhook_url else None,
        }

    def _download_request(self, http: httpx.Client | httpx.AsyncClient, url: str) -> httpx.Request:
        """A GET that carries the key only to the server itself (never to S3 or a CDN)."""
        request = http.build_request("GET", url)
        if origin(url) != origin(self.server):
            request.headers.pop("Authorization", None)
        return request


class Client(_Base):
    """Synchronous client; thread-safe, so one instance can serve a thread pool.

    ``strict`` (default): ``submit`` refuses input fields the app does not have (UnknownParameter,
    with the closest known name) and apps the server does not serve (UnknownApp), before sending.
    """

    def __init__(
        self, server: str | None = None, key: str | None = None, timeout_s: float = 30.0,
        transport: httpx.BaseTransport | None = None, strict: bool = True,
    ) -> None:
        super().__init__(server, key, strict)
        self.http = GuardedClient(
            self.server, headers=self.headers, timeout=timeout_s, transport=transport, follow_redirects=True
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def ping(self) -> None:
        """Return once the server answers ``GET /health`` (with any status); ServerUnreachable if not."""
        self.http.get(f"{self.server}/health")

    def check(self, app: str, arguments: dict[str, Any] | None = None) -> None:
        """Raise UnknownApp or UnknownParameter now if ``submit(app, arguments)`` would. Darkroom's own
        apps are checked offline; others against the server's /openapi.json (fetched once)."""
        if self._needs_catalog(app):
            self._remember_catalog(self.http.get(self.catalog_url))
        self._vet(app, arguments)

    def _routed(self, resp: httpx.Response, app: str) -> httpx.Response:
        """``resp``, unless no route served it: then the app is unknown (listing the server's apps)."""
        if is_unknown_route(resp):
            if not self._catalog_asked:
                self._remember_catalog(self.http.get(self.catalog_url))
            raise self._unknown_app(app)
        return resp

    def submit(
        self, app: str, arguments: dict[str, Any], webhook_url: str | None = None
    ) -> SubmitHandle:
        """Queue a request; the handle holds its id and URLs."""
        self.check(app, arguments)
        resp = self._routed(self.http.post(**self._submit_args(app, arguments, webhook_url)), app)
        raise_for_answer(resp)
        return SubmitHandle.model_validate({**resp.json(), "app": app})

    def status(self, app: str, request_id: str, logs: bool = False) -> Status:
        url = request_url(self.server, app, request_id, "/status")
        resp = self._routed(self.http.get(url, params={"logs": _flag(logs)}), app)
        raise_for_answer(resp)
        return status_from(resp.json())

    def result(self, app: str, request_id: str) -> Result:
        """The output of a finished request; a failed one raises with its error_type."""
        return result_from(self._routed(self.http.get(request_url(self.server, app, request_id)), app))

    def cancel(self, app: str, request_id: str) -> str:
        """CANCELLATION_REQUESTED, or ALREADY_COMPLETED; an unknown id raises (404)."""
        resp = self.http.put(request_url(self.server, app, request_id, "/cancel"))
        return cancel_outcome(self._routed(resp, app), app, request_id)

    # --- recipes (saved pipelines of the darkroom/pipeline app) -----------------------------------
    def recipes(self) -> list[dict[str, Any]]:
        """The built-in recipes and the caller's own (``GET /darkroom/recipes``)."""
        resp = self.http.get(f"{self.server}{RECIPES}")
        raise_for_answer(resp)
        return resp.json()["recipes"]

    def recipe(self, name: str, version: int | None = None) -> dict[str, Any]:
        """One recipe: its latest version, or ``version``."""
        params = {"version": version} if version else None
        resp = self.http.get(_recipe_url(self.server, name), params=params)
        raise_for_answer(resp)
        return resp.json()

    def save_recipe(self, name: str, steps: list[dict[str, Any]], output: dict[str, Any] | None = None,
                    description: str = "") -> dict[str, Any]:
        """Save ``steps`` (and an output block) as a new version of recipe ``name``; returns it."""
        body: dict[str, Any] = {"description": description, "steps": steps}
        if output is not None:
            body["output"] = output
        resp = self.http.put(_recipe_url(self.server, name), json=body)
        raise_for_answer(resp)
        return resp.json()

    def delete_recipe(self, name: str) -> None:
        """Delete a recipe and all its versions (built-ins cannot be deleted)."""
        raise_for_answer(self.http.delete(_recipe_url(self.server, name)))

    def upload_file(self, source: Source, file_name: str | None = None) -> Upload:
        """Store an image (a path or bytes) on the server: ``POST /storage/upload``."""
        name, data = _file_part(source, file_name)
        resp = self.http.post(f"{self.server}/storage/upload", files={"file": (name, data)})
        raise_for_answer(resp)
        return Upload.model_validate(resp.json())

    def upload(self, source: Source, file_name: str | None = None) -> str:
        """Store an image and return its URL, ready for ``image_url``."""
        return self.upload_file(source, file_name).url

    def download(self, url: str) -> bytes:
        resp = self.http.send(self._download_request(self.http, url))
        raise_for_answer(resp)
        return resp.content

    def stream_status(self, app: str, request_id: str, logs: bool = True) -> Iterator[Status | None]:
        """The status stream (SSE) as Status objects (logs accumulated); None for each keep-alive."""
        timeout = httpx.Timeout(self.http.timeout.connect, read=STREAM_READ_TIMEOUT_S)
        url = request_url(self.server, app, request_id, "/status/stream")
        with self.http.stream("GET", url, params={"logs": _flag(logs)}, timeout=timeout) as resp:
            if not resp.is_success:
                resp.read()
                raise_for_answer(self._routed(resp, app))
            parser, logs_so_far = SSEParser(), LogAccumulator()
            for line in resp.iter_lines():
                event = parser.feed(line)
                yield logs_so_far.merge(event) if event else None

    def wait(
        self, app: str, request_id: str, on_update: OnUpdate | None = None, with_logs: bool = True,
        timeout_s: float | None = None, poll_interval_s: float = 0.25,
    ) -> Status:
        """Follow a request until COMPLETED (the SSE stream, else polling); returns its last status."""
        progress = _Progress(on_update)
        deadline = time.monotonic() + timeout_s if timeout_s else None
        try:
            for status in self.stream_status(app, request_id, with_logs):
                _check_deadline(deadline, request_id)
                if status is not None:
                    _notify(progress, status)
                    if status.done:
                        return status
        except WaitTimedOut:
            raise
        except (httpx.HTTPError, DarkroomClientError, ValueError) as exc:
            log.debug("status stream of %s unavailable (%s); polling", request_id, exc)
        while True:
            status = self.status(app, request_id, logs=with_logs)
            _notify(progress, status)
            if status.done:
                return status
            _check_deadline(deadline, request_id)
            time.sleep(poll_interval_s)

    def subscribe(
        self, app: str, arguments: dict[str, Any], on_update: OnUpdate | None = None,
        with_logs: bool = True, webhook_url: str | None = None, timeout_s: float | None = None,
    ) -> Result:
        """Submit, follow the request (``on_update`` gets IN_QUEUE, IN_PROGRESS…, COMPLETED), return
        its result. A failed request raises DarkroomClientError with its error_type."""
        handle = self.submit(app, arguments, webhook_url)
        progress = _Progress(on_update)
        _notify(progress, _queued(handle))
        self.wait(app, handle.request_id, progress.on_update and _skip_repeats(progress),
                  with_logs, timeout_s)
        return self.result(app, handle.request_id)


class AsyncClient(_Base):
    """The same client for asyncio; ``on_update`` may be a plain function or a coroutine function."""

    def __init__(
        self, server: str | None = None, key: str | None = None, timeout_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None, strict: bool = True,
    ) -> None:
        super().__init__(server, key, strict)
        self.http = GuardedAsyncClient(
            self.server, headers=self.headers, timeout=timeout_s, transport=transport, follow_redirects=True
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def ping(self) -> None:
        await self.http.get(f"{self.server}/health")

    async def check(self, app: str, arguments: dict[str, Any] | None = None) -> None:
        if self._needs_catalog(app):
            self._remember_catalog(await self.http.get(self.catalog_url))
        self._vet(app, arguments)

    async def _routed(self, resp: httpx.Response, app: str) -> httpx.Response:
        if is_unknown_route(resp):
            if not self._catalog_asked:
                self._remember_catalog(await self.http.get(self.catalog_url))
            raise self._unknown_app(app)
        return resp

    async def submit(
        self, app: str, arguments: dict[str, Any], webhook_url: str | None = None
    ) -> SubmitHandle:
        await self.check(app, arguments)
        resp = await self._routed(await self.http.post(**self._submit_args(app, arguments, webhook_url)), app)
        raise_for_answer(resp)
        return SubmitHandle.model_validate({**resp.json(), "app": app})

    async def status(self, app: str, request_id: str, logs: bool = False) -> Status:
        url = request_url(self.server, app, request_id, "/status")
        resp = await self._routed(await self.http.get(url, params={"logs": _flag(logs)}), app)
        raise_for_answer(resp)
        return status_from(resp.json())

    async def result(self, app: str, request_id: str) -> Result:
        resp = await self.http.get(request_url(self.server, app, request_id))
        return result_from(await self._routed(resp, app))

    async def cancel(self, app: str, request_id: str) -> str:
        resp = await self.http.put(request_url(self.server, app, request_id, "/cancel"))
        return cancel_outcome(await self._routed(resp, app), app, request_id)

    # --- recipes: as Client's ------------------------------------------------------------------------
    async def recipes(self) -> list[dict[str, Any]]:
        resp = await self.http.get(f"{self.server}{RECIPES}")
        raise_for_answer(resp)
        return resp.json()["recipes"]

    async def recipe(self, name: str, version: int | None = None) -> dict[str, Any]:
        params = {"version": version} if version else None
        resp = await self.http.get(_recipe_url(self.server, name), params=params)
        raise_for_answer(resp)
        return resp.json()

    async def save_recipe(self, name: str, steps: list[dict[str, Any]], output: dict[str, Any] | None = None,
                          description: str = "") -> dict[str, Any]:
        body: dict[str, Any] = {"description": description, "steps": steps}
        if output is not None:
            body["output"] = output
        resp = await self.http.put(_recipe_url(self.server, name), json=body)
        raise_for_answer(resp)
        return resp.json()

    async def delete_recipe(self, name: str) -> None:
        raise_for_answer(await self.http.delete(_recipe_url(self.server, name)))

    async def upload_file(self, source: Source, file_name: str | None = None) -> Upload:
        name, data = _file_part(source, file_name)
        resp = await self.http.post(f"{self.server}/storage/upload", files={"file": (name, data)})
        raise_for_answer(resp)
        return Upload.model_validate(resp.json())

    async def upload(self, source: Source, file_name: str | None = None) -> str:
        return (await self.upload_file(source, file_name)).url

    async def download(self, url: str) -> bytes:
        resp = await self.http.send(self._download_request(self.http, url))
        raise_for_answer(resp)
        return resp.content

    async def stream_status(
        self, app: str, request_id: str, logs: bool = True
    ) -> AsyncIterator[Status | None]:
        timeout = httpx.Timeout(self.http.timeout.connect, read=STREAM_READ_TIMEOUT_S)
        url = request_url(self.server, app, request_id, "/status/stream")
        async with self.http.stream("GET", url, params={"logs": _flag(logs)}, timeout=timeout) as resp:
            if not resp.is_success:
                await resp.aread()
                raise_for_answer(await self._routed(resp, app))
            parser, logs_so_far = SSEParser(), LogAccumulator()
            async for line in resp.aiter_lines():
                event = parser.feed(line)
                yield logs_so_far.merge(event) if event else None

    async def wait(
        self, app: str, request_id: str, on_update: OnUpdate | None = None, with_logs: bool = True,
        timeout_s: float | None = None, poll_interval_s: float = 0.25,
    ) -> Status:
        progress = _Progress(on_update)
        deadline = time.monotonic() + timeout_s if timeout_s else None
        try:
            async for status in self.stream_status(app, request_id, with_logs):
                _check_deadline(deadline, request_id)
                if status is not None:
                    await _anotify(progress, status)
                    if status.done:
                        return status
        except WaitTimedOut:
            raise
        except (httpx.HTTPError, DarkroomClientError, ValueError) as exc:
            log.debug("status stream of %s unavailable (%s); polling", request_id, exc)
        while True:
            status = await self.status(app, request_id, logs=with_logs)
            await _anotify(progress, status)
            if status.done:
                return status
            _check_deadline(deadline, request_id)
            await asyncio.sleep(poll_interval_s)

    async def subscribe(
        self, app: str, arguments: dict[str, Any], on_update: OnUpdate | None = None,
        with_logs: bool = True, webhook_url: str | None = None, timeout_s: float | None = None,
    ) -> Result:
        handle = await self.submit(app, arguments, webhook_url)
        progress = _Progress(on_update)
        await _anotify(progress, _queued(handle))
        await self.wait(app, handle.request_id, progress.on_update and _skip_repeats(progress),
                        with_logs, timeout_s)
        return await self.result(app, handle.request_id)


def _queued(handle: SubmitHandle) -> Status:
    return Status(
        status=handle.status, request_id=handle.request_id, queue_position=handle.queue_position,
        response_url=handle.response_url, status_url=handle.status_url, cancel_url=handle.cancel_url,
    )


def _skip_repeats(outer: _Progress) -> OnUpdate:
    """An on_update for ``wait`` that drops what ``outer`` already reported (the submit's IN_QUEUE)."""

    def forward(status: Status) -> Any:
        if outer.changed(status):
            return outer.on_update(status)  # type: ignore[misc]
        return None

    return forward


def _notify(progress: _Progress, status: Status) -> None:
    if progress.on_update and progress.changed(status):
        progress.on_update(status)


async def _anotify(progress: _Progress, status: Status) -> None:
    if progress.on_update and progress.changed(status):
        outcome = progress.on_update(status)
        if inspect.isawaitable(outcome):
            await outcome


def _check_deadline(deadline: float | None, request_id: str) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise WaitTimedOut(408, f"request {request_id} did not finish in time", "client_timeout", request_id)
