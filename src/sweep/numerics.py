"""Comparisons and roundings that float noise cannot flip.

The engine reaches a state by a closed-form jump where the reference takes many small steps;
the two agree to about 1e-13 relative, not bit for bit.  Wherever the model turns a float into
a decision (pending < threshold) or an integer (whole microseconds, QEMU's integer counters),
a value that is mathematically *on* the boundary (pending == threshold, need / rate == 180351
us) would otherwise land on either side by chance.  So every such place treats values within
EPS (relative) as equal.  EPS = 1e-9 is far above the noise and far below anything QEMU can
resolve (it is 4 bytes of a 4 GiB queue).  Both models use these functions and only these.
"""

from __future__ import annotations

import numpy as np

__all__ = ["EPS", "at_most", "below", "ceil", "floor", "same"]

EPS = 1e-9

Number = float | np.ndarray


def _tolerance(a: Number, b: Number) -> Number:
    return EPS * np.maximum(np.abs(a), np.abs(b))


# below scales EPS by max(b, -a), one numpy call less than max(|a|, |b|) (it runs a dozen
# times in each pass of the engine).  Wherever the answer depends on the tolerance (a < b)
# the two maxima are the same number, and elsewhere both forms give the same answer, for
# infinities and NaN too.  at_most cannot do the same: max(a, -b) is -inf for a = -inf,
# b = +inf, and b + EPS * -inf is NaN, so "-inf <= +inf" came out false.


def below(a: Number, b: Number) -> bool | np.ndarray:
    """a < b by more than float noise."""
    return a < b - EPS * np.maximum(b, -a)


def at_most(a: Number, b: Number) -> bool | np.ndarray:
    """a <= b, counting a hair above b as equal."""
    return a <= b + _tolerance(a, b)


def same(a: Number, b: Number) -> bool | np.ndarray:
    """a == b up to float noise."""
    return np.abs(a - b) <= _tolerance(a, b)


def floor(x: Number) -> Number:
    """Round down, except that x a hair below a whole number is that number."""
    return np.floor(x + EPS * np.abs(x))


def ceil(x: Number) -> Number:
    """Round up, except that x a hair above a whole number is that number."""
    return np.ceil(x - EPS * np.abs(x))
