"""Fixed-point quantization of matrices and operands to the value width.

The accelerator multiplies signed ``value_width``-bit integers into
``acc_width``-bit accumulators; the host maps real numbers onto them with
power-of-two scales and maps the results back:

* each row ``i`` of the matrix has its own exponent ``s[i]``
  (``A_q[i, j] = round(A[i, j] * 2 ** s[i])``), possibly negative for huge
  values, so every row uses the value width well however far its magnitude
  is from the others (:func:`quantize_matrix`);
* the operand ``x`` has one exponent ``t`` per vector, or one per column of a
  right-hand matrix (:func:`quantize_operand`);
* ``y[i] = y_raw[i] * 2 ** -(s[i] + t)`` (:func:`dequantize`).

Both exponents are also bounded so that no sum can leave the accumulator:
``sum_j |A_q[i, j]| |x_q[j]| <= acc_max`` for every row. When the operand is
not known yet, the matrix is scaled for the worst case ``|x_q| <= 2 **
(value_width - 1)``; the operand's exponent, chosen when it is known, keeps
the bound in every case.

Integer data that fits the value width stays exact: exponent 0. Rounding is
to nearest, ties away from zero. :func:`error_report` measures the result
against the float64 product. :func:`quantize` is the single-scale quantizer
of one array (kept for vectors and simple uses).

The rounding and the exponent rules are public, for every quantizer of the
project (the network quantizer in :mod:`zeroskip.app.nn.quantize` uses them):

* :func:`round_half_away`: to nearest, ties away from zero;
* :func:`value_exponents`: per peak magnitude, the largest exponent at which
  it still rounds into the value range;
* :func:`acc_exponents`: per row, the largest exponent (a safe bound) at which
  the row's weighted sum of magnitudes fits the accumulator.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import scipy.sparse

from zeroskip.core.errors import CompileError

__all__ = ["Quantized", "QuantizedMatrix", "QuantizedOperand", "quantize", "quantize_matrix",
           "quantize_operand", "dequantize", "error_report", "ROW_EXP_RANGE",
           "round_half_away", "value_exponents", "acc_exponents"]

#: Exponents a row or an operand may take (beyond them values are denormal-small or huge).
ROW_EXP_RANGE = (-1000, 1000)

#: Relative row error counted by ``rows_over_1pct``.
ROW_ERROR_LIMIT = 1e-2


def round_half_away(values):
    """Round to the nearest integer, ties away from zero (float64; the quantizers' rounding)."""
    values = np.asarray(values, dtype=np.float64)
    return np.sign(values) * np.floor(np.abs(values) + 0.5)


def _show(value):
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def _check_width(value_width):
    if not isinstance(value_width, int) or isinstance(value_width, bool) or value_width < 2:
        raise ValueError(f"value_width must be an integer of at least 2, not {value_width!r}")


def _prefix(source):
    return f"{source}: " if source else ""


def _check_values(data, what, where, source):
    """Refuse non-numbers and non-finite values; return the data as int64 or float64."""
    if data.dtype == bool:
        data = data.astype(np.int64)
    if not (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)):
        raise CompileError(f"{_prefix(source)}{what} values must be numbers, not {data.dtype}")
    if np.issubdtype(data.dtype, np.floating):
        bad = np.flatnonzero(~np.isfinite(data))
        if len(bad):
            raise CompileError(f"{_prefix(source)}{what} value {data[bad[0]]} {where(bad[0])} "
                               f"is not finite")
    return data


# One array, one scale -----------------------------------------------------------------------------

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


def quantize(values, *, value_width, saturate=False, what="matrix", source=None):
    """Quantize a matrix or vector to signed ``value_width``-bit integers, one scale.

    Integer data that fits passes unchanged (``frac_bits == 0``). Real data
    is scaled by ``2 ** frac_bits`` with the largest ``frac_bits`` (at most
    ``2 * value_width``) for which every value still fits.

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
    source : str, optional
        The file the values came from, named in error messages.

    Raises
    ------
    CompileError
        If a value is not finite, or is too large and ``saturate`` is off; the
        message names the file, the value and its row and column (or index),
        counted from 1.
    """
    _check_width(value_width)
    sparse = scipy.sparse.issparse(values)
    if sparse:
        matrix = values.tocsr(copy=True)
        matrix.sum_duplicates()
        data = np.asarray(matrix.data)
        rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
        where = lambda k: f"at row {rows[k] + 1}, column {matrix.indices[k] + 1}"  # noqa: E731
    else:
        data = np.asarray(values)
        if data.ndim not in (1, 2):
            raise CompileError(f"{_prefix(source)}{what} must be 1-D or 2-D, not {data.ndim}-D")
        shape = data.shape
        data = data.reshape(-1)
        if len(shape) == 1:
            where = lambda k: f"at index {k + 1}"  # noqa: E731
        else:
            where = lambda k: (f"at row {k // shape[1] + 1}, column {k % shape[1] + 1}")  # noqa: E731
    data = _check_values(data, what, where, source)

    low, high = -(1 << (value_width - 1)), (1 << (value_width - 1)) - 1
    integral = not np.issubdtype(data.dtype, np.floating) or bool(np.all(data == np.floor(data)))
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
            scaled = round_half_away(data * 2.0 ** frac_bits)
            if len(scaled) == 0 or (scaled.min() >= low and scaled.max() <= high):
                break
    outside = np.flatnonzero((scaled < low) | (scaled > high))
    saturated = 0
    if len(outside):
        if not saturate:
            k = outside[0]
            raise CompileError(f"{_prefix(source)}{what} value {_show(data[k])} {where(k)} does "
                               f"not fit {value_width}-bit signed values (use --saturate)")
        saturated = len(outside)
        scaled = np.clip(scaled, low, high)
    ints = np.asarray(scaled).astype(np.int64)
    if sparse:
        matrix.data = ints
        matrix.eliminate_zeros()
        return Quantized(ints=matrix, frac_bits=frac_bits, saturated=saturated)
    return Quantized(ints=ints.reshape(shape), frac_bits=frac_bits, saturated=saturated)


# The matrix: one exponent per row -----------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class QuantizedMatrix:
    """Result of :func:`quantize_matrix`.

    Attributes
    ----------
    ints : scipy.sparse.csr_matrix of int64
        ``round(A * 2 ** row_exp[:, None])``, without explicit zeros.
    row_exp : numpy.ndarray of int64
        The exponent of each row (0 for an empty row).
    nnz_input : int
        Nonzeros of the matrix as given.
    dropped : int
        Nonzeros that rounded to zero (they are not stored).
    saturated : int
        Values clipped to the value range (only with ``saturate``).
    worst_case_x : bool
        Whether the exponents assume the worst-case operand
        ``|x_q| <= 2 ** (value_width - 1)`` (no operand was given).
    exact : bool
        Whether the matrix is stored exactly (integers that fit, every
        exponent 0, nothing clipped).
    """

    ints: object
    row_exp: np.ndarray
    nnz_input: int
    dropped: int
    saturated: int
    worst_case_x: bool
    exact: bool

    @property
    def nnz_stored(self):
        return int(self.ints.nnz)


def _as_csr(matrix, what, source):
    if scipy.sparse.issparse(matrix):
        a = scipy.sparse.csr_matrix(matrix, copy=True)
    else:
        dense = np.asarray(matrix)
        if dense.ndim != 2:
            raise CompileError(f"{_prefix(source)}{what} must be 2-D, not {dense.ndim}-D")
        if dense.dtype == bool:
            dense = dense.astype(np.int64)
        a = scipy.sparse.csr_matrix(dense)
    a.sum_duplicates()
    a.eliminate_zeros()
    return a


def _row_ids(a):
    return np.repeat(np.arange(a.shape[0]), np.diff(a.indptr))


def _row_reduce(a, values, ufunc):
    """Per-row ``ufunc.reduceat`` of ``values`` (aligned with ``a.data``); 0 for empty rows."""
    out = np.zeros(a.shape[0], dtype=np.float64)
    counts = np.diff(a.indptr)
    nonempty = np.flatnonzero(counts)
    if len(nonempty):
        out[nonempty] = ufunc.reduceat(values, a.indptr[nonempty])
    return out


def value_exponents(peaks, high):
    """Largest ``s`` with ``round(peak * 2 ** s) <= high`` per row (0 where peak is 0).

    ``peaks`` are magnitudes (float64, one per row or column), ``high`` the
    largest value integer; the result is clipped to :data:`ROW_EXP_RANGE`.
    """
    peaks = np.asarray(peaks, dtype=np.float64)
    s = np.zeros(len(peaks), dtype=np.int64)
    live = peaks > 0
    if np.any(live):
        s[live] = np.floor(np.log2(high / peaks[live])).astype(np.int64)
        # One more bit when rounding still fits (e.g. 32767.4 -> 32767).
        up = live.copy()
        up[live] = round_half_away(np.ldexp(peaks[live], s[live] + 1)) <= high
        s[up] += 1
    return np.clip(s, *ROW_EXP_RANGE)


def acc_exponents(a, weights, acc_max):
    """Per row, an ``s`` with ``sum_j |round(a_ij 2^s)| w_j <= acc_max`` (the largest,
    unless so many entries round down that two more bits would fit).

    ``a`` is a CSR matrix of float64 values, ``weights`` is aligned with
    ``a.data`` (``|x_q[j]|`` of each entry). The bound allows half a unit of
    rounding per entry; one more bit is taken where the rounded sum still
    fits. Rows without load get the top of :data:`ROW_EXP_RANGE`, rows that
    cannot fit its bottom.
    """
    magnitudes = np.abs(a.data.astype(np.float64))
    load = _row_reduce(a, magnitudes * weights, np.add)
    slack = acc_max - 0.5 * _row_reduce(a, weights, np.add)
    s = np.full(a.shape[0], ROW_EXP_RANGE[1], dtype=np.int64)
    live = load > 0
    ok = live & (slack > 0)
    s[ok] = np.floor(np.log2(slack[ok] / load[ok])).astype(np.int64)
    s[live & ~ok] = ROW_EXP_RANGE[0]
    if np.any(ok):
        trial = np.where(ok, s + 1, 0)
        sums = _row_reduce(a, round_half_away(np.ldexp(magnitudes, trial[_row_ids(a)]))
                           * weights, np.add)
        s[ok & (sums <= acc_max)] += 1
    return np.clip(s, *ROW_EXP_RANGE)


def quantize_matrix(matrix, *, value_width, acc_width=32, x=None, saturate=False,
                    what="matrix", source=None):
    """Quantize a matrix with one power-of-two exponent per row.

    Parameters
    ----------
    matrix : scipy.sparse matrix or 2-D array
    value_width, acc_width : int
        Signed widths of the stored values and of the accumulators.
    x : array or scipy.sparse matrix, optional
        The operand (vector, or matrix of right-hand columns) the matrix will
        be multiplied by, or a sample of it. Without it the exponents assume
        the worst case ``|x_q| <= 2 ** (value_width - 1)`` for real matrices
        (an integer matrix that fits stays exact; the operand's exponent then
        keeps the accumulator in range).
    saturate : bool
        Keep an integer matrix at exponent 0 and clip the values that do
        not fit, instead of scaling their rows down.
    what, source : str
        For error messages: what the values are, and the file they came from.

    Returns
    -------
    QuantizedMatrix

    Raises
    ------
    CompileError
        On values that are not finite numbers; the message names the file
        and the row and column, counted from 1.
    """
    _check_width(value_width)
    a = _as_csr(matrix, what, source)
    rows_of = _row_ids(a)
    data = _check_values(np.asarray(a.data), what,
                         lambda k: f"at row {rows_of[k] + 1}, column {a.indices[k] + 1}", source)
    a.data = data.astype(np.float64)
    high = (1 << (value_width - 1)) - 1
    low = -high - 1
    acc_max = (1 << (acc_width - 1)) - 1
    integral = not np.issubdtype(data.dtype, np.floating) or bool(np.all(data == np.floor(data)))
    peaks = _row_reduce(a, np.abs(a.data), np.maximum)
    fits = integral and bool(np.all(a.data <= high)) and bool(np.all(a.data >= low))
    if fits or (integral and saturate):
        s = np.zeros(a.shape[0], dtype=np.int64)
    elif integral:   # rows of integers that fit stay exact; the others scale down
        s = np.minimum(value_exponents(peaks, high), 0)
    else:
        s = value_exponents(peaks, high)

    worst_case = x is None
    if x is None:
        if not (fits or (integral and saturate)):
            weights = np.full(a.nnz, float(high + 1))
            s = np.minimum(s, acc_exponents(a, weights, acc_max))
    else:
        xq = quantize_operand(x, value_width=value_width, source=None, what="x",
                              check_acc=None)
        mags = np.abs(xq.ints).reshape(xq.ints.shape[0], -1).max(axis=1).astype(np.float64)
        if not xq.exact:
            # Share the bits the accumulator lacks between the matrix and x: x gives up
            # half of what the neediest row lacks (rounded up), the rows the rest.
            need = acc_exponents(a, mags[a.indices] * 1.0, acc_max)
            lack = int(max(0, np.max(s - need))) if a.nnz else 0
            if lack:
                mags = np.ceil(mags * 2.0 ** -((lack + 1) // 2))
        s = np.minimum(s, acc_exponents(a, mags[a.indices], acc_max))

    ints = round_half_away(np.ldexp(a.data, s[rows_of]))
    saturated = 0
    outside = (ints < low) | (ints > high)
    if np.any(outside):
        saturated = int(np.count_nonzero(outside))
        ints = np.clip(ints, low, high)
    if x is not None:
        # Rounding can still push a row over: take one more bit off until it fits.
        for _ in range(64):
            load = np.bincount(rows_of, weights=np.abs(ints) * mags[a.indices],
                               minlength=a.shape[0])
            over = load > acc_max
            if not np.any(over):
                break
            s[over] -= 1
            ints = np.clip(round_half_away(np.ldexp(a.data, s[rows_of])), low, high)
    q = scipy.sparse.csr_matrix((ints.astype(np.int64), a.indices.copy(), a.indptr.copy()),
                                shape=a.shape)
    stored_before = q.nnz
    q.eliminate_zeros()
    dropped = stored_before - q.nnz
    s = np.where(np.diff(a.indptr) > 0, s, 0).astype(np.int64)
    exact = bool(np.all(s == 0)) and integral and saturated == 0 and dropped == 0
    return QuantizedMatrix(ints=q, row_exp=s, nnz_input=int(a.nnz), dropped=int(dropped),
                           saturated=saturated, worst_case_x=worst_case and not fits,
                           exact=exact)


# The operand: one exponent per vector or per column ----------------------------------------------

@dataclasses.dataclass(frozen=True)
class QuantizedOperand:
    """Result of :func:`quantize_operand`.

    Attributes
    ----------
    ints : numpy.ndarray of int64
        A vector, or ``(columns of A, k)`` for a matrix operand.
    exp : int or numpy.ndarray of int64
        The exponent of the vector, or of each column.
    nnz_input, dropped, saturated : int
        Nonzeros given, nonzeros that rounded to zero, values clipped.
    exact : bool
        Integers that fit (every exponent 0, nothing clipped).
    """

    ints: np.ndarray
    exp: object
    nnz_input: int
    dropped: int
    saturated: int
    exact: bool


def quantize_operand(x, *, value_width, matrix_int=None, acc_width=32, saturate=False,
                     what="x", source=None, check_acc=True):
    """Quantize the operand with one exponent per vector (per column of a matrix).

    Each column takes the largest exponent for which its values fit the
    value width (0 for integers that fit) and, given the quantized matrix
    ``matrix_int``, every row sum ``sum_j |A_q[i, j]| |x_q[j]|`` stays within
    the accumulator (the exponent is lowered until it does).

    Parameters
    ----------
    x : array or scipy.sparse matrix
        A vector (1-D, or one row or column of a sparse matrix is not
        accepted here: pass it 1-D) or a matrix of right-hand columns.
    value_width, acc_width : int
    matrix_int : scipy.sparse matrix of int, optional
        The quantized matrix, for the accumulator bound.
    saturate : bool
        Keep integers at exponent 0 and clip those that do not fit.
    what, source : str
        For error messages.
    check_acc : bool or None
        ``None`` skips the accumulator bound.
    """
    _check_width(value_width)
    if scipy.sparse.issparse(x):
        x = x.toarray()
    data = np.asarray(x)
    if data.ndim not in (1, 2):
        raise CompileError(f"{_prefix(source)}{what} must be 1-D or 2-D, not {data.ndim}-D")
    vector = data.ndim == 1
    cols = data.reshape(len(data), -1) if data.size or vector else data
    if vector:
        cols = data.reshape(-1, 1)
    shape = cols.shape

    def where(k):
        i, c = divmod(int(k), shape[1])
        return f"at index {i + 1}" if vector else f"at row {i + 1}, column {c + 1}"
    flat = _check_values(cols.reshape(-1), what, where, source)
    values = flat.astype(np.float64).reshape(shape)
    high = (1 << (value_width - 1)) - 1
    low = -high - 1
    acc_max = (1 << (acc_width - 1)) - 1
    integral = not np.issubdtype(flat.dtype, np.floating) or bool(np.all(flat == np.floor(flat)))
    peaks = np.abs(values).max(axis=0) if shape[0] else np.zeros(shape[1])
    fits = integral and bool(np.all(values <= high)) and bool(np.all(values >= low))
    if fits or (integral and saturate):
        t = np.zeros(shape[1], dtype=np.int64)
    else:
        t = value_exponents(peaks, high)

    def scaled(t):
        ints = round_half_away(np.ldexp(values, t[None, :]))
        return np.clip(ints, low, high), int(np.count_nonzero((ints < low) | (ints > high)))

    ints, saturated = scaled(t)
    if matrix_int is not None and check_acc is not None and shape[0]:
        a = abs(scipy.sparse.csr_matrix(matrix_int)).astype(np.float64)
        for _ in range(2 * 64):
            load = np.asarray(a @ np.abs(ints)).reshape(a.shape[0], -1)
            over = (load > acc_max).any(axis=0) if load.size else np.zeros(shape[1], bool)
            if not np.any(over):
                break
            peak_load = load.max(axis=0)
            step = np.where(over, np.maximum(1, np.ceil(np.log2(
                np.maximum(peak_load, 1) / acc_max))).astype(np.int64), 0)
            t = t - step
            ints, saturated = scaled(t)
    nnz_input = int(np.count_nonzero(values))
    dropped = nnz_input - int(np.count_nonzero(ints))
    exact = bool(np.all(t == 0)) and integral and saturated == 0
    ints = ints.astype(np.int64)
    if vector:
        return QuantizedOperand(ints=ints.reshape(-1), exp=int(t[0]), nnz_input=nnz_input,
                                dropped=dropped, saturated=saturated, exact=exact)
    return QuantizedOperand(ints=ints, exp=t, nnz_input=nnz_input, dropped=dropped,
                            saturated=saturated, exact=exact)


# Back to real numbers, and the error ----------------------------------------------------------

def dequantize(y_raw, row_exp, x_exp):
    """``y_raw * 2 ** -(row_exp + x_exp)``: one exponent per row, one per vector/column."""
    y_raw = np.asarray(y_raw, dtype=np.float64)
    row_exp = np.asarray(row_exp, dtype=np.int64)
    if y_raw.ndim == 1:
        return np.ldexp(y_raw, -(row_exp + int(np.asarray(x_exp).reshape(-1)[0])))
    x_exp = np.broadcast_to(np.asarray(x_exp, dtype=np.int64), (y_raw.shape[1],))
    return np.ldexp(y_raw, -(row_exp[:, None] + x_exp[None, :]))


def error_report(y_hat, matrix, x):
    """The error of ``y_hat`` against the float64 product ``A x``.

    Returns a dictionary: ``normwise`` = ``||y_hat - y||_inf / ||y||_inf``
    (0 when both are 0); ``rowwise_max`` = ``max_i |y_hat_i - y_i| /
    (|A| |x|)_i`` over the rows where ``(|A| |x|)_i`` is not 0 (over every
    entry for a matrix operand); ``rows_over_1pct``, the rows where that ratio
    exceeds 1 %; ``max_abs``; and ``y_norm``.
    """
    a = scipy.sparse.csr_matrix(matrix).astype(np.float64)
    dense_x = x.toarray() if scipy.sparse.issparse(x) else np.asarray(x)
    dense_x = dense_x.astype(np.float64)
    y = np.asarray(a @ dense_x, dtype=np.float64)
    bound = np.asarray(abs(a) @ np.abs(dense_x), dtype=np.float64)
    y_hat = np.asarray(y_hat, dtype=np.float64)
    if y.ndim == 1:
        y, bound, y_hat = y[:, None], bound[:, None], y_hat.reshape(-1, 1)
    diff = np.abs(y_hat - y)
    max_abs = float(diff.max()) if diff.size else 0.0
    y_norm = float(np.abs(y).max()) if y.size else 0.0
    if y_norm > 0:
        normwise = max_abs / y_norm
    else:
        normwise = 0.0 if max_abs == 0 else math.inf
    live = bound > 0
    ratio = np.zeros_like(diff)
    ratio[live] = diff[live] / bound[live]
    ratio[~live & (diff > 0)] = math.inf
    rowwise = ratio.max(axis=1) if ratio.size else np.zeros(0)
    return {
        "normwise": float(normwise),
        "rowwise_max": float(rowwise.max()) if rowwise.size else 0.0,
        "rows_over_1pct": int(np.count_nonzero(rowwise > ROW_ERROR_LIMIT)),
        "max_abs": max_abs,
        "y_norm": y_norm,
    }
