"""The trading reports over HTTP, on a test clock: the order history (filters, pagination), the
fills CSV (exact decimals, columns, only the caller's fills, streamed in pages) and the P&L by
symbol and by UTC day across midnight. SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.helpers import bearer, new_user
from tests.integration.orders_support import (
    ACCOUNTS,
    ASKS,
    BIDS,
    ORDERS,
    Market,
    default_account,
    place_ok,
)
from tradepilot.app import create_app
from tradepilot.config import Settings
from tradepilot.core.clock import TestClock
from tradepilot.runtime import Runtime
from tradepilot.trading import reporting

T0 = datetime(2026, 3, 1, 23, 0, tzinfo=UTC)
HISTORY, FILLS_CSV, PNL = "/api/trading/history", "/api/trading/fills.csv", "/api/trading/pnl"


class Clocked:
    def __init__(self, client: httpx.AsyncClient, runtime: Runtime, clock: TestClock) -> None:
        self.client, self.runtime, self.clock = client, runtime, clock

    def at(self, seconds: float) -> None:
        """Move the clock to T0 + seconds."""
        self.clock.advance((T0 - self.clock.now()).total_seconds() + seconds)


@pytest.fixture
async def env(settings: Settings) -> AsyncIterator[Clocked]:
    clock = TestClock(T0)
    application = create_app(settings, clock=clock)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, client=("203.0.113.41", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Clocked(client, application.state.runtime, clock)


def ids(page: dict[str, Any]) -> list[str]:
    return [item["id"] for item in page["items"]]


async def test_history_lists_closed_orders_with_their_fills_filtered_and_paged(env: Clocked) -> None:
    client, market = env.client, Market(env.runtime)
    await market.book(BIDS, ASKS)
    _, tokens = await new_user(client)
    auth = bearer(tokens)
    env.at(0)
    bought = await place_ok(client, tokens, side="buy", type="market", quantity="0.05")  # avg 60002
    env.at(10)
    resting = await place_ok(client, tokens, side="buy", type="limit", price="59000", quantity="0.01")
    env.at(20)
    assert (await client.delete(f"{ORDERS}/{resting['id']}", headers=auth)).status_code == 200
    env.at(30)
    rejected = await place_ok(client, tokens, side="buy", type="limit", price="60000", quantity="0.01",
                              post_only=True)
    assert rejected["status"] == "rejected"
    env.at(40)
    sold = await place_ok(client, tokens, side="sell", type="market", quantity="0.02")
    env.at(50)
    await place_ok(client, tokens, side="buy", type="limit", price="59100", quantity="0.01")  # open: not history
    _, other = await new_user(client)
    await place_ok(client, other, side="buy", type="market", quantity="0.01")

    page = (await client.get(HISTORY, params={"limit": 3}, headers=auth)).json()
    assert ids(page) == [sold["id"], rejected["id"], resting["id"]] and page["next_cursor"]
    rest = (await client.get(HISTORY, params={"limit": 3, "cursor": page["next_cursor"]}, headers=auth)).json()
    assert ids(rest) == [bought["id"]] and rest["next_cursor"] is None
    first = rest["items"][0]
    assert (first["status"], first["closed_at"]) == ("filled", "2026-03-01T23:00:00Z")
    assert [(f["price"], f["quantity"], f["fee"], f["realised_pnl"], f["trade_id"]) for f in first["fills"]] == [
        ("60000", "0.04", "2.4", "0", f"{bought['id']}-1"), ("60010", "0.01", "0.6001", "0", f"{bought['id']}-2")]

    async def history(**params: str) -> list[str]:
        resp = await client.get(HISTORY, params=params, headers=auth)
        assert resp.status_code == 200, resp.text
        return ids(resp.json())

    assert await history(status="canceled") == [resting["id"]]
    assert await history(status="rejected", side="buy") == [rejected["id"]]
    sells = (await client.get(HISTORY, params={"side": "sell"}, headers=auth)).json()["items"]
    assert [s["id"] for s in sells] == [sold["id"]]
    # 0.02 @ 59990 against an average entry of 60002: (59990 − 60002) × 0.02
    assert [(f["price"], f["realised_pnl"]) for f in sells[0]["fills"]] == [("59990", "-0.24")]
    assert await history(symbol="btc-usdt") == [sold["id"], rejected["id"], resting["id"], bought["id"]]
    assert await history(symbol="ETH/USDT") == []
    assert await history(start="2026-03-01T23:00:20Z", end="2026-03-01T23:00:40Z") == [rejected["id"],
                                                                                        resting["id"]]
    assert await history(start="2026-03-02T00:00:20+01:00") == [sold["id"], rejected["id"],  # 23:00:20 UTC
                                                                 resting["id"]]
    assert await history(account_id=bought["account_id"]) == [sold["id"], rejected["id"], resting["id"],
                                                              bought["id"]]
    theirs = await client.get(HISTORY, params={"account_id": bought["account_id"]}, headers=bearer(other))
    assert theirs.status_code == 404 and theirs.json()["code"] == "account_not_found"
    assert len((await client.get(HISTORY, headers=bearer(other))).json()["items"]) == 1
    bad = await client.get(HISTORY, params={"cursor": "nope!"}, headers=auth)
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_cursor"
    backwards = await client.get(HISTORY, params={"start": "2026-03-02T00:00:00Z", "end": "2026-03-01T00:00:00Z"},
                                 headers=auth)
    assert backwards.status_code == 422 and backwards.json()["code"] == "invalid_range"


async def csv_rows(client: httpx.AsyncClient, tokens: dict, **params: str) -> list[dict[str, str]]:
    resp = await client.get(FILLS_CSV, params=params, headers=bearer(tokens))
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/csv")
    assert resp.headers["content-disposition"].startswith("attachment")
    lines = list(csv.reader(io.StringIO(resp.text)))
    assert tuple(lines[0]) == reporting.CSV_COLUMNS
    assert resp.text.count("\r\n") == len(lines)
    return [dict(zip(lines[0], line, strict=True)) for line in lines[1:]]


async def test_the_fills_csv_has_exact_decimals_the_columns_and_only_your_fills(
        env: Clocked, monkeypatch: pytest.MonkeyPatch) -> None:
    client, market = env.client, Market(env.runtime)
    await market.book(BIDS, ASKS)
    _, tokens = await new_user(client)
    account = await default_account(client, tokens)
    side_account = (await client.post(ACCOUNTS, json={"name": "=SUM(A1)"}, headers=bearer(tokens))).json()["id"]
    env.at(0)
    bought = await place_ok(client, tokens, side="buy", type="market", quantity="0.05")
    env.at(60.5)
    sold = await place_ok(client, tokens, side="sell", type="market", quantity="0.02", client_order_id="-neg.1")
    env.at(120)
    await place_ok(client, tokens, side="buy", type="market", quantity="0.001", account_id=side_account)
    _, other = await new_user(client)
    theirs = await place_ok(client, other, side="buy", type="market", quantity="0.01")

    rows = await csv_rows(client, tokens)
    assert [(r["time"], r["account_id"], r["side"], r["quantity"], r["price"], r["notional"], r["fee"],
             r["realised_pnl"]) for r in rows] == [
        ("2026-03-01T23:00:00.000000Z", account, "buy", "0.04", "60000", "2400", "2.4", "0"),
        ("2026-03-01T23:00:00.000000Z", account, "buy", "0.01", "60010", "600.1", "0.6001", "0"),
        ("2026-03-01T23:01:00.500000Z", account, "sell", "0.02", "59990", "1199.8", "1.1998", "-0.24"),
        ("2026-03-01T23:02:00.000000Z", side_account, "buy", "0.001", "60000", "60", "0.06", "0")]
    first, sale, last = rows[0], rows[2], rows[3]
    assert (first["account_name"], first["symbol"], first["fee_asset"], first["liquidity"], first["order_id"],
            first["client_order_id"]) == ("Paper", "BTC/USDT", "USDT", "taker", bought["id"],
                                          bought["client_order_id"])
    assert first["trade_id"] == f"{bought['id']}-1"
    # text a user chose is never a spreadsheet formula
    assert (sale["order_id"], sale["client_order_id"], last["account_name"]) == (sold["id"], "'-neg.1", "'=SUM(A1)")
    assert theirs["id"] not in {r["order_id"] for r in rows}

    monkeypatch.setattr(reporting, "PAGE", 2)  # the same export, read two rows at a time
    assert await csv_rows(client, tokens) == rows
    assert await csv_rows(client, tokens, account_id=side_account) == [last]
    assert await csv_rows(client, tokens, start="2026-03-01T23:01:00Z", end="2026-03-01T23:02:00Z") == [sale]
    assert await csv_rows(client, tokens, symbol="ETH-USDT") == []
    their_rows = await csv_rows(client, other)
    assert [r["order_id"] for r in their_rows] == [theirs["id"]]
    refused = await client.get(FILLS_CSV, params={"account_id": account}, headers=bearer(other))
    assert refused.status_code == 404 and refused.json()["code"] == "account_not_found"
    assert (await client.get(FILLS_CSV)).status_code == 401


async def test_pnl_by_symbol_and_by_utc_day_across_midnight(env: Clocked) -> None:
    client, market = env.client, Market(env.runtime)
    env.at(59 * 60)  # 23:59 UTC
    _, tokens = await new_user(client)
    auth = bearer(tokens)
    await market.book([("59000", "1")], [("60000", "0.04")])
    await place_ok(client, tokens, side="buy", type="market", quantity="0.04")  # fee 2.4
    await market.book([("59000", "1")], [("61000", "1")])
    await place_ok(client, tokens, side="buy", type="market", quantity="0.06")  # fee 3.66; average 60600
    await market.book([("61500", "0.02"), ("61400", "1")], [("61600", "1")])
    await place_ok(client, tokens, side="sell", type="market", quantity="0.05")  # realises 18 + 24, fee 3.072
    env.at(61 * 60)  # 00:01 UTC, the next day
    await market.book([("59000", "1")], [("59100", "1")])
    await place_ok(client, tokens, side="sell", type="market", quantity="0.03")  # realises −48, fee 1.77
    await market.trade("61000", "0.01")  # the mark: 0.02 left at 60600 → unrealised 8

    report = (await client.get(PNL, headers=auth)).json()
    assert report["method"] == "average_cost" and "fees" in report["fees_treatment"]
    assert [(d["date"], d["realised_pnl"], d["fees"], d["net_pnl"], d["fills"]) for d in report["by_day"]] == [
        ("2026-03-01", "42", "9.132", "32.868", 4), ("2026-03-02", "-48", "1.77", "-49.77", 1)]
    assert report["totals"] == [{"quote_asset": "USDT", "realised_pnl": "-6", "fees": "10.902",
                                 "net_pnl": "-16.902", "fills": 5, "unrealised_pnl": "8"}]
    [btc] = report["by_symbol"]
    assert (btc["symbol"], btc["realised_pnl"], btc["quantity"], btc["mark_price"], btc["unrealised_pnl"]) == (
        "BTC/USDT", "-6", "0.02", "61000", "8")
    position = (await client.get("/api/trading/positions", headers=auth)).json()["items"][0]
    assert (position["realised_pnl"], position["fees"]) == ("-6", "10.902")  # the same figures, from the fills
    assert len(report["accounts"]) == 1 and report["accounts"][0] == position["account_id"]

    second_day = (await client.get(PNL, params={"start": "2026-03-02T00:00:00Z"}, headers=auth)).json()
    assert [(d["date"], d["realised_pnl"]) for d in second_day["by_day"]] == [("2026-03-02", "-48")]
    assert second_day["totals"][0]["realised_pnl"] == "-48" and second_day["start"] == "2026-03-02T00:00:00Z"
    naive = (await client.get(PNL, params={"end": "2026-03-02T00:00:00"}, headers=auth)).json()  # UTC
    assert [(d["date"], d["net_pnl"]) for d in naive["by_day"]] == [("2026-03-01", "32.868")]
    by_account = (await client.get(PNL, params={"account_id": position["account_id"], "symbol": "btc-usdt"},
                                   headers=auth)).json()
    assert by_account["totals"] == report["totals"]

    _, other = await new_user(client)
    empty = (await client.get(PNL, headers=bearer(other))).json()
    assert (empty["totals"], empty["by_symbol"], empty["by_day"]) == ([], [], [])
    refused = await client.get(PNL, params={"account_id": position["account_id"]}, headers=bearer(other))
    assert refused.status_code == 404 and refused.json()["code"] == "account_not_found"
