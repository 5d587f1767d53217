"""The FastAPI application factory."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI

from darkroom import __version__
from darkroom.broker import make_celery
from darkroom.plugins import load_plugins
from darkroom.settings import Settings, get_settings
from storage.jobs import JobStore, redis_client
from storage.objects import build_object_store

from .deps import Services
from .errors import install_error_handlers
from .routes import queue, system

log = logging.getLogger(__name__)


def build_services(settings: Settings) -> Services:
    if not settings.redis_url:
        raise RuntimeError("DARKROOM_REDIS_URL is not set (or use `darkroom up`, which starts Redis)")
    client = redis_client(settings.redis_url, settings.redis_socket_timeout_s)
    store = JobStore(client, settings.retention_s, settings.max_queue_length)
    return Services(settings, store, build_object_store(settings), make_celery(settings))


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    load_plugins(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.services = build_services(settings)
        log.info("Darkroom API ready at %s", settings.api_base_url)
        yield
        app.state.services.store.r.close()

    app = FastAPI(
        title="Darkroom",
        version=__version__,
        description="Self-hosted image post-processing, compatible with fal-ai/post-processing.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.include_router(system.router)
    app.include_router(queue.build_router())
    return app
