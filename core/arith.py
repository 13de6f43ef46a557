"""The accelerator's integer arithmetic, defined once.

Two rules of the ISA (:mod:`zeroskip.core.isa`) that every layer computes must
agree bit for bit, so each has one definition here, vectorised over NumPy
``int64`` arrays:

* :func:`sign_extend`: the low ``width`` bits of a word read as a signed
  integer (how the machine stores a sum in ``acc_width`` bits, and how a
  signed field is read back from a memory word);
* :func:`epilogue`: step 4 of ``SPMV`` (shift with rounding, ReLU, the clamp
  and saturation to the value width).

The ISA model, the SciPy reference, the compiler's empty-row values and the
network quantizer's reference call them; the HDL writeback
(:mod:`zeroskip.hdl.writeback`) implements the same rules in gates and is
checked against the ISA model.
"""

from __future__ import annotations

import numpy as np

__all__ = ["sign_extend", "value_range", "epilogue"]


def sign_extend(values, width):
    """The low ``width`` bits of ``values`` as signed ``width``-bit integers (``int64``).

    Wraps modulo ``2 ** width`` into ``[-2 ** (width - 1), 2 ** (width - 1))``,
    for ``1 <= width <= 63``.
    """
    values = np.asarray(values, dtype=np.int64) & ((1 << width) - 1)
    return values - ((values >> (width - 1)) << width)


def value_range(width):
    """``(low, high)`` of signed ``width``-bit integers."""
    return -(1 << (width - 1)), (1 << (width - 1)) - 1


def epilogue(sums, *, shift, relu, clamp_lo, clamp_hi, value_width):
    """Step 4 of ``SPMV`` on accumulator values ``sums``.

    ``s = (s + round) >> shift`` (arithmetic shift; ``round`` is ``1 << (shift
    - 1)``, or 0 when ``shift`` is 0), then ``max(s, 0)`` if ``relu``, then
    ``min(max(s, clamp_lo), clamp_hi)``, then saturation to signed
    ``value_width`` bits.

    Parameters
    ----------
    sums : array_like of int
        Accumulator values (already within the accumulator width: the
        caller wraps them with :func:`sign_extend` where the hardware does).
    shift : int or array_like of int
        0 to 31; an array broadcasts against ``sums`` (one shift per row of a
        network layer, say).
    relu : bool
    clamp_lo, clamp_hi : int
        The clamp, in output integers (the value range for no clamp).
    value_width : int

    Returns
    -------
    numpy.ndarray of int64
    """
    sums = np.asarray(sums, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    rounding = np.where(shift > 0, np.left_shift(1, np.maximum(shift - 1, 0)), 0)
    out = (sums + rounding) >> shift
    if relu:
        out = np.maximum(out, 0)
    out = np.minimum(np.maximum(out, clamp_lo), clamp_hi)
    low, high = value_range(value_width)
    return np.minimum(np.maximum(out, low), high)
