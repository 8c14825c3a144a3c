"""Direction-model probabilities computed causally over a history, for backtests.

A model trained once on the whole history and asked about its own past would have seen the
answers. Here the history is cut into blocks of ``refit_every`` bars after the first
``min_train``: at the close of each block's first bar a classifier (the direction model's,
same features and settings) is fitted on the rows whose label — the return over ``horizon``
bars — had ended by then, and it predicts every bar of the block from features that use data
up to that bar only. So the value at bar ``t`` depends on bars ``0..t`` alone, and a longer
history never changes an earlier value (the test checks exactly that).
"""

from __future__ import annotations

import numpy as np

from tradepilot.ai.direction import _train_classifier
from tradepilot.ai.features import Candles, feature_matrix, forward_return

MIN_ROWS = 200  # fewer usable training rows than this: no forecast for the block


def causal_probabilities(candles: Candles, horizon: int, *, min_train: int = 500, refit_every: int = 250) -> np.ndarray:
    """P(up over ``horizon`` bars) at each bar's close; NaN where no model could be fitted yet."""
    n = len(candles)
    out = np.full(n, np.nan)
    if n <= min_train:
        return out
    x, r = feature_matrix(candles), forward_return(candles, horizon)
    rows = np.arange(n)
    finite_x = np.all(np.isfinite(x), axis=1)
    for start in range(min_train, n, refit_every):
        known = (rows + horizon <= start) & finite_x & np.isfinite(r)  # labels that had ended at bar ``start``
        if int(known.sum()) < MIN_ROWS:
            continue
        model = _train_classifier(x[known], (r[known] > 0).astype(float))
        block = rows[start:min(start + refit_every, n)]
        usable = block[finite_x[block]]
        if usable.size:
            out[usable] = model.predict(x[usable])
    return out
