"""`create_app(settings)`: the Litestar application and the lifespan of its services."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, Router
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, OAuthFlow, OAuthFlows, SecurityScheme

from aiplatform import __version__
from aiplatform.api.active_read_models import ActiveReadModels, use_read_models
from aiplatform.api.admin import admin_router
from aiplatform.api.audit import audit_router
from aiplatform.api.auth import auth_router
from aiplatform.api.context import request_id_middleware
from aiplatform.api.datasets import datasets_router
from aiplatform.api.errors import EXCEPTION_HANDLERS
from aiplatform.api.experiments import experiments_router
from aiplatform.api.gpu import gpu_router
from aiplatform.api.guards import permission_guard
from aiplatform.api.health import health, ready
from aiplatform.api.inference import inference_router
from aiplatform.api.jobs import jobs_router
from aiplatform.api.log_context import log_context_middleware
from aiplatform.api.metrics import metrics_route
from aiplatform.api.models import models_router
from aiplatform.api.monitoring import monitoring_router
from aiplatform.api.notifications import notifications_router
from aiplatform.api.projects import projects_router
from aiplatform.api.request_metrics import request_metrics_middleware
from aiplatform.api.roles import roles_router
from aiplatform.api.services import Services
from aiplatform.api.streams import streams_router
from aiplatform.api.training import training_router
from aiplatform.api.users import users_router
from aiplatform.api.web import web_routes
from aiplatform.auth.accounts import Accounts
from aiplatform.auth.permissions import PUBLIC
from aiplatform.auth.rate_limit import LoginRateLimiter
from aiplatform.auth.standing import Standing
from aiplatform.auth.tokens import VerifiedTokens
from aiplatform.cache import Cache, connect, connect_for_waiting, key_prefix
from aiplatform.commands import CommandHandler
from aiplatform.config import Settings
from aiplatform.eventstore.store import EventStore, create_pool
from aiplatform.observability.metrics import ApiMetrics
from aiplatform.projectors.read_models import active_read_models, install, load_read_model
from aiplatform.projectors.registry import all_projectors
from aiplatform.queries.datasets import DatasetQueries
from aiplatform.queries.experiments import ExperimentQueries
from aiplatform.queries.jobs import JobQueries
from aiplatform.queries.models import ModelQueries
from aiplatform.queries.notifications import NotificationQueries
from aiplatform.queries.projects import ProjectQueries
from aiplatform.queries.roles import RoleQueries
from aiplatform.queries.users import UserQueries
from aiplatform.storage import blob_store_from_settings
from aiplatform.streams.feed import StreamFeed
from aiplatform.workers.broker import build_broker
from aiplatform.workers.waker import ProjectorWaker

log = logging.getLogger(__name__)


async def start_services(settings: Settings) -> Services:
    settings.require_secret_key()
    pool = await create_pool(
        settings.require_database_url(),
        max_size=settings.database_pool_size,
        idle_in_transaction_timeout_ms=settings.idle_in_transaction_timeout_ms,
        application_name="aiplatform-api",
    )
    async with pool.acquire() as connection:
        for projector in all_projectors():
            await install(connection, projector.read_model)
    cache = Cache(connect(settings.require_redis_url()), key_prefix(settings.instance))
    broker = build_broker(settings)
    waker = ProjectorWaker(broker, cache)
    store = EventStore(pool)
    accounts = Accounts(pool)
    services = Services(
        settings=settings,
        pool=pool,
        cache=cache,
        store=store,
        commands=CommandHandler(store, listeners=[waker.on_append]),
        projects=ProjectQueries(pool, cache),
        users=UserQueries(pool),
        experiments=ExperimentQueries(pool),
        models=ModelQueries(pool),
        datasets=DatasetQueries(pool),
        jobs=JobQueries(pool, cache),
        notifications=NotificationQueries(pool),
        blobs=blob_store_from_settings(settings),
        roles=RoleQueries(pool),
        accounts=accounts,
        standing=Standing(accounts, cache),
        login_limiter=LoginRateLimiter(cache),
        tokens=VerifiedTokens(settings.require_secret_key()),
        broker=broker,
        waker=waker,
        waiting_redis=connect_for_waiting(settings.require_redis_url()),
        streams=StreamFeed(
            pool,
            connect_for_waiting(settings.require_redis_url()),
            cache,
            load_read_model("notifications"),
        ),
    )
    # Readers use the active versions, which a rebuild may have left behind this code's.
    use_read_models(services, await active_read_models(pool))
    waker.start()
    await services.streams.start()
    warmed = await services.projects.warm_cache()
    log.info("cache warmed with %d active projects", warmed)
    return services


async def stop_services(services: Services) -> None:
    await services.streams.stop()
    await services.waker.stop()
    await services.cache.close()
    await services.waiting_redis.aclose()
    services.broker.close()
    await services.pool.close()


def create_app(settings: Settings, *, freeze_after_start: bool = False) -> Litestar:
    """`freeze_after_start`: for a server process of its own (not a test's app)."""
    metrics = ApiMetrics()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.services = await start_services(settings)
        following = ActiveReadModels(app.state.services)
        following.start()
        if freeze_after_start:
            # What start-up built lives as long as the process. Frozen out of the collector's
            # generations, it is no longer walked by every full collection (38 ms for the
            # 120,000 objects of a started API, measured), which stalls every stream at once.
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            await following.stop()
            await stop_services(app.state.services)

    api = Router(
        path="/api/v2",
        route_handlers=[
            auth_router(),
            projects_router(),
            experiments_router(),
            models_router(),
            datasets_router(),
            users_router(),
            roles_router(),
            audit_router(),
            admin_router(),
            jobs_router(),
            monitoring_router(),
            gpu_router(),
            notifications_router(),
            training_router(),
            inference_router(),
            streams_router(),
        ],
    )
    return Litestar(
        route_handlers=[api, health, ready, metrics_route(metrics), *web_routes()],
        guards=[permission_guard],
        lifespan=[lifespan],
        # The request id first: the log context and the metrics below it read it.
        middleware=[
            request_id_middleware,
            log_context_middleware,
            request_metrics_middleware(metrics),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=settings.max_request_body_bytes,
        openapi_config=OpenAPIConfig(
            title="AI Platform",
            version=__version__,
            # The schema and its renderers are public (so is the API's shape).
            openapi_router=Router(path="/schema", route_handlers=[], opt={"permission": PUBLIC}),
            render_plugins=[SwaggerRenderPlugin(), ScalarRenderPlugin(path="/scalar")],
            components=Components(
                security_schemes={
                    "OAuth2": SecurityScheme(
                        type="oauth2",
                        description="Log in with a username and password",
                        flows=OAuthFlows(
                            password=OAuthFlow(token_url="/api/v2/auth/token", scopes={})
                        ),
                    )
                }
            ),
            security=[{"OAuth2": []}],
        ),
        # Logging is the process's (`aiplatform api` sets it up, JSON or text), not Litestar's.
        logging_config=None,
        debug=False,
    )
