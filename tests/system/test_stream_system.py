"""End to end with an external memory: streamed SpMV (``LOAD``/``SYNC``) on every
backend that attaches one, against scipy and the ISA model.

As in ``test_spmv_system.py``, each (backend, configuration) runs all its cases
in one simulation; results equal scipy's ``A @ x`` bit for bit (or the model's
epilogue) and every counter, ``CYCLES`` included, equals the model's. The
matrices are larger than the lane memories, so the programs stream their lane
images from the external memory while they compute. The Verilog simulations
attach no external memory yet: they refuse the configurations.
"""

import dataclasses
import functools

import numpy as np
import pytest
import scipy.sparse as sp

from zeroskip import AcceleratorConfig
from zeroskip.core.config import ConfigError
from zeroskip.core.errors import DeviceError
from zeroskip.core.isa import ErrorCode, LoadRegion, Opcode
from zeroskip.firmware.asm import decode, encode_halt, encode_load, encode_sync
from zeroskip.firmware.compiler import compile_spmv
from zeroskip.firmware.reference import spmv_reference
from zeroskip.sim.backends import Job, run_many

CONFIGS = {
    "s2": AcceleratorConfig(pes=2, x_depth=128, nz_depth=64, row_depth=16, imem_depth=64,
                            ext_words=1 << 12, ext_latency=5),
    "s3v8": AcceleratorConfig(pes=3, value_width=8, acc_width=20, x_depth=64, nz_depth=64,
                              row_depth=32, imem_depth=64, cluster_lanes=3,
                              ext_words=1 << 12, ext_latency=1),
}


def random_int_matrix(rows, cols, density, seed, low=-100, high=100):
    rng = np.random.default_rng(seed)
    matrix = sp.random(rows, cols, density=density, format="csr", random_state=rng,
                       data_rvs=lambda n: rng.integers(low, high, n))
    matrix.data[matrix.data == 0] = 1
    return matrix.astype(np.int64)


def vector(cols, seed, low=-8, high=8):
    return np.random.default_rng(seed).integers(low, high, cols)


def prefix_code(*words):
    """A program mutation: the first tile runs ``words`` before its microcode."""
    def mutate(program):
        tile = program.tiles[0]
        code = np.concatenate([np.array(words, dtype=np.uint64), tile.code])
        program.tiles[0] = dataclasses.replace(tile, code=code)
    return mutate


def replace_code(*words):
    """A program mutation: the first tile runs ``words`` instead of its microcode."""
    def mutate(program):
        program.tiles[0] = dataclasses.replace(program.tiles[0],
                                               code=np.array(words, dtype=np.uint64))
    return mutate


def queued_bias_loads(config, loads):
    """``loads`` loads of whole ``bias`` memories (unused by the tiles) queued ahead
    of the first tile's own, one of them of no words: the queue fills and the
    first ``SYNC`` waits for them all."""
    words = [encode_load(region=LoadRegion.BIAS, count=config.row_depth,
                         src=k * config.pes * config.row_depth) for k in range(loads)]
    words.insert(2, encode_load(region=LoadRegion.PTR, dst_base=3, count=0, src=0))
    return words


def cases_for(config_name):
    """``name -> (matrix, x, expected error code or None, options[, mutation])``."""
    config = CONFIGS[config_name]
    rows = 60 if config_name == "s2" else 70
    c = {
        "streamed": (random_int_matrix(rows, 100, 0.1, seed=1), vector(100, 1), None, {}),
        "streamed-epilogue": (random_int_matrix(rows, 100, 0.1, seed=2), vector(100, 2), None,
                              {"bias": np.arange(rows) * 7 - 200, "shift": 2, "relu": True}),
        "wider-than-x": (random_int_matrix(20, 2 * config.x_depth + 10, 0.1, seed=3),
                         vector(2 * config.x_depth + 10, 3), None, {}),
        "queue-full": (random_int_matrix(rows, 100, 0.1, seed=4), vector(100, 4), None, {},
                       prefix_code(*queued_bias_loads(config, 6))),
        "bad-load": (random_int_matrix(rows, 100, 0.1, seed=5), vector(100, 5),
                     ErrorCode.DESCRIPTOR, {},
                     replace_code(encode_sync(),
                                  encode_load(region=LoadRegion.NZ, dst_base=1,
                                              count=config.nz_depth, src=0),
                                  encode_halt())),
        "error-with-loads-queued": (random_int_matrix(rows, 100, 0.1, seed=6), vector(100, 6),
                                    ErrorCode.ILLEGAL_INSN, {},
                                    replace_code(*queued_bias_loads(config, 3), 0xF,
                                                 encode_halt())),
    }
    if config_name == "s2":
        c["split-rows"] = (random_int_matrix(rows, 100, 0.1, seed=7), vector(100, 7), None,
                           {"split_rows": True})
    return c


@functools.lru_cache(maxsize=None)
def batch(backend, config_name):
    config = CONFIGS[config_name]
    cases = cases_for(config_name)
    jobs = []
    for matrix, x, _, options, *mutation in cases.values():
        program = compile_spmv(matrix, config, stream=True, **options)
        for mutate in mutation:
            mutate(program)
        jobs.append(Job(program, x))
    results = run_many(jobs, backend=backend)
    models = run_many(jobs, backend="model") if backend != "model" else results
    return {name: (case, job, result, model)
            for (name, case), job, result, model in zip(cases.items(), jobs, results, models)}


PARAMS = [
    pytest.param(backend, config_name, case,
                 marks=pytest.mark.xdist_group(f"stream-{backend}-{config_name}"),
                 id=f"{backend}-{config_name}-{case}")
    for backend in ("model", "pysim") for config_name in CONFIGS
    for case in cases_for(config_name)
]


@pytest.mark.parametrize("backend, config_name, case", PARAMS)
def test_streamed_spmv_matches_scipy_and_the_model(backend, config_name, case):
    (matrix, x, error_code, options, *_), job, result, model = batch(backend, config_name)[case]
    config = CONFIGS[config_name]
    if error_code is not None:
        assert isinstance(result, DeviceError), result
        assert isinstance(model, DeviceError), model
        assert (result.code, result.pc) == (error_code, model.pc)
        return
    assert not isinstance(result, Exception), result
    loads = [args for tile in job.program.tiles for opcode, args in
             map(decode, tile.code.tolist()) if opcode is Opcode.LOAD]
    assert len(loads) > 2 and job.program.ext is not None
    assert job.program.ext.size > config.pes * config.nz_depth    # more than the lanes hold
    epi = {key: value for key, value in options.items() if key != "split_rows"}
    expected, overflow = spmv_reference(matrix, x, config=config, **epi)
    assert not overflow
    if not epi:
        np.testing.assert_array_equal(expected, matrix @ np.asarray(x))
    np.testing.assert_array_equal(result.y_raw, expected)
    np.testing.assert_array_equal(result.y_raw, model.y_raw)
    assert result.counters == model.counters


@pytest.mark.parametrize("backend", ["icarus", "verilator"])
def test_the_verilog_simulations_refuse_an_external_memory(backend):
    matrix = random_int_matrix(20, 30, 0.1, seed=8)
    program = compile_spmv(matrix, CONFIGS["s2"], stream=True)
    with pytest.raises(ConfigError) as info:
        run_many([Job(program, vector(30, 8))], backend=backend)
    assert str(info.value) == (
        "ext_words 4096: no board or Verilog simulation attaches the generated hardware's "
        "external-memory port yet; only the ISA model and the Amaranth simulator (pysim) run "
        "ext_words > 0")
