"""Equity history and /api/analytics/*: three UTC days of trading on the paper exchange with a
deposit on the way, checked against equity computed here from the account's own balances and
the day's closing prices."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import select

from tests.helpers import bearer, new_user
from tests.integration.orders_support import Market, wait_for
from tradepilot.app import create_app
from tradepilot.config import Settings
from tradepilot.core.clock import TestClock
from tradepilot.market import payloads
from tradepilot.market.types import Bar
from tradepilot.portfolio.equity import EquityRecorder, recorder_of
from tradepilot.portfolio.equity_models import EquityDay, EquityIntraday
from tradepilot.portfolio.manager import manager_of
from tradepilot.trading.models import TradingAccount as TradingAccountModel

DAY = 24 * 3600
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> TestClock:
    return TestClock(START)


@pytest.fixture
async def app(settings: Settings, clock: TestClock):  # type: ignore[no-untyped-def]
    application = create_app(settings, clock=clock)
    async with application.router.lifespan_context(application):
        yield application


async def daily_close(runtime, day: date, close: str) -> None:  # type: ignore[no-untyped-def]
    """A closed 1d candle of BTC/USDT, as the feed owner of another replica would publish it."""
    price = Decimal(close)
    bar = Bar(symbol="BTC/USDT", timeframe="1d", open_time=datetime(day.year, day.month, day.day, tzinfo=UTC),
              open=price, high=price, low=price, close=price, volume=Decimal(1), closed=True)
    await runtime.bus.publish(payloads.candle_event(bar))


async def balances(client: httpx.AsyncClient, auth: dict, account_id: str) -> dict[str, Decimal]:
    detail = (await client.get(f"/api/trading/accounts/{account_id}", headers=auth)).json()
    return {b["asset"]: Decimal(b["total"]) for b in detail["balances"]}


async def test_three_days_with_a_deposit(client: httpx.AsyncClient, runtime, clock: TestClock) -> None:  # type: ignore[no-untyped-def]
    market = Market(runtime)
    user, tokens = await new_user(client)
    key = (await client.post("/api/users/me/api-keys", json={"name": "bot", "scopes": ["read", "trade"]},
                             headers=bearer(tokens))).json()["key"]
    auth = {"X-API-Key": key}  # survives the clock moving days
    account = (await client.get("/api/trading/accounts", headers=auth)).json()["items"][0]["id"]

    async def order(side: str, quantity: str) -> None:
        answer = await client.post("/api/trading/orders", headers=auth, json={
            "symbol": "BTC/USDT", "side": side, "type": "market", "quantity": quantity})
        assert answer.status_code == 201, answer.text

    closes = {}
    end_of_day: dict[date, dict[str, Decimal]] = {}
    # day 0: buy 10 BTC; the day closes at 100
    await market.book(bids=[("100", "50")], asks=[("101", "50")])
    await order("buy", "10")
    d0 = START.date()
    closes[d0] = Decimal("100")
    await daily_close(runtime, d0, "100")
    end_of_day[d0] = await balances(client, auth, account)
    # day 1: sell 5 at 110; closes at 110
    clock.advance(DAY)
    await market.book(bids=[("110", "50")], asks=[("111", "50")])
    await order("sell", "5")
    d1 = d0 + timedelta(days=1)
    closes[d1] = Decimal("110")
    await daily_close(runtime, d1, "110")
    end_of_day[d1] = await balances(client, auth, account)
    # day 2: deposit 5,000 USDT; closes at 120 — the deposit is a flow, not a return
    clock.advance(DAY)
    deposit = await client.post(f"/api/trading/accounts/{account}/deposits", headers=auth,
                                json={"asset": "USDT", "amount": "5000"})
    assert deposit.status_code == 201, deposit.text
    d2 = d1 + timedelta(days=1)
    closes[d2] = Decimal("120")
    await daily_close(runtime, d2, "120")
    end_of_day[d2] = await balances(client, auth, account)
    # day 3 (today): the last trade is at 115
    clock.advance(DAY)
    await market.trade("115", "0.5")
    d3 = d2 + timedelta(days=1)
    closes[d3] = Decimal("115")
    end_of_day[d3] = end_of_day[d2]

    expected = {d: b.get("USDT", Decimal(0)) + b.get("BTC", Decimal(0)) * closes[d] for d, b in end_of_day.items()}
    flows = {d0: Decimal("10000"), d1: Decimal(0), d2: Decimal("5000"), d3: Decimal(0)}

    perf = await client.get("/api/analytics/performance", headers=auth)
    assert perf.status_code == 200, perf.text
    body = perf.json()
    curve = {date.fromisoformat(p["date"]): p for p in body["equity_curve"]}
    assert sorted(curve) == [d0, d1, d2, d3]
    for day, point in curve.items():
        assert Decimal(point["equity"]) == expected[day], day
        assert Decimal(point["net_flows"]) == flows[day], day
    twr = Decimal(1)
    for prev, day in ((d0, d1), (d1, d2), (d2, d3)):
        twr *= (expected[day] - flows[day]) / expected[prev]
    assert body["returns"]["all"] == pytest.approx(float(twr - 1), rel=1e-12)
    naive = float(expected[d3] / expected[d0] - 1)
    assert abs(body["returns"]["all"] - naive) > 0.1  # the deposit would be a 30 % "return"
    day2 = float((expected[d2] - flows[d2]) / expected[d1] - 1)  # 5 BTC x +10: about +0.5 %
    assert day2 < 0.01
    assert body["best_day"]["date"] == d2.isoformat() or body["best_day"]["return"] >= day2
    assert body["method"]["annualization"] == 365 and body["method"]["var_method"] == "historical"
    assert body["trades"]["count"] == 1  # one sell closed part of the position
    assert [s["name"] for s in body["by_symbol"]] == ["BTC/USDT"] and body["by_symbol"][0]["fills"] == 2
    assert Decimal(body["profit"]["net_flows"]) == Decimal("5000")
    assert Decimal(body["profit"]["profit"]) == expected[d3] - expected[d0] - Decimal("5000")

    week = (await client.get("/api/analytics/performance", params={"start": d2.isoformat()},
                             headers=auth)).json()
    assert [p["date"] for p in week["equity_curve"]] == [d1.isoformat(), d2.isoformat(), d3.isoformat()]

    # the recording job writes what the reads computed: final days, today's row, an intraday point
    await recorder_of(runtime).record_all()
    async with runtime.db.session() as session:
        rows = {r.day: r for r in (await session.scalars(select(EquityDay))).all()
                if str(r.account_id) == account}
        points = (await session.scalars(select(EquityIntraday))).all()
    assert sorted(rows) == [d0, d1, d2, d3]
    assert [rows[d].final for d in (d0, d1, d2, d3)] == [True, True, True, False]
    assert all(rows[d].equity == expected[d] for d in rows)
    assert rows[d2].net_flows == Decimal("5000") and rows[d1].trades == 1 and rows[d1].realised_pnl > 0
    assert any(str(p.account_id) == account and p.equity == expected[d3] for p in points)
    # after recording, reads combine stored final days with today's replay: the same answer
    again = (await client.get("/api/analytics/performance", headers=auth)).json()
    assert again["equity_curve"] == body["equity_curve"]

    risk = (await client.get("/api/analytics/risk-metrics", params={"benchmark": "BTC/USDT"},
                             headers=auth)).json()
    assert set(risk["var"]) == {"0.95", "0.99"} and risk["method"]["var_method"] == "historical"
    assert risk["benchmark"]["symbol"] == "BTC/USDT" and risk["benchmark"]["beta"] is not None
    assert risk["volatility"] is not None and "parametric_var" in risk

    dd = (await client.get("/api/analytics/drawdown", headers=auth)).json()
    assert dd["max"] <= 0 and len(dd["series"]) == 3 and len(dd["top_periods"]) <= 5
    sharpe = (await client.get("/api/analytics/sharpe-ratio", params={"window": 2, "risk_free": 0.04},
                               headers=auth)).json()
    assert sharpe["risk_free"] == 0.04 and sharpe["annualization"] == 365 and len(sharpe["rolling"]) == 3

    allocation = (await client.get("/api/analytics/portfolio-allocation", headers=auth)).json()
    weights = {a["asset"]: a["weight"] for a in allocation["by_asset"]}
    btc_value = end_of_day[d3]["BTC"] * closes[d3]
    assert weights["BTC"] == pytest.approx(float(btc_value / expected[d3]), rel=1e-12)
    assert sum(weights.values()) == pytest.approx(1.0)
    assert len(allocation["over_time"]) == 4

    expo = (await client.get("/api/analytics/exposure", headers=auth)).json()
    assert Decimal(expo["gross"]) == btc_value and expo["largest_weight"] == pytest.approx(1.0)
    assert expo["gross_ratio"] == pytest.approx(float(btc_value / expected[d3]), rel=1e-12)

    html = await client.get("/api/analytics/report", params={"period": "30d"}, headers=auth)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert html.text.count("data:image/png;base64,") >= 4 and "https://" not in html.text
    pdf = await client.get("/api/analytics/report", params={"format": "pdf"}, headers=auth)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")
    png = await client.get("/api/analytics/report", params={"format": "png"}, headers=auth)
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG\r\n\x1a\n")

    # the same through the PortfolioManager, as non-HTTP callers (notifications, strategies) use it
    manager = manager_of(runtime)
    owner = uuid.UUID(user["id"])
    assert await manager.calculate_portfolio_value(owner) == expected[d3]
    allocation_now = await manager.get_asset_allocation(owner)
    assert allocation_now["BTC"][0] == btc_value
    risk_report = await manager.calculate_risk_metrics(owner, period="all")
    assert risk_report.time_weighted_return == pytest.approx(body["returns"]["all"], rel=1e-12)
    emailed, media_type = await manager.generate_performance_report(owner, period="7d", fmt="pdf")
    assert media_type == "application/pdf" and emailed.startswith(b"%PDF-")

    # intraday: the point the job recorded, then now, ten minutes and one trade later
    clock.advance(600)
    await market.trade("116", "0.5")
    later = (await client.get("/api/analytics/performance", params={"period": "1d"}, headers=auth)).json()
    now_equity = end_of_day[d3]["USDT"] + end_of_day[d3]["BTC"] * Decimal("116")
    assert [Decimal(p["equity"]) for p in later["intraday_curve"]] == [expected[d3], now_equity]
    assert later["intraday_return"] == pytest.approx(float(now_equity / expected[d2] - 1), rel=1e-12)
    assert later["returns"]["1d"] == pytest.approx(later["intraday_return"], rel=1e-12)


async def test_another_users_account_and_bad_periods(client: httpx.AsyncClient) -> None:
    _, mine = await new_user(client)
    _, theirs = await new_user(client)
    their_account = (await client.get("/api/trading/accounts", headers=bearer(theirs))).json()["items"][0]["id"]
    for path in ("performance", "risk-metrics", "drawdown", "sharpe-ratio", "portfolio-allocation", "exposure",
                 "report"):
        answer = await client.get(f"/api/analytics/{path}", params={"account_id": their_account},
                                  headers=bearer(mine))
        assert answer.status_code == 404 and answer.json()["code"] == "account_not_found", path
    too_new = await client.get("/api/analytics/report", headers=bearer(mine))  # opened today: one point
    assert too_new.status_code == 422 and too_new.json()["code"] == "insufficient_history"
    bad = await client.get("/api/analytics/performance", params={"period": "2w"}, headers=bearer(mine))
    assert bad.status_code == 422
    backwards = await client.get("/api/analytics/drawdown", params={"start": "2026-03-05", "end": "2026-03-01"},
                                 headers=bearer(mine))
    assert backwards.status_code == 422 and backwards.json()["code"] == "invalid_period"
    unknown = await client.get("/api/analytics/risk-metrics", params={"benchmark": "NOPE/USDT"},
                               headers=bearer(mine))
    assert unknown.status_code == 422 and unknown.json()["code"] == "unknown_benchmark"


async def test_a_fill_records_the_accounts_equity(client: httpx.AsyncClient, runtime) -> None:  # type: ignore[no-untyped-def]
    if not runtime.services["jobs"].executes:
        pytest.skip("this process runs no jobs, so it does not record equity after fills")
    market = Market(runtime)
    await market.book(bids=[("100", "50")], asks=[("101", "50")])
    _, tokens = await new_user(client)
    account = (await client.get("/api/trading/accounts", headers=bearer(tokens))).json()["items"][0]["id"]
    placed = await client.post("/api/trading/orders", headers=bearer(tokens), json={
        "symbol": "BTC/USDT", "side": "buy", "type": "market", "quantity": "1"})
    assert placed.status_code == 201, placed.text

    async def recorded() -> bool:
        async with runtime.db.session() as session:
            row = (await session.scalars(select(EquityDay).where(EquityDay.account_id == uuid.UUID(placed.json()["account_id"]))
                                         )).first()
        return row is not None and row.trades == 1 and row.positions_value == Decimal("101")

    await wait_for(recorded, "the equity row written after the fill", timeout=15)
    assert account == placed.json()["account_id"]


async def test_recording_what_is_new_equals_recording_everything(  # type: ignore[no-untyped-def]
        client: httpx.AsyncClient, runtime, clock: TestClock) -> None:
    """After-fill recordings read only the ledger and fills that are new since the last read;
    over days, a final row, deposits and fees, every figure equals a recorder reading it all."""
    market = Market(runtime)
    _, tokens = await new_user(client)
    key = (await client.post("/api/users/me/api-keys", json={"name": "bot", "scopes": ["read", "trade"]},
                             headers=bearer(tokens))).json()["key"]
    auth = {"X-API-Key": key}
    account = uuid.UUID((await client.get("/api/trading/accounts", headers=auth)).json()["items"][0]["id"])
    recorder = recorder_of(runtime)
    await market.book(bids=[("100", "50")], asks=[("101", "50")])
    for step in range(12):
        if step in (4, 9):  # a new UTC day: yesterday's row becomes final, the read restarts from it
            clock.advance(DAY)
            await daily_close(runtime, (clock.now() - timedelta(days=1)).date(), str(100 + step))
            await market.book(bids=[(str(100 + step), "50")], asks=[(str(101 + step), "50")])
        if step == 6:
            deposit = await client.post(f"/api/trading/accounts/{account}/deposits", headers=auth,
                                        json={"asset": "USDT", "amount": "2500"})
            assert deposit.status_code == 201, deposit.text
        placed = await client.post("/api/trading/orders", headers=auth, json={
            "symbol": "BTC/USDT", "side": "buy" if step % 3 else "sell" if step else "buy", "type": "market",
            "quantity": "0.5" if step % 3 else "0.2"})
        assert placed.status_code == 201, placed.text
        await recorder.record(account)  # incremental: what is new since the last recording
        clock.advance(60)

    async def rows() -> list[tuple]:  # type: ignore[type-arg]
        async with runtime.db.session() as session:
            found = (await session.scalars(select(EquityDay).where(EquityDay.account_id == account)
                                           .order_by(EquityDay.day))).all()
        return [(r.day, r.final, r.equity, r.cash, r.positions_value, r.net_flows, r.fees, r.realised_pnl,
                 r.trades, r.holdings, r.ledger_seq) for r in found]

    incremental = await rows()
    assert len(incremental) == 3 and [r[1] for r in incremental] == [True, True, False]
    assert sum(r[8] for r in incremental) == 12 and incremental[2][5] == 0  # 12 fills; the deposit was day 1's
    async with runtime.db.session() as session:
        opened = await session.get(TradingAccountModel, account)
    assert opened is not None
    today_incremental = await recorder.unfinished_days(opened)
    everything = EquityRecorder(runtime)  # a process that has read nothing yet
    assert await everything.record(account) == 1
    assert await rows() == incremental
    assert await everything.unfinished_days(opened) == today_incremental
