"""Trade de-duplication and gap detection of the exchange feed (market/feeds/ccxt_trades.py)."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from tradepilot.market.feeds.ccxt_trades import TradeSequencer, trade_from_ccxt, trade_order
from tradepilot.market.types import Trade

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def trade(trade_id: str, symbol: str = "BTC/USDT") -> Trade:
    return Trade("binance", symbol, trade_id, Decimal(1), Decimal(1), "buy", NOW)


def test_consecutive_ids_reveal_gaps_and_repeats() -> None:
    seq = TradeSequencer(sequential_ids=True)
    assert seq.check(trade("10")) == (True, None)
    assert seq.check(trade("11")) == (True, None)
    assert seq.check(trade("11")) == (False, None)  # a repeat (reconnect, overlapping poll)
    assert seq.check(trade("9")) == (False, None)
    assert seq.check(trade("15")) == (True, (11, 15))  # 12..14 missed
    assert seq.check(trade("1", symbol="ETH/USDT")) == (True, None)  # per symbol


def test_other_ids_are_only_deduplicated_within_a_window() -> None:
    seq = TradeSequencer(sequential_ids=False, remember=2)
    assert seq.check(trade("a")) == (True, None)
    assert seq.check(trade("a")) == (False, None)
    seq.check(trade("b"))
    seq.check(trade("c"))  # "a" falls out of the window
    assert seq.check(trade("a")) == (True, None)


def test_ccxt_trades_convert_exactly() -> None:
    raw = {"id": "42", "price": 61837.63, "amount": 0.00032, "side": "sell", "timestamp": 1723161255342}
    assert trade_from_ccxt("binance", "BTC/USDT", raw, NOW) == Trade(
        "binance", "BTC/USDT", "42", Decimal("61837.63"), Decimal("0.00032"), "sell",
        datetime(2024, 8, 8, 23, 54, 15, 342000, tzinfo=timezone.utc))
    assert trade_from_ccxt("binance", "BTC/USDT", {**raw, "timestamp": None}, NOW).ts == NOW  # type: ignore[union-attr]
    assert trade_from_ccxt("binance", "BTC/USDT", {**raw, "price": None}, NOW) is None
    assert sorted([{"id": "10", "timestamp": 5}, {"id": "9", "timestamp": 5}, {"id": "11", "timestamp": 4}],
                  key=trade_order) == [{"id": "11", "timestamp": 4}, {"id": "9", "timestamp": 5},
                                       {"id": "10", "timestamp": 5}]
