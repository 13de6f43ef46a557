"""Fixed-point quantization of matrices and vectors to the value width.

Integer data that fits the signed value width passes unchanged
(``frac_bits == 0``). Real data is scaled by ``2 ** frac_bits`` with the
largest ``frac_bits`` (at most ``2 * value_width``) for which every value
still fits, and rounded to nearest (ties away from zero).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse

from zeroskip.errors import CompileError

__all__ = ["Quantized", "quantize"]


@dataclasses.dataclass(frozen=True)
class Quantized:
    """Result of :func:`quantize`.

    Attributes
    ----------
    ints : numpy.ndarray or scipy.sparse matrix
        The integer values (``int64``), of the same kind and shape as the
        input; a sparse result is CSR without explicit zeros.
    frac_bits : int
        Fractional bits: ``value ≈ ints / 2 ** frac_bits``.
    saturated : int
        Number of values clipped to the value range (only with ``saturate``).
    """

    ints: object
    frac_bits: int
    saturated: int


def _round(values):
    return np.sign(values) * np.floor(np.abs(values) + 0.5)


def _show(value):
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def quantize(values, *, value_width, saturate=False, what="matrix"):
    """Quantize a matrix or vector to signed ``value_width``-bit integers.

    Parameters
    ----------
    values : array_like or scipy.sparse matrix
        A 1-D vector or a 2-D matrix (dense or sparse).
    value_width : int
        Signed width of the stored values (8 or 16).
    saturate : bool
        Clip integers that do not fit instead of refusing them.
    what : str
        What the values are, for error messages (``"matrix"``, ``"vector"``).

    Returns
    -------
    Quantized

    Raises
    ------
    CompileError
        If a value is not finite, or is too large and ``saturate`` is off; the
        message names the value and its row and column (or index).
    """
    if not isinstance(value_width, int) or isinstance(value_width, bool) or value_width < 2:
        raise ValueError(f"value_width must be an integer of at least 2, not {value_width!r}")
    sparse = scipy.sparse.issparse(values)
    if sparse:
        matrix = values.tocsr(copy=True)
        matrix.sum_duplicates()
        data = np.asarray(matrix.data)
        rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
        where = lambda k: f"at row {rows[k]}, column {matrix.indices[k]}"  # noqa: E731
    else:
        data = np.asarray(values)
        if data.ndim not in (1, 2):
            raise CompileError(f"{what} must be 1-D or 2-D, not {data.ndim}-D")
        shape = data.shape
        data = data.reshape(-1)
        if len(shape) == 1:
            where = lambda k: f"at index {k}"  # noqa: E731
        else:
            where = lambda k: (f"at row {k // shape[1]}, column {k % shape[1]}")  # noqa: E731
    if data.dtype == bool:
        data = data.astype(np.int64)
    if not (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)):
        raise CompileError(f"{what} values must be numbers, not {data.dtype}")

    low, high = -(1 << (value_width - 1)), (1 << (value_width - 1)) - 1
    if np.issubdtype(data.dtype, np.floating):
        bad = np.flatnonzero(~np.isfinite(data))
        if len(bad):
            raise CompileError(f"{what} value {data[bad[0]]} {where(bad[0])} is not finite")
        integral = bool(np.all(data == np.floor(data)))
    else:
        integral = True

    frac_bits = 0
    if integral:
        scaled = data.astype(np.float64) if data.dtype == np.uint64 else data
    else:
        peak = float(np.max(np.abs(data))) if len(data) else 0.0
        # Candidates from the largest down; the first that fits after rounding wins.
        start = 2 * value_width
        if peak > 0:
            start = min(start, max(0, int(np.floor(np.log2(high / peak))) + 1))
        for frac_bits in range(start, -1, -1):
            scaled = _round(data * 2.0 ** frac_bits)
            if len(scaled) == 0 or (scaled.min() >= low and scaled.max() <= high):
                break
    outside = np.flatnonzero((scaled < low) | (scaled > high))
    saturated = 0
    if len(outside):
        if not saturate:
            k = outside[0]
            raise CompileError(f"{what} value {_show(data[k])} {where(k)} does not fit "
                               f"{value_width}-bit signed values (use --saturate)")
        saturated = len(outside)
        scaled = np.clip(scaled, low, high)
    ints = np.asarray(scaled).astype(np.int64)
    if sparse:
        matrix.data = ints
        matrix.eliminate_zeros()
        return Quantized(ints=matrix, frac_bits=frac_bits, saturated=saturated)
    return Quantized(ints=ints.reshape(shape), frac_bits=frac_bits, saturated=saturated)
