"""End to end: every storage format and kernel on every backend, against NumPy.

One configuration with all formats enabled is built once per simulator; all
cases run in one simulation. Results must equal ``A @ x`` (or ``A @ X``) on the
same integers bit for bit, and the hardware's cycle counter must agree with the
ISA model's prediction within 5 %.
"""

import functools

import numpy as np
import pytest
import scipy.sparse as sp

from zeroskip import AcceleratorConfig
from zeroskip.firmware.compiler import compile_kernel
from zeroskip.firmware.reference import spmv_reference
from zeroskip.sim.backends import Job, run_many

CONFIG = AcceleratorConfig(pes=4, x_depth=256, nz_depth=512, row_depth=64, imem_depth=16,
                           formats=("csr", "coo", "bitmap", "nm", "dense", "csc"))
FORMATS = ("csr", "coo", "bitmap", "nm", "dense", "csc")


def random_matrix(rows, cols, density, seed):
    rng = np.random.default_rng(seed)
    matrix = sp.random(rows, cols, density=density, format="csr", random_state=rng,
                       data_rvs=lambda n: rng.integers(-60, 60, n))
    matrix.data[matrix.data == 0] = 3
    return matrix.astype(np.int64)


def nm_matrix(rows, cols, seed, n=2, m=4):
    """An N:M-structured matrix with padding: some groups hold fewer than N nonzeros."""
    rng = np.random.default_rng(seed)
    dense = np.zeros((rows, cols), dtype=np.int64)
    for r in range(rows):
        for g in range(0, cols, m):
            keep = rng.choice(m, size=rng.integers(0, n + 1), replace=False)
            dense[r, g + keep] = rng.integers(1, 50, len(keep)) * rng.choice([-1, 1], len(keep))
    return sp.csr_matrix(dense)


def ragged_matrix(seed):
    """A row with hundreds of nonzeros next to empty rows."""
    matrix = random_matrix(24, 200, 0.05, seed).tolil()
    matrix[3, :] = np.random.default_rng(seed).integers(1, 9, 200)
    matrix[4:9, :] = 0
    return matrix.tocsr()


def sparse_vector(cols, density, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(-8, 8, cols)
    x[rng.random(cols) >= density] = 0
    return x


def cases():
    """``name -> (matrix, x, kernel, fmt, compile kwargs)``."""
    c = {}
    a = random_matrix(30, 40, 0.15, seed=1)
    x = np.random.default_rng(2).integers(-8, 8, 40)
    x_sparse = sparse_vector(40, 0.2, seed=3)
    x_matrix = np.random.default_rng(4).integers(-8, 8, (40, 3))
    x_sparse_matrix = sp.random(40, 3, density=0.2, random_state=5, format="csr",
                                data_rvs=lambda n: np.arange(1, n + 1) % 7 - 3).astype(np.int64)
    nm = nm_matrix(16, 32, seed=6)
    for fmt in FORMATS:
        matrix = nm if fmt == "nm" else a
        xv = np.random.default_rng(7).integers(-8, 8, matrix.shape[1])
        c[f"{fmt}-spmv"] = (matrix, xv if fmt == "nm" else x, "spmv", fmt, {})
        if fmt != "nm":
            c[f"{fmt}-spmspv"] = (a, x_sparse, "spmspv", fmt, {})
            c[f"{fmt}-spmm"] = (a, x_matrix, "spmm", fmt, {})
            c[f"{fmt}-spmspm"] = (a, x_sparse_matrix, "spmspm", fmt, {})
    c["csc-all-zero-activations"] = (a, np.zeros(40, dtype=np.int64), "spmspv", "csc", {})
    c["csc-dense-activations"] = (a, x, "spmspv", "csc", {})
    c["csc-epilogue"] = (a, x_sparse, "spmspv", "csc",
                         {"bias": np.arange(30) * 5 - 60, "shift": 1, "relu": True})
    c["bitmap-ragged"] = (ragged_matrix(8), np.random.default_rng(9).integers(-8, 8, 200),
                          "spmv", "bitmap", {})
    c["coo-ragged"] = (ragged_matrix(8), np.random.default_rng(9).integers(-8, 8, 200),
                       "spmv", "coo", {})
    c["csr-ragged"] = (ragged_matrix(8), np.random.default_rng(9).integers(-8, 8, 200),
                       "spmv", "csr", {})
    c["dense-fully-dense"] = (sp.csr_matrix(np.random.default_rng(10).integers(1, 9, (12, 20))),
                              np.random.default_rng(11).integers(-8, 8, 20), "spmv", "dense", {})
    c["auto-spmm"] = (a, x_matrix, "auto", "auto", {})
    return c


@functools.lru_cache(maxsize=None)
def batch(backend):
    jobs = []
    for matrix, x, kernel, fmt, kwargs in cases().values():
        program = compile_kernel(matrix, CONFIG, x=x, kernel=kernel, fmt=fmt, **kwargs)
        jobs.append(Job(program, x))
    results = run_many(jobs, backend=backend)
    models = run_many(jobs, backend="model") if backend != "model" else results
    return dict(zip(cases(), zip(jobs, results, models)))


def expected(matrix, x, kwargs):
    x = x.toarray() if sp.issparse(x) else np.asarray(x)
    if x.ndim == 1:
        return spmv_reference(matrix, x, config=CONFIG, **kwargs)[0]
    return np.stack([spmv_reference(matrix, x[:, k], config=CONFIG, **kwargs)[0]
                     for k in range(x.shape[1])], axis=1)


@pytest.mark.parametrize("backend, case", [
    pytest.param(backend, case, marks=pytest.mark.xdist_group(f"formats-{backend}"),
                 id=f"{backend}-{case}")
    for backend in ("model", "icarus", "verilator") for case in cases()
])
def test_format_kernel_matches_numpy(backend, case):
    matrix, x, kernel, fmt, kwargs = cases()[case]
    job, result, model = batch(backend)[case]
    assert not isinstance(result, Exception), result
    assert not isinstance(model, Exception), model
    np.testing.assert_array_equal(result.y_raw.reshape(expected(matrix, x, kwargs).shape),
                                  expected(matrix, x, kwargs))
    if not kwargs:
        dense_x = x.toarray() if sp.issparse(x) else np.asarray(x)
        np.testing.assert_array_equal(result.y_raw.reshape(-1),
                                      (matrix @ dense_x).reshape(-1))
    for name in ("macs", "skipped", "insns"):
        assert result.counters[name] == model.counters[name], name
    assert result.counters["cycles"] == model.counters["cycles"]
