"""Outbound HTTP that obeys the address rules of ``darkroom.netguard`` (input URLs and webhooks).

* Every hop is checked: redirects are followed here, by hand (at most ``MAX_REDIRECTS``), and each
  ``Location`` goes through :func:`darkroom.netguard.check_url` before anything connects to it.
* Connections are **pinned**: the request goes to the address that was checked (the URL's host is
  replaced by it), while the ``Host`` header and the TLS SNI / certificate check keep the original
  name (httpx's ``sni_hostname`` extension). The name is never resolved a second time, so DNS
  rebinding between check and connect has nothing to steer.
* No connection is reused (``Connection: close``, no keep-alive pool): the pool is keyed by address,
  and a TLS connection verified for one name must not carry a request for another.
* Proxies from the environment are ignored (``trust_env=False``): a proxy would resolve the name
  itself and defeat the check.
* Timeouts: connect (``fetch_connect_timeout_s``) and a total deadline (``fetch_timeout_s``) for the
  whole fetch, redirects and body included; bodies are streamed and abandoned past the size cap.
  Only ``identity`` encoding is accepted, so a compressed "bomb" cannot inflate past the cap in one
  chunk.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import httpx

from darkroom import __version__
from darkroom.errors import FetchFailed, FetchUnavailable, ImageTooLarge
from darkroom.netguard import Target, UrlPolicy, check_url

if TYPE_CHECKING:
    from darkroom.settings import Settings

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
REDIRECT_CODES = (301, 302, 303, 307, 308)
USER_AGENT = f"darkroom/{__version__}"


def guarded_client(settings: Settings, **kwargs: Any) -> httpx.Client:
    """An httpx client for :func:`open_url`: no automatic redirects, no environment proxies."""
    timeout = httpx.Timeout(settings.fetch_timeout_s, connect=settings.fetch_connect_timeout_s)
    limits = httpx.Limits(max_keepalive_connections=0)  # see pinned_request
    return httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False, limits=limits, **kwargs)


def pinned_request(
    client: httpx.Client | httpx.AsyncClient, method: str, target: Target, address: str, **kwargs: Any
) -> httpx.Request:
    """A request for ``target.url`` that connects to ``address`` and still names the original host."""
    headers = httpx.Headers(kwargs.pop("headers", None))
    headers["Host"] = target.url.netloc.decode("ascii")
    headers["Connection"] = "close"  # pooled connections are keyed by address: never reuse one for
    # another name (its TLS session was verified for the first name)
    extensions = dict(kwargs.pop("extensions", None) or {})
    if target.url.scheme == "https" and address != target.host:
        extensions["sni_hostname"] = target.host
    url = target.url.copy_with(host=address, fragment=None)
    return client.build_request(method, url, headers=headers, extensions=extensions, **kwargs)


def redirect_location(response: httpx.Response, url: str) -> str | None:
    """The absolute URL a redirect points to, or None when ``response`` is not a redirect."""
    location = response.headers.get("location")
    if response.status_code not in REDIRECT_CODES or not location:
        return None
    return str(httpx.URL(url).join(location))


def _send(client: httpx.Client, method: str, target: Target, what: str, **kwargs: Any) -> httpx.Response:
    """Send to the checked addresses in order until one accepts the connection."""
    last: Exception | None = None
    for address in target.addresses:
        request = pinned_request(client, method, target, address, **kwargs)
        try:
            return client.send(request, stream=True)
        except httpx.ConnectError as exc:
            if _certificate_error(exc):
                raise FetchFailed(f"{what}: {target.label} has an invalid TLS certificate ({exc})") from exc
            log.debug("%s: %s at %s refused the connection: %s", what, target.label, address, exc)
            last = exc
    raise FetchUnavailable(f"{what}: cannot connect to {target.label} ({last})")


def _certificate_error(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(exc, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


@contextmanager
def open_url(
    client: httpx.Client,
    url: str,
    policy: UrlPolicy,
    *,
    what: str = "URL",
    method: str = "GET",
    max_redirects: int = MAX_REDIRECTS,
    deadline: float | None = None,
    **kwargs: Any,
) -> Iterator[httpx.Response]:
    """The streamed response for ``url``, every hop checked and pinned. Redirects are followed up to
    ``max_redirects`` (more: FetchFailed); with ``max_redirects=0`` a redirect is returned as is.
    A 301/302/303 turns a POST into a body-less GET, as browsers do. ``deadline`` (a
    ``time.monotonic()`` value) bounds all hops together.

    httpx errors are left to the caller (see :func:`fetch_bytes` for a mapping).
    """
    for hop in range(max_redirects + 1):
        target = check_url(url, policy, what=what)
        if deadline is not None:
            kwargs["timeout"] = _remaining(client, deadline, what)
        response = _send(client, method, target, what, **kwargs)
        location = redirect_location(response, url) if max_redirects else None
        if location is None:
            try:
                yield response
            finally:
                response.close()
            return
        response.close()
        log.debug("%s: hop %d redirects to %s", what, hop + 1, location)
        url = location
        if response.status_code in (301, 302, 303) and method not in ("GET", "HEAD"):
            method = "GET"
            kwargs = {k: v for k, v in kwargs.items() if k not in ("content", "data", "files", "json")}
    raise FetchFailed(f"{what}: more than {max_redirects} redirects")


def _remaining(client: httpx.Client, deadline: float, what: str) -> httpx.Timeout:
    left = deadline - time.monotonic()
    if left <= 0:
        raise FetchUnavailable(f"{what}: the fetch took longer than the time limit")
    connect = client.timeout.connect
    return httpx.Timeout(left, connect=min(connect, left) if connect else left)


def read_capped(response: httpx.Response, cap: int, deadline: float, what: str) -> bytes:
    """The body, refused past ``cap`` bytes (ImageTooLarge) or past ``deadline`` (FetchUnavailable)."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise FetchFailed(f"{what}: the server sent Content-Encoding {encoding!r}; serve it uncompressed")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise ImageTooLarge(f"{what}: the file is {declared} bytes; the limit is {cap} bytes")
    chunks, size = [], 0
    for chunk in response.iter_raw():
        size += len(chunk)
        if size > cap:
            raise ImageTooLarge(f"{what}: the file is larger than the {cap}-byte limit")
        if time.monotonic() > deadline:
            raise FetchUnavailable(f"{what}: the download took longer than the time limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _check_status(response: httpx.Response, what: str) -> None:
    code = response.status_code
    if code >= 500 or code in (408, 429):
        raise FetchUnavailable(f"{what}: the server answered {code}")
    if code >= 300:
        raise FetchFailed(f"{what}: the server answered {code}; check the URL")


def fetch_bytes(
    url: str,
    settings: Settings,
    what: str = "URL",
    *,
    policy: UrlPolicy | None = None,
    client: httpx.Client | None = None,
) -> bytes:
    """GET ``url`` under the address rules, the size cap (``max_input_bytes``) and the time limits.

    Permanent problems raise FetchRefused/FetchFailed/ImageTooLarge, transient ones FetchUnavailable.
    """
    policy = policy or UrlPolicy.from_settings(settings)
    deadline = time.monotonic() + settings.fetch_timeout_s
    own = client is None
    client = client or guarded_client(settings)
    headers = {"Accept-Encoding": "identity", "User-Agent": USER_AGENT}
    try:
        with open_url(client, url, policy, what=what, deadline=deadline, headers=headers) as response:
            _check_status(response, what)
            return read_capped(response, settings.max_input_bytes, deadline, what)
    except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
        raise FetchUnavailable(f"{what}: fetching the URL failed: {exc}") from exc
    except httpx.HTTPError as exc:
        raise FetchFailed(f"{what}: cannot fetch the URL: {exc}") from exc
    finally:
        if own:
            client.close()
