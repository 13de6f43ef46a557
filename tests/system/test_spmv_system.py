"""End to end: the same SpMV jobs on every backend, against scipy and the ISA model.

Each (backend, configuration) runs all its cases in one simulation of one
build; the cases then check their own results. Results must equal scipy's
``A @ x`` on the same integers bit for bit, the hardware's counters must agree
with the ISA model's, and errors must carry the model's error code.
"""

import dataclasses
import functools
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from zeroskip import AcceleratorConfig
from zeroskip.core.errors import DeviceError
from zeroskip.core.isa import ErrorCode, Insn, Opcode
from zeroskip.firmware.asm import encode_halt, encode_nop, encode_spmv
from zeroskip.firmware.compiler import compile_spmv
from zeroskip.firmware.loader import load_matrix
from zeroskip.firmware.quant import quantize
from zeroskip.firmware.reference import spmv_reference
from zeroskip.sim.backends import Job, run_many

DATA = Path(__file__).resolve().parents[2] / "examples" / "data"

# p4: two gather clusters of two lanes (banks shared inside a cluster);
# p3v8: one cluster of three; p1 (and the format tests): private copies of x.
CONFIGS = {
    "p4": AcceleratorConfig(pes=4, x_depth=256, nz_depth=512, row_depth=64, imem_depth=8,
                            cluster_lanes=2),
    "p1": AcceleratorConfig(pes=1, x_depth=64, nz_depth=128, row_depth=16, imem_depth=8),
    "p3v8": AcceleratorConfig(pes=3, value_width=8, acc_width=20, x_depth=64, nz_depth=128,
                              row_depth=32, imem_depth=8, cluster_lanes=3),
}


def random_int_matrix(rows, cols, density, seed, low=-100, high=100):
    rng = np.random.default_rng(seed)
    matrix = sp.random(rows, cols, density=density, format="csr", random_state=rng,
                       data_rvs=lambda n: rng.integers(low, high, n))
    matrix.data[matrix.data == 0] = 1
    return matrix.astype(np.int64)


def sample(name, value_width=16):
    return sp.csr_matrix(quantize(load_matrix(DATA / f"{name}.mtx"),
                                  value_width=value_width).ints).astype(np.int64)


def vector(cols, seed, low=-8, high=8):
    return np.random.default_rng(seed).integers(low, high, cols)


def edge_matrix():
    """Extreme values, negative values, empty rows and a ragged row."""
    dense = np.zeros((9, 12), dtype=np.int64)
    dense[0, 0] = -32768
    dense[0, 5] = 32767
    dense[2, :] = np.arange(1, 13) * -7
    dense[5, 11] = 1
    dense[8, 3] = -32768
    return sp.csr_matrix(dense)


def ragged_matrix(seed):
    """Two rows of 200+ nonzeros among short and empty rows (40 x 240)."""
    rng = np.random.default_rng(seed)
    dense = np.zeros((40, 240), dtype=np.int64)
    for row in rng.choice(40, 12, replace=False):
        cols = rng.choice(240, rng.integers(1, 6), replace=False)
        dense[row, cols] = rng.integers(-100, 100, len(cols))
    for row in (5, 6):
        cols = rng.choice(240, rng.integers(200, 240), replace=False)
        dense[row, cols] = rng.integers(-100, 100, len(cols))
    return sp.csr_matrix(dense)


def edge_vector():
    return np.array([-32768, 5, -3, 32767, 0, 32767, 1, 0, 2, -1, 4, 9])


def split_insns(code):
    """The ``REDUCE`` instructions of a tile's microcode."""
    return [word for word in code if Insn.from_bits(int(word)).opcode == Opcode.REDUCE]


def replace_code(*words):
    """A program mutation: the first tile runs ``words`` instead of its microcode."""
    def mutate(program):
        tile = program.tiles[0]
        program.tiles[0] = dataclasses.replace(tile, code=np.array(words, dtype=np.uint64))
    return mutate


#: Hand-written microcode the hardware must refuse: (words, error code, failing pc).
BAD_PROGRAMS = {
    "illegal-instruction": ((encode_nop(), 0xF, encode_halt()), ErrorCode.ILLEGAL_INSN, 1),
    "descriptor-out-of-range": ((encode_spmv(ptr_base=15), encode_halt()),
                                ErrorCode.DESCRIPTOR, 0),
    "no-halt": ((encode_nop(),) * 8, ErrorCode.PC_OVERRUN, 8),
}


def cases_for(config_name):
    """``name -> (matrix, x, expected error code or None, epilogue kwargs[, mutation])``."""
    c = {}
    if config_name == "p4":
        for density in (0.01, 0.05, 0.2, 0.5):
            matrix = random_int_matrix(61, 47, density, seed=int(density * 100))
            c[f"random-{density:.0%}"] = (matrix, vector(47, 1), None, {})
        for name in ("west0067", "cage5", "494_bus", "Erdos971"):
            matrix = sample(name)
            c[name] = (matrix, vector(matrix.shape[1], 2), None, {})
        empty = random_int_matrix(40, 30, 0.1, seed=5).tolil()
        empty[3:9, :] = 0
        empty[20, :] = 0
        c["empty-rows"] = (empty.tocsr(), vector(30, 3), None, {})
        c["all-zero"] = (sp.csr_matrix((13, 17), dtype=np.int64), vector(17, 4), None, {})
        single = sp.csr_matrix(([-5], ([7], [11])), shape=(10, 14))
        c["single-nonzero"] = (single, vector(14, 5), None, {})
        c["extremes"] = (edge_matrix(), edge_vector(), None, {})
        c["tiled"] = (random_int_matrix(300, 600, 0.03, seed=6), vector(600, 6), None, {})
        big = sp.csr_matrix(np.full((2, 3), -32768))
        c["overflow"] = (big, np.array([-32768, -32768, -32768]), ErrorCode.OVERFLOW, {})
        c["epilogue"] = (random_int_matrix(30, 30, 0.3, seed=7), vector(30, 7), None,
                         {"bias": np.arange(-15, 15) * 40, "shift": 3, "relu": True,
                          "clamp": (0, 50)})
        # Rows of hundreds of nonzeros next to empty rows: split across the
        # lanes and reduced back (REDUCE), with and without the epilogue.
        c["ragged-split"] = (ragged_matrix(13), vector(240, 14), None, {"split_rows": True})
        c["ragged-split-epilogue"] = (ragged_matrix(14), vector(240, 15), None,
                                      {"split_rows": True, "bias": np.arange(-20, 20) * 30,
                                       "shift": 2, "relu": True})
    elif config_name == "p1":
        c["random-20%"] = (random_int_matrix(20, 30, 0.2, seed=8), vector(30, 8), None, {})
        c["tiled"] = (random_int_matrix(40, 100, 0.1, seed=9), vector(100, 9), None, {})
        c["west0067"] = (sample("west0067"), vector(67, 10), None, {})
        for name, (words, code, _) in BAD_PROGRAMS.items():
            c[name] = (random_int_matrix(20, 30, 0.2, seed=8), vector(30, 8), code, {},
                       replace_code(*words))
    else:
        c["random-30%"] = (random_int_matrix(31, 20, 0.3, seed=11, low=-128, high=128),
                           vector(20, 11), None, {})
        c["saturating-epilogue"] = (random_int_matrix(31, 20, 0.5, seed=12, low=-128, high=128),
                                    vector(20, 12, -128, 128), None, {"shift": 2})
        c["cage5"] = (sample("cage5", value_width=8), vector(37, 13), None, {})
    return c


@functools.lru_cache(maxsize=None)
def batch(backend, config_name):
    """Compile every case of a configuration and run them together on ``backend``."""
    config = CONFIGS[config_name]
    cases = cases_for(config_name)
    jobs = []
    for matrix, x, _, options, *mutation in cases.values():
        program = compile_spmv(matrix, config, **options)
        for mutate in mutation:
            mutate(program)
        jobs.append(Job(program, x))
    # p1 loads through the host port (AXI4-Lite) on every backend; the others
    # use the simulators' back door (the default), which test_backdoor.py proves equal.
    results = run_many(jobs, backend=backend, load="axi" if config_name == "p1" else None)
    models = run_many(jobs, backend="model") if backend != "model" else results
    return {name: (case, job, result, model)
            for (name, case), job, result, model in zip(cases.items(), jobs, results, models)}


BACKENDS = ["model", "pysim", "icarus", "verilator"]
PARAMS = [
    pytest.param(backend, config_name, case,
                 marks=pytest.mark.xdist_group(f"{backend}-{config_name}"),
                 id=f"{backend}-{config_name}-{case}")
    for backend in BACKENDS for config_name in CONFIGS for case in cases_for(config_name)
    # The Amaranth simulator is slow: it gets the small configurations only.
    if not (backend == "pysim" and config_name == "p4")
]


@pytest.mark.parametrize("backend, config_name, case", PARAMS)
def test_spmv_matches_scipy(backend, config_name, case):
    (matrix, x, error_code, options, *_), job, result, model = batch(backend, config_name)[case]
    epi = {key: value for key, value in options.items() if key != "split_rows"}
    config = CONFIGS[config_name]
    if error_code is not None:
        # The run stops with the error the model predicts; the driver does not hang.
        assert isinstance(result, DeviceError), result
        assert isinstance(model, DeviceError), model
        assert (result.code, result.pc) == (error_code, model.pc)
        if case in BAD_PROGRAMS:
            assert result.pc == BAD_PROGRAMS[case][2]
        return
    assert not isinstance(result, Exception), result
    expected, overflow = spmv_reference(matrix, x, config=config, **epi)
    assert not overflow
    if not epi:
        np.testing.assert_array_equal(expected, matrix.astype(np.int64) @ np.asarray(x))
    np.testing.assert_array_equal(result.y_raw, expected)
    # The hardware's counters agree with the ISA model's prediction.
    for name in ("insns", "macs", "skipped", "pe_busy"):
        assert result.counters[name] == model.counters[name], name
    assert result.counters["macs"] + result.counters["skipped"] == matrix.count_nonzero()
    assert result.counters["cycles"] == model.counters["cycles"]
    assert result.counters["gather_stalls"] == model.counters["gather_stalls"]
    assert result.counters["scatter_stalls"] == model.counters["scatter_stalls"]
    if options.get("split_rows"):
        # The long rows really were split and reduced back.
        assert any(split_insns(tile.code) for tile in job.program.tiles)
