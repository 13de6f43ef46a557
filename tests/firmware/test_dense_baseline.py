"""``program.dense_cycles``: dense mode on every row and column of the matrix,
equal to the ISA model running the matrix stored densely, never below the
products bound."""

import numpy as np
import pytest
import scipy.sparse

from zeroskip.core.config import AcceleratorConfig
from zeroskip.firmware.compiler import compile_kernel
from zeroskip.firmware.cycles import dense_floor
from zeroskip.sim.backends import run_model

CONFIGS = [AcceleratorConfig(formats=("csr", "dense", "csc")),
           AcceleratorConfig(pes=4, x_banks=4, cluster_lanes=4, x_depth=64, nz_depth=32,
                             row_depth=16, formats=("csr", "dense"))]


@pytest.mark.parametrize("config", CONFIGS, ids=["default", "banked"])
@pytest.mark.parametrize("rows,cols,k", [(37, 50, 0), (37, 130, 3), (5, 7, 1)])
@pytest.mark.parametrize("epilogue", [False, True])
def test_dense_cycles_equal_the_model_in_dense_mode(config, rows, cols, k, epilogue):
    rng = np.random.default_rng(rows + cols + k)
    full = rng.integers(1, 5, (rows, cols))
    sparse = full * (rng.random((rows, cols)) < 0.1)
    sparse[: rows // 2] = 0     # empty rows are not run, but dense mode runs them
    x = rng.integers(-3, 4, (cols, k)) if k else rng.integers(-3, 4, cols)
    kwargs = dict(bias=rng.integers(-5, 5, rows), shift=2, relu=True) if epilogue else {}
    program = compile_kernel(sparse, config, x=x, **kwargs)
    dense = compile_kernel(full, config, x=x, fmt="dense", dense_baseline=False, **kwargs)
    assert program.dense_cycles == run_model(dense, x).counters["cycles"]
    assert program.dense_cycles >= dense_floor(rows, cols, max(k, 1), config)


def test_one_nonzero_in_a_large_matrix_still_costs_every_product():
    config = AcceleratorConfig()
    a = scipy.sparse.csr_matrix(([3], ([0], [0])), shape=(1024, 1024), dtype=np.int64)
    program = compile_kernel(a, config)
    assert program.dense_cycles >= 131072
