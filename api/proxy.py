"""The @fal-ai/client proxy route: ``ANY /api/fal/proxy`` with the real fal URL in ``x-fal-target-url``.

In ``proxyUrl`` mode the JS client sends every request to the proxy and names the fal URL it meant in
a header. Darkroom maps that URL onto its own routes and serves the request in place (an ASGI
middleware rewriting the path, so method, body, headers — ``Authorization`` included — and streamed
responses pass through untouched):

* ``https://queue.fal.run/<path>`` → ``/<path>`` (queue routes; the status URLs in answers already
  point at Darkroom),
* ``https://fal.run/<path>`` → ``/run/<path>`` (synchronous runs),
* a URL on Darkroom's own public base URL → its path.

Any other target is refused with 400 ``proxy_target_refused``. The target's query string is used
when it has one, else the proxy request's own.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from darkroom.errors import ProxyTargetRefused

from .errors import error_response

PROXY_PATH = "/api/fal/proxy"
TARGET_HEADER = b"x-fal-target-url"
QUEUE_HOSTS = frozenset({"queue.fal.run", "queue.falrun.com"})
RUN_HOSTS = frozenset({"fal.run"})


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def map_target(target: str | None, own_base_url: str) -> tuple[str, str]:
    """(path, query) of the Darkroom route serving ``target``; ProxyTargetRefused otherwise."""
    if not target:
        raise ProxyTargetRefused("missing x-fal-target-url header: the fal URL to call")
    try:
        parts = urlsplit(target)
        origin = _origin(target)
    except ValueError as exc:
        raise ProxyTargetRefused(f"x-fal-target-url is not a URL: {target[:100]!r}") from exc
    if parts.scheme not in ("http", "https"):
        raise ProxyTargetRefused(f"x-fal-target-url must be an http(s) URL, got {target[:100]!r}")
    host = origin[1]
    base_path = urlsplit(own_base_url).path.rstrip("/")
    if host in QUEUE_HOSTS:
        path = parts.path
    elif host in RUN_HOSTS:
        path = "/run" + parts.path
    elif origin == _origin(own_base_url) and parts.path.startswith(base_path):
        path = parts.path[len(base_path):]
    else:
        raise ProxyTargetRefused(
            f"x-fal-target-url host {host!r} is not served here: use https://queue.fal.run/… or "
            "https://fal.run/… URLs"
        )
    return path or "/", parts.query


class FalProxyMiddleware:
    def __init__(self, app: ASGIApp, own_base_url: str) -> None:
        self.app = app
        self.own_base_url = own_base_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].rstrip("/") != PROXY_PATH:
            await self.app(scope, receive, send)
            return
        target = dict(scope["headers"]).get(TARGET_HEADER, b"").decode("latin-1") or None
        try:
            path, query = map_target(target, self.own_base_url)
        except ProxyTargetRefused as exc:
            await error_response(exc.code, exc.detail)(scope, receive, send)
            return
        query_string = query.encode() if query else scope.get("query_string", b"")
        inner = {**scope, "path": unquote(path), "raw_path": path.encode(), "query_string": query_string}
        await self.app(inner, receive, send)
