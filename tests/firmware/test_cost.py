"""The cost model's predictions against the ISA model's cycles, on small constructed
matrices: where the compiler claims a plan's cycles, the run takes exactly those."""

import numpy as np
import pytest
import scipy.sparse

from zeroskip.config import AcceleratorConfig
from zeroskip.firmware.compiler import compile_kernel
from zeroskip.firmware.model import run_program

COLUMNS = AcceleratorConfig(pes=2, value_width=8, acc_width=32, x_depth=64, nz_depth=64,
                            row_depth=8, imem_depth=16, formats=("csr", "csc"))


def predicted(program):
    """The cost model's cycles: the sum of the bands' chosen options."""
    return sum(band["cycles"] for band in program.report["bands"])


def run_cycles(program, x):
    result = run_program(program, x)
    assert result.error is None
    return result.counters["cycles"]


def column_matrix():
    """10 x 20: three column tiles of 6 columns in column mode (row_depth 8)."""
    rng = np.random.default_rng(7)
    dense = np.where(rng.random((10, 20)) < 0.3, rng.integers(1, 5, (10, 20)), 0)
    dense[0, :] = 1          # a long row
    return scipy.sparse.csr_matrix(dense)


@pytest.mark.parametrize("tail", [{}, {"bias": np.arange(10)}, {"relu": True}])
@pytest.mark.parametrize("columns", [0, 3])
def test_column_mode_prediction_is_the_run(tail, columns):
    # Column tiles after the first accumulate (the final pass), the last adds the
    # bias or applies the epilogue; the detector visits only nonzero activations.
    a = column_matrix()
    rng = np.random.default_rng(columns)
    shape = (20, columns) if columns else (20,)
    x = np.where(rng.random(shape) < 0.25, rng.integers(-3, 4, shape), 0)
    program = compile_kernel(a, COLUMNS, x=x, fmt="csc", kernel="spmspm" if columns
                             else "spmspv", dense_baseline=False, **tail)
    assert len(program.tiles) >= 3
    assert predicted(program) == run_cycles(program, x) == program.predicted_cycles(x)
