"""The cost model's predictions against the ISA model's cycles, on small constructed
matrices: where the compiler claims a plan's cycles, the run takes exactly those."""

import numpy as np
import pytest
import scipy.sparse

from zeroskip.core.config import AcceleratorConfig
from zeroskip.core.isa import Format
from zeroskip.firmware.compiler import compile_kernel
from zeroskip.sim.backends import run_model

COLUMNS = AcceleratorConfig(pes=2, value_width=8, acc_width=32, x_depth=64, nz_depth=64,
                            row_depth=8, imem_depth=16, formats=("csr", "csc"))


def predicted(program):
    """The cost model's cycles: the sum of the bands' chosen options."""
    return sum(band["cycles"] for band in program.report["bands"])


def run_cycles(program, x):
    return run_model(program, x).counters["cycles"]


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


def test_auto_kernel_costs_column_mode_on_the_samples_zeros():
    # Two thirds of the activations are nonzero: above ACTIVATION_SPARSE, so the
    # kernel starts dense; column mode still skips the zeros and is cheaper here
    # than CSR (the cost model must see them, not assume every column visited).
    dense = np.zeros((8, 12), dtype=np.int64)
    for r in range(8):
        dense[r, (np.arange(3) * 5 + r) % 12] = 1
    a = scipy.sparse.csr_matrix(dense)
    x = np.zeros((12, 2), dtype=np.int64)
    x[:8] = 1
    config = AcceleratorConfig(pes=2, value_width=8, acc_width=32, x_depth=64, nz_depth=64,
                               row_depth=16, imem_depth=16, formats=("csr", "csc"))
    program = compile_kernel(a, config, x=x, dense_baseline=False)
    csr = compile_kernel(a, config, x=x, fmt="csr", dense_baseline=False)
    assert program.report["bands"][0]["winner"] == "csc"
    assert program.kernel == program.report["kernel"] == "spmspm"
    assert predicted(program) == run_cycles(program, x) == 62
    assert predicted(csr) == run_cycles(csr, x) == 68
    # An explicit dense kernel keeps assuming every activation nonzero.
    spmm = compile_kernel(a, config, x=x, kernel="spmm", dense_baseline=False)
    assert spmm.report["bands"][0]["winner"] == "csr" and spmm.kernel == "spmm"


def test_generic_plan_rejects_a_format_it_does_not_plan():
    from zeroskip.core.errors import CompileError
    from zeroskip.firmware.compiler.plans import _plan_generic
    a = column_matrix()
    with pytest.raises(CompileError, match=r"^no plan for format 'csr': the generic plans "
                       r"cover bitmap, nm, dense, csc \(CSR and COO rows are planned by "
                       r"_plan_csr\)$"):
        _plan_generic(Format.CSR, np.arange(10), a, [(0, 20)], COLUMNS, None, None)
    # A code no spec has is refused by the format registry, never planned as another format.
    with pytest.raises(CompileError, match=r"^unknown format code 9; known: 0 \(csr\), 1 \(coo\), "
                       r"2 \(bitmap\), 3 \(nm\), 4 \(dense\), 5 \(csc\)$"):
        _plan_generic(9, np.arange(10), a, [(0, 20)], COLUMNS, None, None)
