"""The ledger replay behind the equity history: exact figures from postings and closes."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from tradepilot.portfolio.equity_replay import DailyCloses, FillMove, LedgerMove, replay

D = Decimal
MON = date(2026, 3, 2)
TUE, WED, THU = (MON + timedelta(days=i) for i in (1, 2, 3))


def moves(*rows: tuple[int, date, str, str, str]) -> list[LedgerMove]:
    return [LedgerMove(seq=s, day=d, asset=a, bucket=b, amount=D(x)) for s, d, a, b, x in rows]


def closes(**by_day: dict[date, str]) -> DailyCloses:
    book = DailyCloses()
    for symbol, days in by_day.items():
        for day, close in days.items():
            book.add(symbol.replace("_", "/"), day, D(close))
    return book


def test_deposit_trade_fee_and_flows_day_by_day() -> None:
    ledger = moves(
        (1, MON, "USDT", "external", "-1000"), (1, MON, "USDT", "free", "1000"),  # deposit
        # buy 1 BTC at 500 with a 0.5 USDT fee (reserve, then settle)
        (2, TUE, "USDT", "free", "-500.5"), (2, TUE, "USDT", "locked", "500.5"),
        (3, TUE, "USDT", "locked", "-500.5"), (3, TUE, "USDT", "market", "500"), (3, TUE, "USDT", "fees", "0.5"),
        (3, TUE, "BTC", "market", "-1"), (3, TUE, "BTC", "free", "1"),
        (4, WED, "BTC", "free", "-0.1"), (4, WED, "BTC", "external", "0.1"),  # withdraw 0.1 BTC
    )
    book = closes(BTC_USDT={MON: "480", TUE: "510", WED: "520"})
    days = replay(currency="USDT", holdings={}, ledger_seq=0, first_day=MON, last_day=THU, moves=ledger,
                  fills=[FillMove(day=TUE, quote_asset="USDT", realised_pnl=None)], price_on=book.price_on)
    assert [d.day for d in days] == [MON, TUE, WED, THU]
    mon, tue, wed, thu = days
    assert (mon.equity, mon.cash, mon.net_flows, mon.ledger_seq) == (D("1000"), D("1000"), D("1000"), 1)
    assert tue.cash == D("499.5") and tue.positions_value == D("510") and tue.equity == D("1009.5")
    assert tue.fees == D("0.5") and tue.trades == 1 and tue.net_flows == 0 and tue.ledger_seq == 3
    assert wed.holdings == {"USDT": D("499.5"), "BTC": D("0.9")}
    assert wed.net_flows == D("-52.0") and wed.equity == D("499.5") + D("0.9") * 520
    # no close on Thursday: Wednesday's is carried forward; nothing moved
    assert thu.equity == wed.equity and thu.net_flows == 0 and thu.ledger_seq == 4
    assert thu.values == {"USDT": D("499.5"), "BTC": D("468.0")}


def test_a_replay_resumes_from_a_final_row_and_never_drops_a_late_transaction() -> None:
    ledger = moves((7, MON, "USDT", "external", "-5"), (7, MON, "USDT", "free", "5"),  # committed late
                   (6, MON, "USDT", "free", "-1"), (6, MON, "USDT", "fees", "1"))  # already in the row
    days = replay(currency="USDT", holdings={"USDT": D("100")}, ledger_seq=6, first_day=TUE, last_day=TUE,
                  moves=ledger, fills=[], price_on=DailyCloses().price_on)
    assert len(days) == 1 and days[0].equity == D("105") and days[0].net_flows == D("5") and days[0].fees == 0


def test_unpriced_assets_are_named_not_guessed_and_realised_pnl_is_converted() -> None:
    ledger = moves((1, MON, "ZZZ", "external", "-3"), (1, MON, "ZZZ", "free", "3"),
                   (2, MON, "USDT", "external", "-10"), (2, MON, "USDT", "free", "10"))
    fills = [FillMove(day=MON, quote_asset="USDT", realised_pnl=D("2.5")),
             FillMove(day=MON, quote_asset="USDT", realised_pnl=D("-1"))]
    (mon,) = replay(currency="USDT", holdings={}, ledger_seq=0, first_day=MON, last_day=MON, moves=ledger,
                    fills=fills, price_on=DailyCloses().price_on)
    assert mon.unpriced == ["ZZZ"] and mon.equity == D("10") and mon.net_flows == D("10")
    assert mon.realised_pnl == D("1.5") and mon.trades == 2


def test_closes_carry_forward_and_today_uses_live_prices() -> None:
    book = closes(ETH_USDT={MON: "3000", WED: "3100"})
    book.set_live(THU, {"ETH/USDT": D("3150")})
    assert book.price_on("ETH/USDT", MON - timedelta(days=1)) is None
    assert book.price_on("ETH/USDT", TUE) == D("3000")
    assert book.price_on("ETH/USDT", WED) == D("3100")
    assert book.price_on("ETH/USDT", THU) == D("3150")
    book.add("ETH/USDT", WED, D("9999"), overwrite=False)  # a fill price never replaces a close
    assert book.price_on("ETH/USDT", WED) == D("3100")
