"""The right-hand operand: its shape and nonzero pattern pick the kernel."""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse

from zeroskip.core.errors import CompileError
from zeroskip.firmware.compiler.settings import ACTIVATION_SPARSE, KERNEL_CHOICES, _check_int


@dataclasses.dataclass
class _Operand:
    kernel: str
    columns: int                 # 0: a vector
    patterns: np.ndarray | None  # (cols, k) bool: nonzero activations; None: all nonzero
    density: float | None        # share of nonzero activations (None: unknown)
    sample: np.ndarray | None = None   # kernel "auto": the sample's pattern, whatever the kernel

    @property
    def column_patterns(self):
        """The activations column mode is costed on: the sparse kernels' pattern, or
        with ``kernel="auto"`` the sample's (column mode skips zero activations
        whatever the kernel: the cost model decides whether that pays)."""
        return self.patterns if self.patterns is not None else self.sample

    def sparse_label(self):
        """The kernel's name once column mode runs: its sparse variant under ``auto``."""
        if self.sample is None:
            return self.kernel
        return {"spmv": "spmspv", "spmm": "spmspm"}.get(self.kernel, self.kernel)

    @property
    def count(self):
        return max(self.columns, 1)

    @property
    def sparse(self):
        return self.kernel in ("spmspv", "spmspm")


def _shape_of(x):
    if scipy.sparse.issparse(x):
        return x.shape
    return np.shape(x)


def _pattern(x, cols):
    """``(cols, k)`` bool nonzero pattern of a vector or matrix operand, and whether
    it is a matrix."""
    if scipy.sparse.issparse(x):
        x = scipy.sparse.csc_matrix(x)
        if x.shape[0] == 1 and x.shape[1] != 1:
            x = x.T.tocsc()
            is_matrix = False
        else:
            is_matrix = x.shape[1] != 1
        rows = x.shape[0]
        pattern = np.zeros(x.shape, dtype=bool)
        xc = x.tocoo()
        pattern[xc.row, xc.col] = xc.data != 0
    else:
        array = np.asarray(x)
        if array.ndim not in (1, 2):
            raise CompileError(f"x must be a vector or a matrix, not {array.ndim}-D")
        is_matrix = array.ndim == 2
        pattern = (array != 0).reshape(array.shape[0], -1)
        rows = array.shape[0]
    if rows != cols:
        what = "rows" if is_matrix else "entries"
        raise CompileError(f"x has {rows} {what} but the matrix has {cols} columns")
    return pattern, is_matrix


def choose_kernel(x, cols, kernel="auto", *, rhs_columns=None):
    """The kernel ``kernel="auto"`` runs for the operand ``x`` (see :func:`compile_kernel`)."""
    return _operand(x, cols, kernel, rhs_columns).kernel


def _operand(x, cols, kernel, rhs_columns):
    if kernel not in KERNEL_CHOICES:
        raise CompileError(f"unknown kernel {kernel!r}; choose one of {', '.join(KERNEL_CHOICES)}")
    if rhs_columns is not None:
        rhs_columns = _check_int("rhs_columns", rhs_columns, 1, 1 << 20)
    pattern, is_matrix, density = None, False, None
    if x is not None:
        pattern, is_matrix = _pattern(x, cols)
        density = float(pattern.mean()) if pattern.size else 0.0
        if rhs_columns is not None and pattern.shape[1] != rhs_columns:
            raise CompileError(f"x has {pattern.shape[1]} columns but rhs_columns is "
                               f"{rhs_columns}")
    elif rhs_columns is not None:
        is_matrix = True
    auto = kernel == "auto"
    if auto:
        sparse = density is not None and density <= ACTIVATION_SPARSE
        if is_matrix:
            kernel = "spmspm" if sparse else "spmm"
        else:
            kernel = "spmspv" if sparse else "spmv"
    if kernel in ("spmv", "spmspv"):
        if is_matrix and (pattern is None or pattern.shape[1] != 1 or rhs_columns):
            k = rhs_columns if pattern is None else pattern.shape[1]
            raise CompileError(f"kernel {kernel} takes a vector but x is a {cols} x {k} "
                               f"matrix (use spmm or spmspm)")
        columns = 0
    else:
        if pattern is None and rhs_columns is None:
            raise CompileError(f"kernel {kernel} needs the right-hand matrix (x) or its "
                               f"number of columns (rhs_columns)")
        columns = pattern.shape[1] if pattern is not None else rhs_columns
    sparse = kernel in ("spmspv", "spmspm")
    sample = pattern if auto and not sparse else None
    if not sparse:
        pattern = None
    return _Operand(kernel, columns, pattern, density, sample)
