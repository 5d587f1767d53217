"""The FastAPI application factory."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from darkroom import __version__
from darkroom.models import use_models_config
from darkroom.netguard import UrlPolicy
from darkroom.plugins import load_plugins
from darkroom.settings import Settings, get_settings
from storage.jobs import JobStore, async_redis_client, pubsub_client
from storage.objects import build_object_store

from .auth import Authenticator, authenticate, keys_required
from .create_batch import CreateBatcher
from .deps import Services
from .docs import install_docs
from .errors import install_error_handlers
from .fast_submit import FastSubmitMiddleware
from .openapi import install_openapi
from .proxy import FalProxyMiddleware
from .routes import eachlabs, jwks, metrics, playground, queue, recipes, run, stream, system, uploads

log = logging.getLogger(__name__)


def build_services(settings: Settings) -> Services:
    if not settings.redis_url:
        raise RuntimeError("DARKROOM_REDIS_URL is not set (or use `darkroom up`, which starts Redis)")
    async_client = async_redis_client(settings.redis_url, settings.redis_socket_timeout_s)
    store = JobStore.from_settings(settings, async_client)
    events = pubsub_client(settings.redis_url, settings.redis_socket_timeout_s)
    return Services(
        settings, store, build_object_store(settings), events,
        auth=Authenticator.build(settings, store.r, async_client),
        creates=CreateBatcher(store, settings.api_create_batch), url_policy=UrlPolicy.from_settings(settings),
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    keys_required(settings)  # refuse to build an unauthenticated API for a public bind (api.auth)
    load_plugins(settings)
    use_models_config(settings)  # model names the diffusion apps accept

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.services = build_services(settings)
        log.info("Darkroom API ready at %s", settings.api_base_url)
        yield
        app.state.services.store.r.close()
        await app.state.services.store.ar.aclose()
        await app.state.services.events.aclose()

    app = FastAPI(
        title="Darkroom",
        version=__version__,
        description="Self-hosted image post-processing, compatible with fal-ai/post-processing.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's pages load their assets from CDNs: api.docs serves them locally
        redoc_url=None,
    )
    install_error_handlers(app)
    install_openapi(app)
    install_docs(app)  # /docs and /redoc, working offline
    app.include_router(system.router)
    authenticated = [Depends(authenticate)]  # routes also take the Caller to scope jobs to their key
    app.include_router(queue.build_router(), dependencies=authenticated)
    app.include_router(stream.build_router(), dependencies=authenticated)
    app.include_router(run.build_router(), dependencies=authenticated)
    app.include_router(eachlabs.router, dependencies=authenticated)
    app.include_router(uploads.router, dependencies=authenticated)
    app.include_router(recipes.router, dependencies=authenticated)
    app.include_router(jwks.router)
    playground.install(app)  # the page at / and its /static files
    if settings.api_metrics:
        app.include_router(metrics.router)  # Prometheus, unauthenticated like /health
    install_middleware(app, settings)
    return app


def install_middleware(app: FastAPI, settings: Settings) -> None:
    """The submit fast path (innermost, so proxied submits take it too), the fal JS-client proxy route,
    and CORS (outermost, so it also covers the proxy's answers)."""
    app.add_middleware(FastSubmitMiddleware)
    app.add_middleware(FalProxyMiddleware, own_base_url=settings.api_base_url)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["x-fal-request-id", "x-fal-error-type"],
        )
