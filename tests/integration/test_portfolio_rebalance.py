"""POST /api/portfolio/rebalance on the paper exchange: the plan, its execution through the
order service (sells first), dry runs, ownership, scopes and bad targets."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.helpers import bearer, new_user
from tests.integration.orders_support import (
    ORDERS,
    Market,
    assert_ledger_consistent,
    balances,
    default_account,
)
from tradepilot.runtime import Runtime

REBALANCE = "/api/portfolio/rebalance"
TARGET = {"BTC": "0.5", "ETH": "0.2", "USDT": "0.3"}


@pytest.fixture
async def markets(runtime: Runtime) -> dict[str, Market]:
    """Deep, tight books and a last trade for BTC/USDT and ETH/USDT."""
    btc, eth = Market(runtime, "BTC/USDT"), Market(runtime, "ETH/USDT")
    await btc.book([("59990", "5")], [("60000", "5")])
    await btc.trade("60000", "0.01")
    await eth.book([("2999.5", "100")], [("3000", "100")])
    await eth.trade("3000", "0.1")
    return {"BTC": btc, "ETH": eth}


async def rebalance(client: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> httpx.Response:
    body.setdefault("target_allocation", TARGET)
    return await client.post(REBALANCE, json=body, headers=headers)


async def weights(client: httpx.AsyncClient, headers: dict[str, str], account_id: str) -> dict[str, Decimal]:
    answer = (await client.get("/api/trading/portfolio", params={"account_id": account_id}, headers=headers)).json()
    return {h["asset"]: Decimal(h["value"]) / Decimal(answer["total_value"]) for h in answer["holdings"]}


def assert_within(actual: dict[str, Decimal], target: dict[str, str], tolerance: str) -> None:
    for asset, weight in target.items():
        assert abs(actual.get(asset, Decimal(0)) - Decimal(weight)) <= Decimal(tolerance), (asset, actual)


async def test_a_rebalance_reaches_the_target_on_the_paper_exchange(client: httpx.AsyncClient, runtime: Runtime,
                                                                    markets: dict[str, Market]) -> None:
    _, tokens = await new_user(client)
    auth = bearer(tokens)
    account = await default_account(client, tokens)

    done = await rebalance(client, auth, dry_run=False, tolerance="0.01")
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["executed"] and body["account_id"] == account and body["currency"] == "USDT"
    assert [(o["side"], o["symbol"], o["quantity"], o["status_code"]) for o in body["orders"]] == [
        ("buy", "BTC/USDT", "0.08333", 201), ("buy", "ETH/USDT", "0.6666", 201)]
    assert all(o["order"]["status"] == "filled" and o["order"]["type"] == "market" for o in body["orders"])
    assert_within(await weights(client, auth, account), TARGET, "0.01")
    rows = await assert_ledger_consistent(runtime, account)
    assert rows["USDT"].free == Decimal(10000) - Decimal("0.08333") * 60000 * Decimal("1.001") \
        - Decimal("0.6666") * 3000 * Decimal("1.001")

    # a new target: BTC is sold first, then ETH bought with the proceeds
    second_target = {"BTC": "0.2", "ETH": "0.5", "USDT": "0.3"}
    again = await rebalance(client, auth, dry_run=False, target_allocation=second_target, tolerance="0.01")
    assert again.status_code == 200, again.text
    orders = again.json()["orders"]
    assert [(o["side"], o["symbol"]) for o in orders] == [("sell", "BTC/USDT"), ("buy", "ETH/USDT")]
    assert all(o["status_code"] == 201 and o["order"]["status"] == "filled" for o in orders)
    sell, buy = (o["order"] for o in orders)
    assert sell["created_at"] <= buy["created_at"]
    assert_within(await weights(client, auth, account), second_target, "0.01")
    await assert_ledger_consistent(runtime, account)

    # within the band: nothing to do
    idle = (await rebalance(client, auth, dry_run=False, target_allocation=second_target, tolerance="0.01")).json()
    assert idle["needs_rebalance"] is False and idle["orders"] == [] and idle["executed"] is False


async def test_a_dry_run_plans_and_places_nothing(client: httpx.AsyncClient, markets: dict[str, Market]) -> None:
    _, tokens = await new_user(client)
    auth = bearer(tokens)
    account = await default_account(client, tokens)
    answer = await rebalance(client, auth)  # dry_run is the default
    assert answer.status_code == 200, answer.text
    plan = answer.json()
    assert plan["dry_run"] is True and plan["executed"] is False and plan["needs_rebalance"] is True
    assert [(o["side"], o["symbol"], o["quantity"], o["status_code"]) for o in plan["orders"]] == [
        ("buy", "BTC/USDT", "0.08333", None), ("buy", "ETH/USDT", "0.6666", None)]
    assert plan["orders"][0]["estimated_price"] == "60000" and plan["orders"][0]["estimated_fee"] == "4.9998"
    assert plan["within_tolerance"] is True and Decimal(plan["cash_after"]) > 0
    assets = {a["asset"]: a for a in plan["assets"]}
    assert assets["USDT"]["weight"] == "1" and assets["BTC"]["weight"] == "0" and assets["BTC"]["target_weight"] == "0.5"
    assert assets["BTC"]["projected_weight"] == "0.500330211135" and assets["USDT"]["projected_quantity"] == "2993.4004"
    assert (await client.get(ORDERS, headers=auth)).json()["items"] == []
    assert await balances(client, tokens, account) == {"USDT": ("10000", "0")}


async def test_sells_come_first_and_unlisted_holdings_are_sold(client: httpx.AsyncClient, runtime: Runtime,
                                                               markets: dict[str, Market]) -> None:
    _, tokens = await new_user(client)
    auth = bearer(tokens)
    account = await default_account(client, tokens)
    deposit = await client.post(f"/api/trading/accounts/{account}/deposits", json={"asset": "BTC", "amount": "0.1"},
                                headers=auth)
    assert deposit.status_code == 201, deposit.text
    # 10,000 USDT + 6,000 of BTC → all in ETH but 10 % cash: BTC is sold, then ETH bought
    target = {"ETH": "0.9", "USDT": "0.1"}
    answer = await rebalance(client, auth, dry_run=False, target_allocation=target, tolerance="0.01")
    assert answer.status_code == 200, answer.text
    orders = answer.json()["orders"]
    assert (orders[0]["side"], orders[0]["symbol"], orders[0]["quantity"]) == ("sell", "BTC/USDT", "0.1")
    assert [o["side"] for o in orders] == ["sell", "buy"] and all(o["status_code"] == 201 for o in orders)
    assert_within(await weights(client, auth, account), target, "0.01")
    assert (await balances(client, tokens, account))["BTC"] == ("0", "0")
    await assert_ledger_consistent(runtime, account)


async def test_another_users_account_is_not_found(client: httpx.AsyncClient, markets: dict[str, Market]) -> None:
    _, mine = await new_user(client)
    _, theirs = await new_user(client)
    their_account = await default_account(client, theirs)
    for dry_run in (True, False):
        answer = await rebalance(client, bearer(mine), account_id=their_account, dry_run=dry_run)
        assert answer.status_code == 404 and answer.json()["code"] == "account_not_found"
    assert await balances(client, theirs, their_account) == {"USDT": ("10000", "0")}


@pytest.mark.parametrize(("target", "code"), [
    ({"BTC": "0.5", "ETH": "0.6"}, "weights_do_not_sum_to_one"),
    ({"BTC": "1.1", "USDT": "-0.1"}, "negative_weight"),
    ({"DOGE": "0.5", "USDT": "0.5"}, "unknown_asset"),
    ({}, "empty_target_allocation"),
])
async def test_bad_targets_are_422_with_stable_codes(client: httpx.AsyncClient, markets: dict[str, Market],
                                                     target: dict[str, str], code: str) -> None:
    _, tokens = await new_user(client)
    answer = await rebalance(client, bearer(tokens), target_allocation=target, dry_run=False)
    assert answer.status_code == 422 and answer.json()["code"] == code, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert (await client.get(ORDERS, headers=bearer(tokens))).json()["items"] == []


async def test_bad_bodies_are_422(client: httpx.AsyncClient, markets: dict[str, Market]) -> None:
    _, tokens = await new_user(client)
    for body in ({"target_allocation": TARGET, "tolerance": "1.5"},
                 {"target_allocation": {"BTC": 0.1, "USDT": 0.9}, "tolerance": 1e-40},
                 {"target_allocation": TARGET, "surprise": True}):
        answer = await client.post(REBALANCE, json=body, headers=bearer(tokens))
        assert answer.status_code == 422, answer.text


async def test_executing_needs_the_trade_scope(client: httpx.AsyncClient, markets: dict[str, Market]) -> None:
    _, tokens = await new_user(client)
    created = await client.post("/api/users/me/api-keys", json={"name": "ro", "scopes": ["read"]},
                                headers=bearer(tokens))
    key = {"X-API-Key": created.json()["key"]}
    assert (await rebalance(client, key)).status_code == 200  # a dry run only reads
    refused = await rebalance(client, key, dry_run=False)
    assert refused.status_code == 403 and refused.json()["code"] == "insufficient_scope"
    assert (await client.get(ORDERS, headers=key)).json()["items"] == []


async def test_a_retry_with_the_same_idempotency_key_trades_once(client: httpx.AsyncClient,
                                                                  markets: dict[str, Market]) -> None:
    _, tokens = await new_user(client)
    headers = {**bearer(tokens), "Idempotency-Key": "rebalance-once-1"}
    first = await rebalance(client, headers, dry_run=False)
    replay = await rebalance(client, headers, dry_run=False)
    assert first.status_code == replay.status_code == 200
    assert replay.headers.get("Idempotent-Replayed") == "true" and replay.json() == first.json()
    assert len((await client.get(ORDERS, headers=bearer(tokens))).json()["items"]) == 2
    reused = await rebalance(client, headers, dry_run=False, tolerance="0.02")
    assert reused.status_code == 422 and reused.json()["code"] == "idempotency_key_reused"


async def test_the_portfolio_manager_rebalances_through_the_same_service(
        client: httpx.AsyncClient, runtime: Runtime, markets: dict[str, Market]) -> None:
    from tradepilot.identity.principal import AuthUser
    from tradepilot.portfolio.manager import manager_of

    profile, tokens = await new_user(client)
    account = await default_account(client, tokens)
    principal = AuthUser(id=uuid.UUID(profile["id"]), email=profile["email"], role="user", plan="free",
                         scopes=frozenset({"read", "trade"}))
    manager = manager_of(runtime)
    target = {asset: Decimal(w) for asset, w in TARGET.items()}
    planned = await manager.rebalance_portfolio(principal, target)  # a dry run by default
    assert planned.outcomes is None and [o.side for o in planned.plan.orders] == ["buy", "buy"]
    done = await manager.rebalance_portfolio(principal, target, dry_run=False)
    assert done.outcomes is not None and all(o.status_code == 201 for o in done.outcomes)
    assert_within(await weights(client, bearer(tokens), account), TARGET, "0.01")
    assert await manager.calculate_portfolio_value(principal.id) > 0
