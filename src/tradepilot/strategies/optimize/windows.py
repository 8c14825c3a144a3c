"""In-sample / out-of-sample windows: one split, or walk-forward.

With ``n`` bars, ``k`` windows and an in-sample share ``f``, every out-of-sample segment has
``O = floor(n / (k + f / (1 - f)))`` bars and every in-sample one ``I = n - k·O`` (≥ f/(1-f)·O).
Window ``j`` optimises on ``[j·O, j·O + I)`` and is judged on the ``O`` bars right after it;
the windows roll forward by ``O``, so the out-of-sample segments tile the end of the period
without overlapping and each optimisation sees only bars before its judgement. ``k = 1`` is
the plain split (the first ``f`` of the period in-sample, the rest out-of-sample).
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_IN_SAMPLE_BARS = 30
MIN_OUT_OF_SAMPLE_BARS = 10


class WindowError(ValueError):
    """Too few bars for the windows asked for."""


@dataclass(frozen=True, slots=True)
class Window:
    index: int
    in_sample: tuple[int, int]  # [start, stop) bar indices
    out_of_sample: tuple[int, int]

    @property
    def in_sample_bars(self) -> int:
        return self.in_sample[1] - self.in_sample[0]


def make_windows(bars: int, windows: int, in_sample: float) -> list[Window]:
    if not 0 < in_sample < 1 or windows < 1:
        raise WindowError("the in-sample share must be between 0 and 1 and there must be at least one window")
    ratio = in_sample / (1 - in_sample)
    oos = int(bars // (windows + ratio))
    ins = bars - windows * oos
    if oos < MIN_OUT_OF_SAMPLE_BARS or ins < MIN_IN_SAMPLE_BARS:
        raise WindowError(f"{bars} bars are too few for {windows} window(s): each needs at least "
                          f"{MIN_IN_SAMPLE_BARS} in-sample and {MIN_OUT_OF_SAMPLE_BARS} out-of-sample bars "
                          f"(would be {ins} and {oos})")
    return [Window(j, (j * oos, j * oos + ins), (j * oos + ins, (j + 1) * oos + ins)) for j in range(windows)]
