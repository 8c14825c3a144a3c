"""The risk assessment's figures, checked against numpy computed here and against their meaning."""

from __future__ import annotations

import numpy as np
import pytest

from tradepilot.ai.risk import assess_risk


def closes(seed: int, n: int = 400, assets: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 100 * np.exp(np.cumsum(rng.normal(0.0005, 0.03, (n, assets)), axis=0))


def test_var_cvar_volatility_and_drawdown_are_those_of_the_weighted_returns() -> None:
    prices = closes(1)
    weights = {"A": 0.5, "B": 0.3, "C": 0.2}
    answer = assess_risk(prices, ["A", "B", "C"], weights, level=0.95)
    r = (prices[1:] / prices[:-1] - 1) @ np.array([0.5, 0.3, 0.2])
    assert answer["observations"] == 399
    assert answer["value_at_risk"]["historical"] == pytest.approx(-np.percentile(r, 5), abs=1e-6)
    worst = np.sort(r)[: int(398 * 0.05) + 1]
    assert answer["conditional_value_at_risk"]["historical"] == pytest.approx(-worst.mean(), abs=1e-6)
    assert answer["conditional_value_at_risk"]["historical"] >= answer["value_at_risk"]["historical"]
    assert answer["volatility"] == pytest.approx(r.std(ddof=1) * np.sqrt(365), abs=1e-6)
    wealth = np.cumprod(1 + r)
    assert answer["drawdown"]["max"] == pytest.approx((wealth / np.maximum.accumulate(wealth) - 1).min(), abs=1e-6)
    assert answer["drawdown"]["worst_day"] == pytest.approx(r.min(), abs=1e-6)


def test_concentration_and_correlation() -> None:
    prices = closes(2)
    equal = assess_risk(prices, ["A", "B", "C"], {"A": 1, "B": 1, "C": 1})
    assert equal["concentration"]["herfindahl"] == pytest.approx(1 / 3, abs=1e-6)
    assert equal["concentration"]["effective_holdings"] == pytest.approx(3, abs=1e-5)
    single = assess_risk(prices, ["A", "B", "C"], {"A": 2})
    assert single["concentration"] == {"herfindahl": 1.0, "effective_holdings": 1.0, "largest_weight": 1.0,
                                            "largest": "A"}
    twins = np.column_stack([prices[:, 0], prices[:, 0] * 3])  # the same returns
    both = assess_risk(twins, ["A", "B"], {"A": 0.5, "B": 0.5})
    assert both["correlation"]["mean_pairwise"] == pytest.approx(1.0) and both["correlation"]["matrix"]["A"]["B"] == 1
    independent = assess_risk(prices, ["A", "B", "C"], {"A": 1, "B": 1, "C": 1})["correlation"]["mean_pairwise"]
    assert abs(independent) < 0.2


def test_changing_the_series_or_weights_changes_every_figure() -> None:
    base = assess_risk(closes(3), ["A", "B", "C"], {"A": 0.6, "B": 0.4})
    other = assess_risk(closes(4), ["A", "B", "C"], {"A": 0.6, "B": 0.4})
    for key in ("value_at_risk", "conditional_value_at_risk", "volatility", "correlation", "drawdown"):
        assert base[key] != other[key], key
    reweighted = assess_risk(closes(3), ["A", "B", "C"], {"A": 0.2, "B": 0.8})
    assert reweighted["value_at_risk"] != base["value_at_risk"] and reweighted["concentration"] != base["concentration"]


def test_nothing_to_assess() -> None:
    with pytest.raises(ValueError):
        assess_risk(closes(5), ["A", "B", "C"], {"A": 0})
