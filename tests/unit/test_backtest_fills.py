"""The backtester's fill rules on bars built by hand (docs/strategies.md, "Fill rules")."""

from __future__ import annotations

import numpy as np
import pytest

from tradepilot.strategies.backtest import BacktestConfig, run_backtest
from tradepilot.strategies.backtest.broker import Broker
from tradepilot.strategies.base import EventStrategy, OrderRequest, SignalStrategy, Signals, StrategyContext
from tradepilot.strategies.bars import Bars

HOUR = 3_600_000


def bars(rows: list[tuple[float, float, float, float]], symbol: str = "BTC/USDT", volume: float = 1e9) -> Bars:
    o, h, lo, c = (np.array(col, dtype=float) for col in zip(*rows, strict=True))
    return Bars.from_arrays(symbol, np.arange(len(rows)) * HOUR, o, h, lo, c, np.full(len(rows), volume))


class Fixed(SignalStrategy):
    """Signals given by the test: entry/exit bar indices and protective exits."""

    name = "fixed"
    title = "fixed"
    Params = __import__("tradepilot.strategies.base", fromlist=["StrategyParams"]).StrategyParams

    def __init__(self, entries: list[int], exits: list[int], **risk: float) -> None:
        super().__init__({})
        self.entry_at, self.exit_at, self.risk = entries, exits, risk

    def signals(self, b: Bars) -> Signals:
        e, x = np.zeros(len(b), bool), np.zeros(len(b), bool)
        e[self.entry_at], x[self.exit_at] = True, True
        return Signals(e, x, **self.risk)


class Script(EventStrategy):
    """Submits the given orders on the given bars."""

    name = "script"
    title = "script"
    Params = Fixed.Params

    def __init__(self, plan: dict[int, list[OrderRequest]]) -> None:
        super().__init__({})
        self.plan = plan
        self.fills: list[tuple[int, float]] = []

    def on_bar(self, ctx: StrategyContext, i: int) -> None:
        for order in self.plan.get(i, []):
            ctx.submit(order)

    def on_fill(self, ctx: StrategyContext, fill) -> None:  # type: ignore[no-untyped-def]
        self.fills.append((fill.order_id, fill.price))


FLAT = [(100, 101, 99, 100)] * 2
NO_FEES = BacktestConfig(initial_cash=1_000, maker_fee=0, taker_fee=0)


@pytest.mark.parametrize("path", ["fast", "events"])
def test_market_orders_fill_at_the_next_open_with_slippage_and_taker_fee(path: str) -> None:
    b = bars([(100, 101, 99, 100), (110, 111, 109, 110), (120, 121, 119, 120), (130, 131, 129, 130)])
    config = BacktestConfig(initial_cash=1_000, maker_fee=0.0005, taker_fee=0.002, slippage=0.01)
    r = run_backtest(Fixed([0], [1]), b, config, path=path)
    buy, sell = r.fills.rows()
    assert (buy.index, buy.price) == (1, pytest.approx(110 * 1.01))
    assert (sell.index, sell.price) == (2, pytest.approx(120 * 0.99))
    assert buy.quantity == pytest.approx(1_000 / (110 * 1.01 * 1.002))
    assert buy.fee == pytest.approx(buy.price * buy.quantity * 0.002)  # taker
    assert not buy.maker and not sell.maker
    expected_cash = 1_000 - buy.price * buy.quantity - buy.fee + sell.price * sell.quantity - sell.fee
    assert r.final_equity == pytest.approx(expected_cash)
    assert r.closed_trades[0].pnl == pytest.approx(expected_cash - 1_000)


@pytest.mark.parametrize("path", ["fast", "events"])
def test_stop_loss_and_take_profit_in_one_bar_assume_the_stop_loss_first(path: str) -> None:
    # entry at 100 (bar 1 open); bar 2 reaches both 95 (SL 5 %) and 110 (TP 10 %)
    b = bars([(100, 100, 100, 100), (100, 101, 99, 100), (100, 111, 94, 100), (100, 100, 100, 100)])
    r = run_backtest(Fixed([0], [], stop_loss=0.05, take_profit=0.10), b, NO_FEES, path=path)
    sell = r.fills.rows()[1]
    assert (sell.index, sell.price, sell.role) == (2, pytest.approx(95.0), "stop_loss")


@pytest.mark.parametrize("path", ["fast", "events"])
def test_take_profit_reached_at_the_open_wins_and_fills_at_its_price_as_maker(path: str) -> None:
    b = bars([(100, 100, 100, 100), (100, 101, 99, 100), (112, 113, 90, 100), (100, 100, 100, 100)])
    config = BacktestConfig(initial_cash=1_000, maker_fee=0.0002, taker_fee=0.001)
    r = run_backtest(Fixed([0], [], stop_loss=0.05, take_profit=0.10), b, config, path=path)
    sell = r.fills.rows()[1]
    assert (sell.index, sell.price, sell.role, sell.maker) == (2, pytest.approx(110.0), "take_profit", True)
    assert sell.fee == pytest.approx(110.0 * sell.quantity * 0.0002)


@pytest.mark.parametrize("path", ["fast", "events"])
def test_stop_loss_gapped_through_fills_at_the_open(path: str) -> None:
    b = bars([(100, 100, 100, 100), (100, 101, 99, 100), (90, 92, 88, 91), (100, 100, 100, 100)])
    r = run_backtest(Fixed([0], [], stop_loss=0.05), b, NO_FEES, path=path)
    assert r.fills.rows()[1].price == pytest.approx(90.0)


@pytest.mark.parametrize("path", ["fast", "events"])
def test_stop_loss_can_fill_on_the_entry_bar(path: str) -> None:
    b = bars([(100, 100, 100, 100), (100, 101, 94, 96), (100, 100, 100, 100)])
    r = run_backtest(Fixed([0], [], stop_loss=0.05), b, NO_FEES, path=path)
    assert [(f.index, f.price) for f in r.fills.rows()] == [(1, 100.0), (1, pytest.approx(95.0))]


@pytest.mark.parametrize("path", ["fast", "events"])
def test_trailing_stop_follows_the_highs_of_earlier_bars(path: str) -> None:
    # entry 100; highs 120 then 130: the level is 117 on bar 3 (from bar 2's high 130)
    b = bars([(100, 100, 100, 100), (100, 120, 99, 118), (118, 130, 117.5, 128), (128, 129, 110, 112),
              (112, 112, 112, 112)])
    r = run_backtest(Fixed([0], [], trailing_stop=0.1), b, NO_FEES, path=path)
    sell = r.fills.rows()[1]
    assert (sell.index, sell.price, sell.role) == (3, pytest.approx(117.0), "trailing_stop")


def test_limit_and_stop_orders_fill_inside_the_bar_at_their_price() -> None:
    b = bars([(100, 101, 99, 100), (100, 101, 95, 98), (98, 106, 97, 105), (105, 106, 104, 105)])
    plan = {0: [OrderRequest("BTC/USDT", "buy", "limit", quantity=1, price=96, tag="limit"),
                OrderRequest("BTC/USDT", "buy", "stop", quantity=1, stop_price=104, tag="stop")]}
    s = Script(plan)
    r = run_backtest(s, b, BacktestConfig(initial_cash=1_000, maker_fee=0.001, taker_fee=0.002))
    fills = r.fills.rows()
    assert [(f.tag, f.index, f.price, f.maker) for f in fills] == [("limit", 1, 96.0, True), ("stop", 2, 104.0, False)]
    assert fills[0].fee == pytest.approx(96 * 0.001) and fills[1].fee == pytest.approx(104 * 0.002)


def test_an_arriving_marketable_limit_takes_at_the_open() -> None:
    b = bars([(100, 101, 99, 100), (100, 101, 95, 98), (98, 99, 97, 98)])
    r = run_backtest(Script({0: [OrderRequest("BTC/USDT", "buy", "limit", quantity=1, price=102)]}), b, NO_FEES)
    fill = r.fills.rows()[0]
    assert (fill.index, fill.price, fill.maker) == (1, 100.0, False)


def test_stop_limit_triggered_beyond_its_limit_rests_from_the_next_bar() -> None:
    # buy stop 105 limit 104: bar 1 gaps to 107 (trigger, not fillable), bar 2 trades down to 103
    b = bars([(100, 101, 99, 100), (107, 108, 103, 106), (105, 106, 103, 104), (104, 104, 104, 104)])
    order = OrderRequest("BTC/USDT", "buy", "stop_limit", quantity=1, price=104, stop_price=105)
    r = run_backtest(Script({0: [order]}), b, NO_FEES)
    fill = r.fills.rows()[0]
    assert (fill.index, fill.price, fill.maker) == (2, 104.0, True)


def test_volume_cap_spreads_a_market_order_over_bars() -> None:
    b = bars([(100, 101, 99, 100)] * 4, volume=10.0)
    config = BacktestConfig(initial_cash=10_000, maker_fee=0, taker_fee=0, volume_cap=0.25)
    r = run_backtest(Script({0: [OrderRequest("BTC/USDT", "buy", quantity=6)]}), b, config)
    assert [(f.index, f.quantity) for f in r.fills.rows()] == [(1, 2.5), (2, 2.5), (3, 1.0)]
    assert r.orders[0].status == "filled"


def test_several_symbols_share_one_cash_balance() -> None:
    btc = bars([(100, 101, 99, 100)] * 3, "BTC/USDT")
    eth = bars([(10, 11, 9, 10)] * 3, "ETH/USDT")
    plan = {0: [OrderRequest("BTC/USDT", "buy", fraction=0.6), OrderRequest("ETH/USDT", "buy", fraction=0.6)]}
    r = run_backtest(Script(plan), [btc, eth], NO_FEES)
    btc_fill, eth_fill = r.fills.rows()
    assert btc_fill.quantity == pytest.approx(6.0)  # 60 % of 1,000 at 100
    assert eth_fill.quantity * 10 == pytest.approx(400.0)  # only the 400 left, not 60 % of equity
    assert r.cash[-1] == pytest.approx(0.0, abs=1e-9)
    assert r.final_equity == pytest.approx(1_000.0)


def test_a_buy_never_spends_more_than_the_cash_and_a_sell_never_exceeds_the_position() -> None:
    b = bars(FLAT * 3)
    plan = {0: [OrderRequest("BTC/USDT", "buy", quantity=50)], 2: [OrderRequest("BTC/USDT", "sell", quantity=99)]}
    r = run_backtest(Script(plan), b, BacktestConfig(initial_cash=1_000, maker_fee=0, taker_fee=0.001))
    buy, sell = r.fills.rows()
    assert buy.quantity * buy.price + buy.fee == pytest.approx(1_000.0)
    assert sell.quantity == pytest.approx(buy.quantity)
    assert r.positions["BTC/USDT"][-1] == pytest.approx(0.0)


def test_orders_of_a_symbol_outside_the_backtest_are_refused() -> None:
    broker = Broker([bars(FLAT)], NO_FEES)
    with pytest.raises(ValueError, match="unknown symbol"):
        broker.submit(OrderRequest("ETH/USDT", "buy", quantity=1))
