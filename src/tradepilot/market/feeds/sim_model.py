"""The simulated market's price process, and the history it back-fills.

One-minute log returns follow a factor model with stochastic volatility:

    r[i,t] = sigma[i,t] * (beta_i * f[t] + sqrt(1 - beta_i^2) * e[i,t])
    log(sigma[i,t] / sigma_i) = sum_c sqrt(v[i,c]) * (rho * C[c,t] + sqrt(1 - rho^2) * O[i,c,t]) - sum_c v[i,c]

``f`` (the market) and ``e`` (each symbol's own news) are standardised Student-t draws: fat
tails. ``C`` (shared by all symbols: crypto volatility moves together) and ``O`` (each
symbol's own) are unit-variance AR(1) processes with persistence 0.6 (minutes), 0.995
(hours) and 0.99993 (days): volatility clusters, so |r| is autocorrelated, strongly at lag
1 and decaying over tens of minutes, as in real 1m data. The AR(1) recursions run through
``scipy.signal.lfilter`` (C speed), so two years of minutes for four symbols take about a
second. Parameters were calibrated on Coinbase's BTC/ETH 1m bars (docs/market-data.md).

Within a bar, the high and the low are draws of the extremes of a Brownian bridge from the
open to the close with the bar's variance (exact for a Brownian path), so range-based
volatility estimators (Parkinson, Garman-Klass) agree with close-to-close ones.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
from scipy.signal import lfilter

from tradepilot.market.frame import BarFrame, decimal_scale

PERSISTENCE = (0.6, 0.995, 0.99993)
COMMON_VOL_SHARE = 0.8  # rho: how much of each volatility component is shared
FACTOR_NU = 8.0  # tails of the market factor
NORMAL_NU = 100.0  # at or above this, innovations are Gaussian
MINUTE_MS = 60_000


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """What the simulated venue lists, and how each symbol moves."""

    symbol: str
    price: Decimal  # where the market stands at the end of the back-fill (first start)
    tick_size: Decimal
    step_size: Decimal
    min_notional: Decimal
    sigma: float  # typical 1m return standard deviation
    nu: float  # Student-t degrees of freedom of the symbol's own shocks
    vol_var: tuple[float, float, float]  # variance of log-volatility per component
    beta: float  # loading on the market factor
    volume_per_minute: float  # typical base-currency volume of a minute

    @property
    def base(self) -> str:
        return self.symbol.split("/")[0]

    @property
    def quote(self) -> str:
        return self.symbol.split("/")[1]


def _d(value: str) -> Decimal:
    return Decimal(value)


KNOWN_SPECS: dict[str, SymbolSpec] = {
    s.symbol: s
    for s in (
        SymbolSpec("BTC/USDT", _d("65000"), _d("0.01"), _d("0.00001"), _d("5"), 0.0009, 5.0,
                   (0.45, 0.07, 0.03), 0.90, 12.0),
        SymbolSpec("ETH/USDT", _d("3200"), _d("0.01"), _d("0.0001"), _d("5"), 0.0011, NORMAL_NU,
                   (0.20, 0.045, 0.02), 0.90, 150.0),
        SymbolSpec("SOL/USDT", _d("150"), _d("0.01"), _d("0.001"), _d("5"), 0.0016, 6.0,
                   (0.30, 0.06, 0.03), 0.80, 2000.0),
        SymbolSpec("BNB/USDT", _d("580"), _d("0.01"), _d("0.001"), _d("5"), 0.0011, 6.0,
                   (0.30, 0.06, 0.03), 0.75, 300.0),
    )
}


def spec_for(symbol: str) -> SymbolSpec:
    """The known spec, or a plausible one derived from the symbol's name (stable across runs)."""
    if symbol in KNOWN_SPECS:
        return KNOWN_SPECS[symbol]
    digest = int.from_bytes(hashlib.sha256(symbol.encode()).digest()[:8], "big")
    price = Decimal(10 + digest % 990)  # 10 .. 999
    magnitude = int(math.floor(math.log10(float(price))))
    tick = Decimal(1).scaleb(magnitude - 5)
    step = Decimal(1).scaleb(-min(8, max(0, 3 + magnitude - 1)))
    return SymbolSpec(symbol, price, tick, step, _d("5"), 0.0015, 6.0, (0.30, 0.06, 0.03), 0.70,
                      float(20000 / float(price)))


@dataclass
class ModelState:
    """The volatility components at the last simulated minute (unit variance each)."""

    common: np.ndarray  # (3,)
    own: np.ndarray  # (symbols, 3)


@dataclass
class ReturnModel:
    specs: list[SymbolSpec]
    sigma: np.ndarray = field(init=False)
    beta: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.sigma = np.array([s.sigma for s in self.specs])
        self.beta = np.array([s.beta for s in self.specs])
        self._sqrt_var = np.sqrt(np.array([s.vol_var for s in self.specs]))  # (k, 3)
        self._total_var = np.array([sum(s.vol_var) for s in self.specs])

    def initial_state(self, rng: np.random.Generator) -> ModelState:
        """A draw from the stationary distribution."""
        return ModelState(rng.standard_normal(3), rng.standard_normal((len(self.specs), 3)))

    def simulate(self, n: int, rng: np.random.Generator,
                 state: ModelState) -> tuple[np.ndarray, np.ndarray, ModelState]:
        """``n`` minutes: returns and volatilities, both ``(symbols, n)``, and the new state."""
        k = len(self.specs)
        rho = COMMON_VOL_SHARE
        log_vol = np.zeros((k, n))
        common_end = np.empty(3)
        own_end = np.empty((k, 3))
        for c, phi in enumerate(PERSISTENCE):
            common = _ar1(phi, n, rng, state.common[c])
            common_end[c] = common[-1]
            for i in range(k):
                own = _ar1(phi, n, rng, state.own[i, c])
                own_end[i, c] = own[-1]
                log_vol[i] += self._sqrt_var[i, c] * (rho * common + math.sqrt(1 - rho * rho) * own)
        sigma = self.sigma[:, None] * np.exp(log_vol - self._total_var[:, None])
        market = _student(FACTOR_NU, n, rng)
        shocks = np.vstack([_student(s.nu, n, rng) for s in self.specs])
        beta = self.beta[:, None]
        returns = sigma * (beta * market[None, :] + np.sqrt(1 - beta * beta) * shocks)
        return returns, sigma, ModelState(common_end, own_end)


def _ar1(phi: float, n: int, rng: np.random.Generator, previous: float) -> np.ndarray:
    """x[t] = phi x[t-1] + e[t], unit stationary variance, continuing from ``previous``."""
    noise = rng.standard_normal(n) * math.sqrt(1 - phi * phi)
    out, _ = lfilter([1.0], [1.0, -phi], noise, zi=[phi * previous])
    return out  # type: ignore[no-any-return]


def _student(nu: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """Student-t draws scaled to unit variance (Gaussian for large ``nu``)."""
    if nu >= NORMAL_NU:
        return rng.standard_normal(n)
    return rng.standard_t(nu, n) * math.sqrt((nu - 2) / nu)


def bridge_extremes(returns: np.ndarray, sigma: np.ndarray,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Max and min (relative to the open) of Brownian bridges from 0 to ``returns``."""
    var2 = 2 * sigma * sigma
    up = (returns + np.sqrt(returns * returns - var2 * np.log(rng.random(returns.shape)))) / 2
    down = (returns - np.sqrt(returns * returns - var2 * np.log(rng.random(returns.shape)))) / 2
    return up, down


def bars_from_returns(spec: SymbolSpec, start_ms: int, returns: np.ndarray, sigma: np.ndarray,
                      rng: np.random.Generator, *, start_price: Decimal | None = None,
                      end_price: Decimal | None = None) -> BarFrame:
    """1m bars of one symbol on its tick and step grids; anchored at the start or at the end."""
    n = returns.size
    path = np.cumsum(returns)
    if start_price is not None:
        log_open0 = math.log(float(start_price))
    else:
        log_open0 = math.log(float(end_price if end_price is not None else spec.price)) - float(path[-1])
    log_close = log_open0 + path
    log_open = np.concatenate(([log_open0], log_close[:-1]))
    up, down = bridge_extremes(returns, sigma, rng)
    tick = float(spec.tick_size)
    close = np.maximum(np.rint(np.exp(log_close) / tick), 1).astype(np.int64)
    first_open = max(1, int(round(math.exp(log_open0) / tick)))
    open_ = np.concatenate(([first_open], close[:-1]))
    high = np.maximum(np.rint(np.exp(log_open + up) / tick).astype(np.int64), np.maximum(open_, close))
    low = np.minimum(np.rint(np.exp(log_open + down) / tick).astype(np.int64), np.minimum(open_, close))
    low = np.maximum(low, 1)
    ratio = sigma / spec.sigma
    activity = np.exp(0.8 * np.log(ratio) + 0.5 * rng.standard_normal(n) - 0.125)
    surprise = 0.6 + 0.5 * np.abs(returns / sigma)
    volume = np.rint(spec.volume_per_minute * activity * surprise / float(spec.step_size)).astype(np.int64)
    # ticks and steps are 10^-s (or k*10^-s): the integers below are the exact DECIMAL(18, s) values
    ps, vs = decimal_scale(spec.tick_size), decimal_scale(spec.step_size)
    tick_units = int(spec.tick_size.scaleb(ps))
    step_units = int(spec.step_size.scaleb(vs))
    times = start_ms + MINUTE_MS * np.arange(n, dtype=np.int64)
    return BarFrame.from_columns(times, open=open_ * tick_units, high=high * tick_units, low=low * tick_units,
                                 close=close * tick_units, volume=volume * step_units, price_scale=ps,
                                 volume_scale=vs)


def history_rng(seed: int, start_minute: int, stream: int) -> np.random.Generator:
    """Deterministic generators: the same seed and start give the same market."""
    return np.random.default_rng([seed, start_minute, stream])
