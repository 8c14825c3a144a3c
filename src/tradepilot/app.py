"""The FastAPI application factory: wires settings, database, bus and domains together."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from tradepilot import __version__
from tradepilot.config import Settings, load_settings
from tradepilot.core.clock import Clock
from tradepilot.core.http import RequestContextMiddleware
from tradepilot.core.problems import install_problem_handlers
from tradepilot.identity.ratelimit import RateLimitHeadersMiddleware, enforce_rate_limit
from tradepilot.ops.backup.maintenance import MaintenanceMiddleware
from tradepilot.runtime import Runtime, build_runtime


def create_app(settings: Settings | None = None, *, clock: Clock | None = None) -> FastAPI:
    settings = settings or load_settings()
    runtime = build_runtime(settings, clock=clock)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await start_runtime(runtime)
        try:
            yield
        finally:
            await stop_runtime(runtime)

    app = FastAPI(
        title="TradePilot API",
        version=__version__,
        lifespan=lifespan,
        debug=settings.debug,
        openapi_url="/openapi.json",
        docs_url="/docs",
        dependencies=[Depends(enforce_rate_limit)],
    )
    app.state.runtime = runtime
    install_problem_handlers(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=False,
            allow_methods=["*"],
            allow_headers=["Authorization", "Content-Type", "X-API-Key", "Idempotency-Key", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining",
                            "X-RateLimit-Reset"],
        )
    app.add_middleware(MaintenanceMiddleware)  # writes answer 503 while a restore swaps the database
    app.add_middleware(RateLimitHeadersMiddleware)  # inside RequestContextMiddleware: sees its state
    app.add_middleware(RequestContextMiddleware, metrics=runtime.metrics, trusted_proxies=settings.trusted_proxies)
    _include_routers(app)
    return app


def _include_routers(app: FastAPI) -> None:
    from tradepilot.alerts.router import router as alerts_router
    from tradepilot.identity.account_router import router as account_router
    from tradepilot.identity.admin_router import router as admin_users_router
    from tradepilot.identity.deletion_router import router as deletion_router
    from tradepilot.identity.router import router as identity_router
    from tradepilot.identity.router import users_router
    from tradepilot.identity.security_router import router as security_router
    from tradepilot.identity.twofactor_router import router as twofactor_router
    from tradepilot.jobs.router import router as jobs_router
    from tradepilot.market.router import router as market_router
    from tradepilot.notifications.router import router as notifications_router
    from tradepilot.notifications.channels_router import router as notification_channels_router
    from tradepilot.identity.reauth_router import router as reauth_router
    from tradepilot.ops.backup.export_router import router as export_router
    from tradepilot.ops.backup.router import router as backup_router
    from tradepilot.ops.config.router import router as config_router
    from tradepilot.ops.monitoring.router import router as monitoring_router
    from tradepilot.ops.monitoring.router import system_router as monitoring_system_router
    from tradepilot.ops.router import router as ops_router
    from tradepilot.portfolio.router import router as portfolio_manager_router
    from tradepilot.portfolio.analytics_router import router as analytics_router
    from tradepilot.streaming.router import router as streaming_router
    from tradepilot.strategies.optimize.router import router as strategy_optimize_router
    from tradepilot.ai.router import router as ai_router
    from tradepilot.signals.generate_router import router as signals_generate_router
    from tradepilot.signals.router import router as signals_router
    from tradepilot.signals.webhook_router import router as signal_webhook_router
    from tradepilot.ai.llm_router import router as ai_llm_router
    from tradepilot.ai.advanced_router import router as ai_advanced_router
    from tradepilot.strategies.router import ai_router as strategies_ai_router
    from tradepilot.strategies.router import router as strategies_router
    from tradepilot.strategies.runs.router import router as strategy_runs_router
    from tradepilot.trading.admin_router import router as trading_admin_router
    from tradepilot.trading.portfolio_router import router as portfolio_router
    from tradepilot.trading.positions_router import router as positions_router
    from tradepilot.trading.reporting_router import router as reporting_router
    from tradepilot.trading.order_actions_router import router as order_actions_router
    from tradepilot.trading.order_router import router as orders_router
    from tradepilot.trading.router import router as trading_router
    from tradepilot.trading.live.reconciliation_router import router as reconciliation_router

    app.include_router(ops_router)
    app.include_router(identity_router)
    app.include_router(users_router)
    app.include_router(account_router)
    app.include_router(security_router)
    app.include_router(deletion_router)
    app.include_router(admin_users_router)
    app.include_router(twofactor_router)
    app.include_router(jobs_router)
    app.include_router(market_router)
    app.include_router(streaming_router)
    app.include_router(trading_router)
    app.include_router(reconciliation_router)
    app.include_router(order_actions_router)  # before orders_router: /orders/bulk is not an order id
    app.include_router(orders_router)
    app.include_router(positions_router)
    app.include_router(reporting_router)
    app.include_router(portfolio_router)
    app.include_router(portfolio_manager_router)
    app.include_router(trading_admin_router)
    app.include_router(analytics_router)
    app.include_router(reauth_router)
    app.include_router(export_router)
    app.include_router(backup_router)
    app.include_router(monitoring_system_router)
    app.include_router(config_router)
    app.include_router(monitoring_router)
    app.include_router(notification_channels_router)  # before /{notification_id} routes: /channels, /devices
    app.include_router(notifications_router)
    app.include_router(alerts_router)
    app.include_router(strategy_runs_router)  # before strategies_router: /runs is not a strategy id
    app.include_router(strategies_router)
    app.include_router(strategy_optimize_router)
    app.include_router(strategies_ai_router)
    app.include_router(ai_llm_router)  # before ai_router: /models/active is not a model listing
    app.include_router(ai_router)
    app.include_router(signals_generate_router)
    app.include_router(signal_webhook_router)  # before signals_router: /webhook is not a signal id
    app.include_router(signals_router)
    app.include_router(ai_advanced_router)


async def start_runtime(runtime: Runtime) -> None:
    """Start the process-wide machinery in dependency order."""
    from tradepilot.identity.setup import start_identity
    from tradepilot.jobs.setup import start_jobs
    from tradepilot.market.setup import start_market
    from tradepilot.ops.backup.setup import start_backup
    from tradepilot.core.outbox_setup import start_outbox
    from tradepilot.portfolio.setup import start_portfolio
    from tradepilot.streaming.setup import start_streaming
    from tradepilot.trading.matching_owner import start_matching
    from tradepilot.trading.live.reconciliation_owner import start_reconciliation
    from tradepilot.trading.setup import start_trading
    from tradepilot.alerts.engine import start_alert_engine
    from tradepilot.signals.tracker import start_signal_tracker
    from tradepilot.strategies.runs.supervisor import start_strategy_runs
    from tradepilot.notifications.setup import start_notifications
    from tradepilot.ops.config.manager import start_config
    from tradepilot.ops.monitoring.system import start_monitoring
    from tradepilot.ai.setup import start_ai

    await runtime.bus.start()
    await start_config(runtime)  # first: runtime overrides of settings apply before anything uses them
    await start_identity(runtime)
    await start_trading(runtime)  # after identity: it adds a registration hook
    await start_streaming(runtime)
    await start_outbox(runtime)
    await start_jobs(runtime)
    await start_market(runtime)
    await start_matching(runtime)  # after the market: it matches against its books and trades
    await start_ai(runtime)  # after jobs and the market: a fresh install enqueues its first model training
    await start_reconciliation(runtime)  # after the order service: live accounts' reconcilers record through it
    await start_portfolio(runtime)  # after jobs: records equity where jobs run
    await start_backup(runtime)  # after matching: maintenance mode stops and restarts it
    await start_notifications(runtime)  # after jobs and the outbox: it reads the outbox, enqueues emails
    await start_alert_engine(runtime)  # after the market: it evaluates its trades
    await start_signal_tracker(runtime)  # after the market: it reads its candles
    await start_strategy_runs(runtime)  # after the market and matching: runs trade on them
    await start_monitoring(runtime)  # last: it watches the market's trades and every component


async def stop_runtime(runtime: Runtime) -> None:
    from tradepilot.core.lease import close_lease_managers
    from tradepilot.jobs.setup import stop_jobs
    from tradepilot.market.setup import stop_market
    from tradepilot.core.outbox_setup import stop_outbox
    from tradepilot.portfolio.setup import stop_portfolio
    from tradepilot.streaming.setup import stop_streaming
    from tradepilot.trading.matching_owner import stop_matching
    from tradepilot.trading.live.reconciliation_owner import stop_reconciliation
    from tradepilot.alerts.engine import stop_alert_engine
    from tradepilot.signals.tracker import stop_signal_tracker
    from tradepilot.strategies.runs.supervisor import stop_strategy_runs
    from tradepilot.notifications.setup import stop_notifications
    from tradepilot.ops.monitoring.system import stop_monitoring

    await stop_strategy_runs(runtime)  # first: no strategy places an order while the rest stops
    await stop_alert_engine(runtime)
    await stop_signal_tracker(runtime)
    await stop_notifications(runtime)
    await stop_portfolio(runtime)
    await stop_reconciliation(runtime)  # its leases go before the lease managers close
    await stop_matching(runtime)  # first: it releases its lease and stops reading the market
    await stop_market(runtime)  # first: it flushes candles and releases its lease
    await stop_streaming(runtime)
    await stop_jobs(runtime)
    await stop_outbox(runtime)
    await stop_monitoring(runtime)  # persists error counts and ends this replica's uptime segment
    await runtime.bus.stop()
    await close_lease_managers(runtime)  # last: every lease user has stopped
    if runtime.redis is not None:
        await runtime.redis.aclose()
    await runtime.db.dispose()
