"""Everything the Darkroom client raises: one base class, ``DarkroomClientError``, and its kinds.

``status_code`` is the server's HTTP status, or None when no answer came (the server was out of
reach) or none was asked for (the client refused the call itself: a bad key, an unknown parameter).
"""

from __future__ import annotations

import difflib
from typing import Any

import httpx

UP_HINT = "is the server running? Start one with `darkroom up`, or point --server / $DARKROOM_SERVER at it"


class DarkroomClientError(Exception):
    """An answer the client cannot use: the HTTP status, the server's ``detail`` and ``error_type``."""

    def __init__(
        self, status_code: int | None, detail: Any, error_type: str | None = None,
        request_id: str | None = None,
    ) -> None:
        self.status_code = status_code
        self.detail = detail
        self.error_type = error_type
        self.request_id = request_id
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """One line: the status code, the error type and the detail (422 lists flattened)."""
        detail = self.detail
        if isinstance(detail, list):  # FastAPI validation errors: [{loc, msg, type}, ...]
            detail = "; ".join(_validation_line(item) for item in detail)
        if self.status_code is None:
            return str(detail)
        kind = f" {self.error_type}" if self.error_type else ""
        return f"HTTP {self.status_code}{kind}: {detail}"


class WaitTimedOut(DarkroomClientError):
    """The request did not finish within the client's ``timeout_s`` (it may still run: cancel it)."""


class ServerUnreachable(DarkroomClientError):
    """No answer from ``url``: the connection failed or timed out (``__cause__`` is httpx's error)."""

    def __init__(self, url: str, attempt: str, cause: httpx.TransportError, own_server: bool) -> None:
        self.url = url
        what = "no answer in time from" if isinstance(cause, httpx.TimeoutException) else "cannot reach"
        reason = str(cause) or type(cause).__name__
        hint = f"; {UP_HINT}" if own_server else ""
        super().__init__(None, f"{what} {url} ({attempt}: {reason}){hint}", "server_unreachable")


class InvalidKey(DarkroomClientError, ValueError):
    """The API key cannot go into an HTTP header (not printable ASCII): usually a copied placeholder."""

    def __init__(self, key: str, source: str) -> None:
        position, char = next((i, ch) for i, ch in enumerate(key) if not _printable(ch))
        placeholder = " — it looks like the placeholder from the docs" if "…" in key else ""
        detail = (
            f"the API key from {source} must be printable ASCII, but it holds {char!r} at position "
            f"{position}{placeholder}; use a real key (`darkroom keys create` prints one)"
        )
        super().__init__(None, detail, "invalid_key")


def check_key(key: str, source: str) -> str:
    """``key`` without surrounding whitespace; InvalidKey when it cannot travel in a header."""
    key = key.strip()
    if not all(_printable(ch) for ch in key):
        raise InvalidKey(key, source)
    return key


class UnknownApp(DarkroomClientError):
    """The server has no such app; ``served`` lists the ones it has (None: not known)."""

    def __init__(
        self, app: str, server: str, served: list[str] | None, origin: str, status_code: int | None = None
    ) -> None:
        self.app = app
        self.served = served
        close = difflib.get_close_matches(app, served or [], n=1)
        guess = f"; did you mean {close[0]!r}?" if close else "."
        listing = f" {origin}: {', '.join(served)}" if served else ""
        super().__init__(status_code, f"unknown app {app!r} on {server}{guess}{listing}", "unknown_app")

    @property
    def message(self) -> str:
        return str(self.detail)  # no "HTTP 404": the detail says it all


class UnknownParameter(DarkroomClientError, ValueError):
    """Input fields the app does not have (the server would ignore them). ``suggestions`` maps each
    unknown name to its closest known one (or None); ``known`` is the app's fields."""

    def __init__(self, app: str, unknown: list[str], known: list[str]) -> None:
        self.app = app
        self.known = known
        self.suggestions = {
            name: next(iter(difflib.get_close_matches(name, known, n=1)), None) for name in unknown
        }
        super().__init__(None, self._describe(), "unknown_parameter")

    def _describe(self) -> str:
        """``unknown parameter 'enable_grian' for fal-ai/post-processing; did you mean 'enable_grain'?``"""
        listing = f"; its parameters: {', '.join(self.known)}"
        if len(self.suggestions) == 1:
            name, close = next(iter(self.suggestions.items()))
            return f"unknown parameter {name!r} for {self.app}" + (
                f"; did you mean {close!r}?" if close else listing
            )
        names = ", ".join(
            f"{name!r} (did you mean {close!r}?)" if close else repr(name)
            for name, close in self.suggestions.items()
        )
        return f"unknown parameters for {self.app}: {names}" + (
            listing if None in self.suggestions.values() else ""
        )


def _printable(ch: str) -> bool:
    return " " < ch <= "~"


def _validation_line(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    loc = ".".join(str(part) for part in item.get("loc", []) if part != "body")
    return f"{loc}: {item.get('msg', '')}" if loc else str(item.get("msg", item))
