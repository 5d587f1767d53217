"""Who is calling: API keys (docs/decisions.md §17) and per-key rate limits, as one FastAPI dependency.

Keys are accepted as ``Authorization: Key <key>`` (fal clients), ``Authorization: Bearer <key>`` and
``X-API-Key: <key>`` (eachlabs clients). ``settings.auth_mode`` decides whether they are required:

* ``required``: every request but ``/health``, ``/ready``, ``/files/…`` and the docs needs a valid,
  unrevoked key; anything else is a 401 ``unauthorized``.
* ``auto`` (default): required, unless the API is bound to a loopback address (the embedded
  default), where requests may come without a key — the start-up log says so.
* ``off``: no key needed. On a non-loopback bind the API refuses to start unless
  ``auth_off_public_ok`` is set too (a deliberate second switch, so a changed ``host`` cannot open
  the service to a network by accident).

When keys are optional a valid key still counts (its requests are its own, and rate-limited); an
unknown one is ignored, since fal clients always send some ``FAL_KEY``. Every job records the key
that created it and is invisible (404) to any other caller (``deps.load_job``).
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from typing import Annotated

import redis
import redis.asyncio as aioredis
from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool

from darkroom.errors import RateLimited, Unauthorized
from darkroom.job import JobRecord
from darkroom.settings import Settings
from storage.apikeys import ApiKeyInfo, ApiKeyStore
from storage.ratelimit import Decision, RateLimiter

from .deps import Services, load_job, services

log = logging.getLogger(__name__)

SCHEMES = ("key", "bearer")
_AUTHORIZATION = APIKeyHeader(
    name="Authorization", scheme_name="KeyAuth", auto_error=False,
    description="`Key <key>` as fal clients send it (`Bearer <key>` works too).",
)
_X_API_KEY = APIKeyHeader(
    name="X-API-Key", scheme_name="ApiKeyHeader", auto_error=False, description="The key itself."
)
HOW = "send 'Authorization: Key <key>' (create keys with `darkroom keys create`)"


class AuthConfigError(RuntimeError):
    """The settings would expose an unauthenticated API to a network."""


@dataclass(frozen=True)
class Caller:
    """The authenticated caller: ``owner`` is the key id, or "" for an anonymous request."""

    owner: str = ""


ANONYMOUS = Caller()


def is_loopback_host(host: str) -> bool:
    if host.strip().lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def keys_required(settings: Settings) -> bool:
    """Whether requests need a key; AuthConfigError for ``off`` on a public bind without the override."""
    loopback = is_loopback_host(settings.host)
    if settings.auth_mode == "required":
        return True
    if settings.auth_mode == "auto":
        return not loopback
    if not loopback and not settings.auth_off_public_ok:
        raise AuthConfigError(
            f"DARKROOM_AUTH_MODE=off but the API would listen on {settings.host}, which is not a loopback "
            "address: anyone who can reach it could use it. Use keys (DARKROOM_AUTH_MODE=auto or required, "
            "`darkroom keys create`), bind to 127.0.0.1, or set DARKROOM_AUTH_OFF_PUBLIC_OK=true if a "
            "proxy in front authenticates."
        )
    return False


@dataclass
class Authenticator:
    required: bool
    keys: ApiKeyStore
    limiter: RateLimiter

    @classmethod
    def build(cls, settings: Settings, client: redis.Redis,
              async_client: aioredis.Redis | None = None) -> Authenticator:
        """With ``async_client``, :meth:`caller_async` checks keys on the event loop."""
        rate, burst = settings.rate_limit_rps, settings.rate_limit_burst
        auth = cls(keys_required(settings), ApiKeyStore(client, async_client),
                   RateLimiter(client, rate, burst, async_client))
        auth.announce(settings)
        return auth

    def announce(self, settings: Settings) -> None:
        """Say at start-up whether keys are required (and warn when they are not)."""
        if not self.required:
            log.warning(
                "authentication is OFF: API keys are not required (DARKROOM_AUTH_MODE=%s, host %s). "
                "Set DARKROOM_AUTH_MODE=required to require them; create keys with `darkroom keys create`.",
                settings.auth_mode, settings.host,
            )
            return
        try:
            active = sum(1 for k in self.keys.all() if not k.revoked)
        except redis.RedisError as exc:
            log.info("API keys are required (cannot count them yet: %s)", exc)
            return
        log.info("API keys are required; %d active key(s)", active)
        if not active:
            log.warning("no active API key exists, so every request is refused: run `darkroom keys create`")

    def caller(self, key: str | None) -> Caller:
        """The caller a presented key stands for; Unauthorized / RateLimited as the settings say."""
        if key is None:
            return self._without_key()
        info, why = self.keys.verify(key)
        if info is None:
            return self._unknown(why)
        return self._limited(info, self.limiter.take(info.key_id))

    async def caller_async(self, key: str | None) -> Caller:
        """:meth:`caller` over the asyncio client (no threadpool hop on the event loop)."""
        if key is None:
            return self._without_key()
        info, why = await self.keys.verify_async(key)
        if info is None:
            return self._unknown(why)
        return self._limited(info, await self.limiter.take_async(info.key_id))

    @property
    def asynchronous(self) -> bool:
        return self.keys.ar is not None

    def _without_key(self) -> Caller:
        if self.required:
            raise Unauthorized(f"an API key is required: {HOW}")
        return ANONYMOUS

    def _unknown(self, why: str) -> Caller:
        if self.required:
            raise Unauthorized(f"{why}: {HOW}")
        return ANONYMOUS

    def _limited(self, info: ApiKeyInfo, decision: Decision) -> Caller:
        if not decision.allowed:
            raise RateLimited(
                f"too many requests for API key {info.key_id}: at most {self.limiter.rate_per_s:g} per "
                f"second (bursts of {self.limiter.burst}); retry in {decision.retry_after_s:.1f} s",
                decision.retry_after_s,
            )
        return Caller(info.key_id)


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key from ``Authorization: Key|Bearer <key>``, else from ``X-API-Key``; None when neither."""
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() in SCHEMES and value.strip():
            return value.strip()
    if x_api_key and x_api_key.strip():
        return x_api_key.strip()
    return authorization.strip() if authorization else None  # another scheme: a malformed key


async def authenticate(
    request: Request,
    authorization: Annotated[str | None, Security(_AUTHORIZATION)] = None,
    x_api_key: Annotated[str | None, Security(_X_API_KEY)] = None,
) -> Caller:
    """FastAPI dependency: the Caller of this request (401 / 429 raised here, nowhere else).

    On the event loop; a presented key is checked in the threadpool (key lookup and rate limit are
    blocking Redis calls), a request without one needs no I/O."""
    svc: Services = request.app.state.services  # not Depends(services): a node less on every request
    caller = await caller_for(svc, presented_key(authorization, x_api_key))
    request.state.caller = caller
    return caller


async def caller_for(svc: Services, key: str | None) -> Caller:
    """The Caller a presented key (or None) stands for: :func:`authenticate`'s work, also used by the
    submit fast path (api.fast_submit)."""
    if svc.auth is None:
        return ANONYMOUS
    if key is None:
        return svc.auth.caller(None)
    if svc.auth.asynchronous:
        return await svc.auth.caller_async(key)
    return await run_in_threadpool(svc.auth.caller, key)  # blocking Redis calls: off the event loop


CallerDep = Annotated[Caller, Depends(authenticate)]


def caller_of(request: Request) -> Caller:
    """The Caller that the router-level ``authenticate`` dependency recorded for this request (for
    hot routes that skip a second CallerDep node); refuses a route that was mounted without it."""
    caller = getattr(request.state, "caller", None)
    if not isinstance(caller, Caller):
        raise RuntimeError("route mounted without the authenticate dependency")
    return caller


def owned_job(base_id: str):
    """FastAPI dependency (per app) loading the request the path names, if the caller owns it: the
    one place that turns someone else's request into a 404."""

    def dependency(
        request_id: str, svc: Annotated[Services, Depends(services)], caller: CallerDep
    ) -> JobRecord:
        return load_job(svc, base_id, request_id, caller.owner)

    return dependency
