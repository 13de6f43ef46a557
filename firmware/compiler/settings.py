"""Validated settings of a compilation: the matrix, the bias, the epilogue and the
N:M structure, and the constants the compiler's choices use."""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse
from amaranth.hdl import Shape

from zeroskip.core import arith, formatspec
from zeroskip.core.errors import CompileError
from zeroskip.core.isa import EpiArgs
from zeroskip.firmware.asm import encode_set_epi
from zeroskip.firmware.program import KERNELS, Epilogue

ACTIVATION_SPARSE = 0.5
#: Dense mode wins a band when the best sparse option saves less than this share
#: of its predicted cycles: sparsity does not pay there.
DENSE_MARGIN = 0.01
#: The N:M structure ``fmt="nm"`` assumes by default.
NM_DEFAULT = (2, 4)
#: What ``fmt`` and ``kernel`` accept.
FORMAT_CHOICES = ("auto",) + formatspec.NAMES
KERNEL_CHOICES = ("auto",) + KERNELS


def _show(value):
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def _check_int(name, value, low, high):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise CompileError(f"{name} must be an integer, not {value!r}")
    if not low <= value <= high:
        raise CompileError(f"{name} must be between {low} and {high}, not {value}")
    return int(value)


def _matrix(matrix, config):
    if scipy.sparse.issparse(matrix):
        a = matrix.tocsr(copy=True)
    else:
        dense = np.asarray(matrix)
        if dense.ndim != 2:
            raise CompileError(f"matrix must be 2-D, not {dense.ndim}-D")
        a = scipy.sparse.csr_matrix(dense)
    a.sum_duplicates()
    data = np.asarray(a.data)
    if data.dtype == bool:
        data = data.astype(np.int64)
    if not (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)):
        raise CompileError(f"matrix values must be numbers, not {data.dtype}")

    def where(k):
        row = int(np.searchsorted(a.indptr, k, side="right")) - 1
        return f"at row {row}, column {a.indices[k]}"

    if np.issubdtype(data.dtype, np.floating):
        bad = np.flatnonzero(~np.isfinite(data) | (data != np.floor(data)))
        if len(bad):
            k = bad[0]
            raise CompileError(f"matrix value {_show(data[k])} {where(k)} is not an integer "
                               f"(quantize it first)")
    outside = np.flatnonzero((data < config.value_min) | (data > config.value_max))
    if len(outside):
        k = outside[0]
        raise CompileError(f"matrix value {_show(data[k])} {where(k)} does not fit "
                           f"{config.value_width}-bit signed values")
    a = scipy.sparse.csr_matrix((data.astype(np.int64), a.indices.astype(np.int64),
                                 a.indptr.astype(np.int64)), shape=a.shape)
    a.eliminate_zeros()
    return a


def _bias(bias, rows, config):
    values = np.asarray(bias)
    if values.ndim != 1:
        raise CompileError(f"bias must be a vector, not {values.ndim}-D")
    if len(values) != rows:
        raise CompileError(f"bias has {len(values)} values but the matrix has {rows} rows")
    if values.dtype == bool or not (np.issubdtype(values.dtype, np.integer)
                                    or np.issubdtype(values.dtype, np.floating)):
        raise CompileError(f"bias values must be numbers, not {values.dtype}")
    if np.issubdtype(values.dtype, np.floating):
        bad = np.flatnonzero(~np.isfinite(values) | (values != np.floor(values)))
        if len(bad):
            raise CompileError(f"bias value {_show(values[bad[0]])} at index {bad[0]} is not an "
                               f"integer (quantize it first)")
    outside = np.flatnonzero((values < config.acc_min) | (values > config.acc_max))
    if len(outside):
        k = outside[0]
        raise CompileError(f"bias value {_show(values[k])} at index {k} does not fit "
                           f"{config.acc_width}-bit signed accumulators")
    return values.astype(np.int64)


@dataclasses.dataclass
class _Epi:
    """Validated epilogue settings of a compilation."""
    applied: bool
    shift: int
    relu: bool
    clamp_lo: int
    clamp_hi: int
    bias: np.ndarray | None
    set_epi: int

    @property
    def tail(self):
        """Whether the last column tile adds a bias or applies the epilogue."""
        return self.applied or self.bias is not None

    def empty_rows(self, rows, config):
        """What the hardware reads back for each of ``rows`` empty rows: the bias
        (0 without one) through the epilogue when it is applied."""
        values = np.zeros(rows, dtype=np.int64) if self.bias is None else self.bias
        if self.applied:
            values = arith.epilogue(values, shift=self.shift, relu=self.relu,
                                    clamp_lo=self.clamp_lo, clamp_hi=self.clamp_hi,
                                    value_width=config.value_width)
        return values

    def record(self):
        return Epilogue(applied=self.applied, shift=self.shift, relu=self.relu,
                        clamp_lo=self.clamp_lo, clamp_hi=self.clamp_hi,
                        has_bias=self.bias is not None)


def _epilogue_settings(config, rows, *, bias, shift, relu, clamp, epilogue):
    epi_layout = EpiArgs.as_shape()
    shift_shape = Shape.cast(epi_layout["shift"].shape)
    lo_shape = Shape.cast(epi_layout["clamp_lo"].shape)
    shift = _check_int("shift", shift, 0, (1 << shift_shape.width) - 1)
    if not isinstance(relu, (bool, np.bool_)):
        raise CompileError(f"relu must be True or False, not {relu!r}")
    if epilogue is None:
        epilogue = bool(shift or relu or clamp is not None)
    elif not isinstance(epilogue, (bool, np.bool_)):
        raise CompileError(f"epilogue must be True or False, not {epilogue!r}")
    elif not epilogue and (shift or relu or clamp is not None):
        raise CompileError("shift, relu and clamp need the epilogue (epilogue=False given)")
    if clamp is None:
        clamp_lo, clamp_hi = config.value_min, config.value_max
    else:
        try:
            clamp_lo, clamp_hi = clamp
        except (TypeError, ValueError):
            raise CompileError(f"clamp must be a pair (lo, hi), not {clamp!r}") from None
        low, high = -(1 << (lo_shape.width - 1)), (1 << (lo_shape.width - 1)) - 1
        clamp_lo = _check_int("clamp low bound", clamp_lo, low, high)
        clamp_hi = _check_int("clamp high bound", clamp_hi, low, high)
        if clamp_lo > clamp_hi:
            raise CompileError(f"clamp low bound {clamp_lo} exceeds high bound {clamp_hi}")
    bias_values = None if bias is None else _bias(bias, rows, config)
    return _Epi(applied=bool(epilogue), shift=shift, relu=bool(relu), clamp_lo=clamp_lo,
                clamp_hi=clamp_hi, bias=bias_values,
                set_epi=encode_set_epi(shift=shift, relu=bool(relu), clamp_lo=clamp_lo,
                                       clamp_hi=clamp_hi))
