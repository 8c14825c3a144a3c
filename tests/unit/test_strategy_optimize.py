"""The optimiser on real hourly Coinbase bars: search space validation, samplers, objectives,
minimum trades, in-sample / out-of-sample windows and walk-forward (docs/strategies.md,
"Optimisation"). Every expectation is checked against backtests run directly."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tradepilot.cli import main
from tradepilot.core.errors import Unprocessable
from tradepilot.strategies.backtest import BacktestConfig, run_backtest
from tradepilot.strategies.bars import Bars
from tradepilot.strategies.base import StrategyParamsError
from tradepilot.strategies.catalog import build_strategy, get_strategy
from tradepilot.strategies.optimize.evaluate import Problem
from tradepilot.strategies.optimize.run import Optimizer, OptimizeSpec
from tradepilot.strategies.optimize.space import check_grid, parse_space
from tradepilot.strategies.optimize.study import open_storage
from tradepilot.strategies.optimize.windows import WindowError, make_windows

DATA = Path(__file__).resolve().parents[1] / "data" / "market" / "coinbase_btc_usd_1h" / "BTC_USD-1h-first720.csv"
CONFIG = BacktestConfig(initial_cash=10_000, maker_fee=0.001, taker_fee=0.001)
GRID = {"fast": {"low": 4, "high": 16, "step": 4}, "slow": {"low": 20, "high": 60, "step": 10}}


def coinbase_bars() -> Bars:
    with DATA.open() as handle:
        rows = list(csv.DictReader(handle))
    time = np.array([np.datetime64(r["timestamp"].rstrip("Z"), "ms").astype(np.int64) for r in rows])
    col = lambda name: np.array([float(r[name]) for r in rows])
    return Bars.from_arrays("BTC/USDT", time, col("open"), col("high"), col("low"), col("close"), col("volume"))


BARS = coinbase_bars()


def optimize(sampler: str = "grid", *, space: dict[str, Any] = GRID, n_trials: int | None = None, seed: int = 0,
             objective: str = "sharpe", min_trades: int = 0, windows: int = 1, in_sample: float = 0.7,
             bars: Bars = BARS, workers: int = 1) -> tuple[dict[str, Any], list[list[dict[str, Any]]]]:
    parsed = parse_space(get_strategy("sma_cross"), space)
    trials = n_trials or check_grid(parsed)
    defaults = get_strategy("sma_cross").parse_params({}).model_dump(mode="json")  # as a configuration stores them
    problem = Problem("sma_cross", defaults, [bars], CONFIG, objective, min_trades, "1h")  # type: ignore[arg-type]
    spec = OptimizeSpec(sampler, trials, seed, objective, min_trades, windows, in_sample,  # type: ignore[arg-type]
                        parsed)
    return Optimizer(problem, spec, open_storage(None), "test", workers=workers, worker_label="test").run()


def direct(params: dict[str, Any], start: int, stop: int) -> dict[str, float] | None:
    """The same trial through the backtester directly, or None if the parameters are invalid."""
    try:
        strategy = build_strategy("sma_cross", params)
    except StrategyParamsError:
        return None
    result = run_backtest(strategy, BARS.take(slice(start, stop)), CONFIG, timeframe="1h")
    m = result.metrics
    return {"sharpe": m.sharpe, "sortino": m.sortino, "calmar": m.calmar, "total_return": m.time_weighted_return,
            "trades": len(result.closed_trades)}


def grid_points() -> list[dict[str, int]]:
    return [{"fast": f, "slow": s} for f, s in itertools.product(range(4, 17, 4), range(20, 61, 10))]


# search space ------------------------------------------------------------------------------

def _errors(space: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(Unprocessable) as caught:
        parse_space(get_strategy("sma_cross"), space)
    assert caught.value.code == "invalid_search_space"
    return {e["field"]: e["message"] for e in caught.value.extra["errors"]}


def test_the_space_is_checked_against_the_strategys_parameter_model() -> None:
    assert set(_errors({"fastt": {"low": 1, "high": 3}})) == {"space.fastt"}
    assert "below low" in _errors({"fast": {"low": 30, "high": 10}})["space.fast.high"]
    assert "greater than or equal to 1" in _errors({"fast": {"low": 0, "high": 10}})["space.fast.low"]
    assert "integer" in _errors({"fast": {"low": 1.5, "high": 10}})["space.fast.low"]
    assert set(_errors({"fast": {"low": 1, "high": 10, "step": 0}})) == {"space.fast.step"}
    assert "multiple of step" in _errors({"fast": {"low": 1, "high": 10, "step": 2}})["space.fast.high"]
    assert "String should match pattern" in _errors({"source": {"choices": ["close", "volume"]}})[
        "space.source.choices.1"]
    assert set(_errors({"source": {"low": 1, "high": 2}})) == {"space.source"}  # not numeric
    assert set(_errors({"stop_loss": {"low": 0.01, "high": 1.5}})) == {"space.stop_loss.high"}  # lt=1
    assert set(_errors({})) == {"space."}
    every = _errors({"fast": {"low": 30, "high": 10}, "nope": {"choices": [1]}})
    assert set(every) == {"space.fast.high", "space.nope"}  # every problem at once
    space = parse_space(get_strategy("sma_cross"), {"stop_loss": {"low": 0.01, "high": 0.05, "step": 0.01},
                                                    "source": {"choices": ["close", "open"]}})
    assert space.grid() == {"stop_loss": [0.01, 0.02, 0.03, 0.04, 0.05], "source": ["close", "open"]}
    with pytest.raises(Unprocessable) as caught:
        check_grid(parse_space(get_strategy("sma_cross"), {"stop_loss": {"low": 0.01, "high": 0.05}}))
    assert caught.value.code == "grid_needs_step"
    assert caught.value.extra["errors"][0]["field"] == "space.stop_loss.step"


# samplers ----------------------------------------------------------------------------------

def test_the_grid_sampler_covers_exactly_the_grid_and_finds_the_best_point() -> None:
    report, trials = optimize("grid")
    window = report["windows"][0]
    assert sorted((t["params"]["fast"], t["params"]["slow"]) for t in trials[0]) == \
        sorted((p["fast"], p["slow"]) for p in grid_points())  # every point once, nothing else
    start, stop = 0, window["in_sample"]["bars"]
    expected = {(p["fast"], p["slow"]): direct(p, start, stop) for p in grid_points()}
    for t in trials[0]:
        figures = expected[(t["params"]["fast"], t["params"]["slow"])]
        assert t["outcome"] == ("invalid" if figures is None else "complete")
        if figures is not None:
            assert t["value"] == pytest.approx(figures["sharpe"], rel=1e-12) and t["trades"] == figures["trades"]
    best = max((v["sharpe"], k) for k, v in expected.items() if v is not None)
    assert (window["best_params"]["fast"], window["best_params"]["slow"]) == best[1]
    assert window["trials"] == {"total": 20, "complete": 20, "infeasible": 0, "invalid": 0}


def test_a_seeded_tpe_run_is_reproducible_and_the_seed_matters() -> None:
    space = {"fast": {"low": 2, "high": 30}, "slow": {"low": 31, "high": 120}}
    one, trials_one = optimize("tpe", space=space, n_trials=25, seed=11)
    two, trials_two = optimize("tpe", space=space, n_trials=25, seed=11)
    _other, trials_other = optimize("tpe", space=space, n_trials=25, seed=12)
    assert [t["params"] for t in trials_one[0]] == [t["params"] for t in trials_two[0]]
    assert one == two
    assert [t["params"] for t in trials_one[0]] != [t["params"] for t in trials_other[0]]
    rnd, rnd_trials = optimize("random", space=space, n_trials=10, seed=3)
    assert [t["params"] for t in rnd_trials[0]] == [t["params"] for t in optimize(
        "random", space=space, n_trials=10, seed=3)[1][0]]
    assert len(rnd_trials[0]) == 10 and rnd["windows"][0]["trials"]["total"] == 10


def test_the_objective_chooses_the_best_parameters() -> None:
    space = {"fast": {"low": 2, "high": 10, "step": 2}, "slow": {"choices": [12, 16, 20, 24, 30, 40]},
             "take_profit": {"choices": [None, 0.01, 0.03]}}
    points = [{"fast": f, "slow": s, "take_profit": tp}
              for f, s, tp in itertools.product(range(2, 11, 2), [12, 16, 20, 24, 30, 40], [None, 0.01, 0.03])]
    bests = {}
    for objective in ("sharpe", "sortino", "total_return", "calmar"):
        report, _ = optimize("grid", space=space, objective=objective)
        window = report["windows"][0]
        figures = [(p, direct(p, 0, window["in_sample"]["bars"])) for p in points]
        top = max(f[objective] for _, f in figures if f is not None and np.isfinite(f[objective]))
        winners = [p for p, f in figures if f is not None and f[objective] == top]
        best = {k: window["best_params"][k] for k in ("fast", "slow", "take_profit")}
        assert best in winners, objective
        assert window["in_sample_metrics"]["objective"] == pytest.approx(top, rel=1e-12)
        bests[objective] = best
    # on these bars a take-profit lifts Sortino (fewer losing bars) but not Sharpe
    assert bests["sharpe"] == {"fast": 8, "slow": 24, "take_profit": None}
    assert bests["sortino"] == {"fast": 6, "slow": 30, "take_profit": 0.03}


def test_trials_below_the_minimum_trades_are_infeasible_and_never_best() -> None:
    report, trials = optimize("grid", min_trades=5)
    window = report["windows"][0]
    counts = {(t["params"]["fast"], t["params"]["slow"]): t["trades"] for t in trials[0]}
    few = [k for k, n in counts.items() if n < 5]
    assert few and len(few) < len(counts)  # the rule bites, and leaves candidates
    assert window["trials"]["infeasible"] == len(few)
    assert all(t["outcome"] == "infeasible" and "fewer than 5" in t["reason"] for t in trials[0]
               if (t["params"]["fast"], t["params"]["slow"]) in few)
    assert window["in_sample_metrics"]["trades"] >= 5
    nothing, _ = optimize("grid", min_trades=10_000)
    assert nothing["windows"][0]["best_params"] is None and nothing["best_params"] is None
    assert nothing["windows"][0]["trials"]["infeasible"] == 20
    assert nothing["aggregate"]["windows_with_result"] == 0


# windows -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("bars", "k", "share"), [(720, 1, 0.7), (720, 4, 0.75), (1000, 3, 0.5), (5000, 20, 0.9)])
def test_walk_forward_windows_tile_the_end_and_never_look_ahead(bars: int, k: int, share: float) -> None:
    windows = make_windows(bars, k, share)
    assert len(windows) == k and windows[-1].out_of_sample[1] == bars
    for w in windows:
        assert w.in_sample[1] == w.out_of_sample[0]  # judged right after what it learned from
        assert w.in_sample[1] - w.in_sample[0] >= share / (1 - share) * (w.out_of_sample[1] - w.out_of_sample[0]) - 1
    for a, b in itertools.pairwise(windows):
        assert a.out_of_sample[1] == b.out_of_sample[0]  # contiguous, no overlap
        assert b.in_sample[0] > a.in_sample[0]  # rolling
    with pytest.raises(WindowError):
        make_windows(100, 10, 0.7)


def test_a_walk_forward_reports_in_and_out_of_sample_side_by_side() -> None:
    report, trials = optimize("grid", windows=3, in_sample=0.6)
    windows = make_windows(len(BARS), 3, 0.6)
    assert [len(t) for t in trials] == [20, 20, 20]
    for row, w in zip(report["windows"], windows, strict=True):
        params = {"fast": row["best_params"]["fast"], "slow": row["best_params"]["slow"]}
        ins, oos = direct(params, *w.in_sample), direct(params, *w.out_of_sample)
        assert row["in_sample_metrics"]["sharpe"] == pytest.approx(ins["sharpe"], rel=1e-12)
        assert row["out_of_sample_metrics"]["total_return"] == pytest.approx(oos["total_return"], rel=1e-12)
        assert row["out_of_sample_metrics"]["trades"] == oos["trades"]
        assert row["out_of_sample"]["bars"] == w.out_of_sample[1] - w.out_of_sample[0]
        assert row["in_sample"]["end"] < row["out_of_sample"]["start"]
    agg = report["aggregate"]
    compounded = np.prod([1 + r["out_of_sample_metrics"]["total_return"] for r in report["windows"]]) - 1
    assert agg["out_of_sample_total_return"] == pytest.approx(compounded)
    assert agg["in_sample_objective_mean"] == pytest.approx(
        np.mean([r["in_sample_metrics"]["sharpe"] for r in report["windows"]]))
    assert report["best_params"] == report["windows"][-1]["best_params"]


def test_optimising_a_window_never_reads_the_bars_after_it() -> None:
    """Scramble every bar after window 0's in-sample part: its trials and best stay the same."""
    w0 = make_windows(len(BARS), 2, 0.7)[0]
    cut = w0.in_sample[1]
    rng = np.random.default_rng(5)
    factor = np.concatenate([np.ones(cut), rng.uniform(0.5, 1.5, len(BARS) - cut)])
    scrambled = Bars.from_arrays("BTC/USDT", BARS.time, BARS.open * factor, BARS.high * factor, BARS.low * factor,
                                 BARS.close * factor, BARS.volume)
    clean_report, clean_trials = optimize("tpe", space=GRID, n_trials=15, windows=2, seed=4)
    dirty_report, dirty_trials = optimize("tpe", space=GRID, n_trials=15, windows=2, seed=4, bars=scrambled)
    assert clean_trials[0] == dirty_trials[0]
    assert clean_report["windows"][0]["best_params"] == dirty_report["windows"][0]["best_params"]
    assert clean_report["windows"][0]["out_of_sample_metrics"] != dirty_report["windows"][0]["out_of_sample_metrics"]


def test_trials_on_two_processes_give_the_grids_figures() -> None:
    one, trials_one = optimize("grid", windows=2)
    two, trials_two = optimize("grid", windows=2, workers=2)
    key = lambda rows: sorted((t["params"]["fast"], t["params"]["slow"], t["value"]) for t in rows)
    assert [key(t) for t in trials_one] == [key(t) for t in trials_two]
    assert one["windows"] == two["windows"]


def test_the_cli_prints_the_in_and_out_of_sample_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TRADEPILOT_DATA_DIR", str(tmp_path / "var"))
    assert main(["data", "import", str(DATA), "--symbol", "BTC/USDT", "--timeframe", "1h", "--venue", "bt",
                 "--no-derive"]) == 0
    capsys.readouterr()
    args = ["optimize", "--strategy", "sma_cross", "--symbol", "BTC/USDT", "--timeframe", "1h", "--venue", "bt",
            "--param-range", "fast=4:16:4", "--param-range", "slow=20:60:10", "--sampler", "grid",
            "--walk-forward", "2", "--objective", "sharpe", "--taker-fee", "0.001", "--maker-fee", "0.001"]
    assert main(args) == 0
    table = capsys.readouterr().out
    report, _ = optimize("grid", windows=2)
    lines = table.splitlines()
    assert "IS sharpe" in lines[0] and "OOS sharpe" in lines[0]
    for row, line in zip(report["windows"], lines[1:3], strict=True):
        assert f"{row['in_sample_metrics']['sharpe']:.3f}" in line
        assert f"{row['out_of_sample_metrics']['sharpe']:.3f}" in line
        assert str({"fast": row["best_params"]["fast"], "slow": row["best_params"]["slow"]}) in line
    assert lines[-1] == f"best parameters (last window): {json.dumps(report['best_params'])}"
    assert main([*args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["windows"] == report["windows"]
    bad = main(["optimize", "--strategy", "sma_cross", "--symbol", "BTC/USDT", "--timeframe", "1h", "--venue", "bt",
                "--param-range", "fsat=1:5"])
    assert bad == 2 and "space.fsat" in capsys.readouterr().err
