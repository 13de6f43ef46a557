"""Reference results of ``SPMV`` computed with SciPy in exact integers.

The same reference serves every kernel: ``x`` is a vector (SpMV, SpMSpV) or
a matrix of right-hand columns (SpMM, SpMSpM), dense or scipy.sparse; the
format and dataflow the accelerator uses do not change the result.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse

from zeroskip.core import arith

__all__ = ["spmv_reference"]


def spmv_reference(matrix_int, x_int, *, config, bias=None, shift=0, relu=False, clamp=None,
                   epilogue=None):
    """``y = A @ x`` with the ISA's bias, epilogue and accumulator width.

    Parameters
    ----------
    matrix_int : scipy.sparse matrix or 2-D array of int
    x_int : array of int or scipy.sparse matrix
        A vector (1-D) or a matrix with one row per column of ``A``.
    config : AcceleratorConfig
    bias : 1-D array of int, optional
        Added at accumulator scale.
    shift, relu, clamp, epilogue
        As for :func:`.compiler.compile_spmv`: by default the epilogue is
        applied when ``shift``, ``relu`` or ``clamp`` is given; with
        ``epilogue=False`` the raw accumulator is returned.

    Returns
    -------
    (numpy.ndarray of int64, bool)
        The results (wrapped to the accumulator width before the epilogue,
        as the hardware stores them; 1-D for a vector ``x``, ``(rows, k)``
        for a matrix) and whether any sum, or sum plus bias, leaves the
        accumulator range.
    """
    a = scipy.sparse.csr_matrix(matrix_int).astype(np.int64)
    if scipy.sparse.issparse(x_int):
        x_int = x_int.toarray()
    x = np.asarray(x_int, dtype=np.int64)
    y = np.asarray(a @ x, dtype=np.int64)
    if x.ndim == 1:
        y = y.reshape(-1)
    low, high = config.acc_min, config.acc_max
    overflow = bool(np.any((y < low) | (y > high)))
    if bias is not None:
        bias = np.asarray(bias, dtype=np.int64)
        y = y + (bias[:, None] if y.ndim == 2 else bias)
        overflow |= bool(np.any((y < low) | (y > high)))
    if epilogue is None:
        epilogue = bool(shift or relu or clamp is not None)
    y = arith.sign_extend(y, config.acc_width)
    if epilogue:
        lo, hi = (config.value_min, config.value_max) if clamp is None else clamp
        y = arith.epilogue(y, shift=shift, relu=relu, clamp_lo=lo, clamp_hi=hi,
                           value_width=config.value_width)
    return y, overflow
