"""The model backend runs through the one driver and reports what the old host loop did.

``_host_loop_before`` is the model's own host loop as it was before the model
ran through :class:`~zeroskip.sim.driver.Driver` (kept here as the oracle):
outputs, every counter, and for an error its code, instruction and tile.
"""

import numpy as np
import pytest
import scipy.sparse

from zeroskip.core.config import AcceleratorConfig
from zeroskip.core.errors import DeviceError
from zeroskip.core.isa import STATUS_ERROR, ErrorCode, Reg, Region
from zeroskip.firmware.compiler import compile_kernel, compile_spmv
from zeroskip.firmware.model import Machine
from zeroskip.sim.backends import model_counters, run, run_model

ALL = ("csr", "coo", "bitmap", "nm", "dense", "csc")
FULL = AcceleratorConfig(pes=4, x_depth=128, nz_depth=512, row_depth=32, imem_depth=16,
                         formats=ALL)
#: Small memories: a matrix takes several tiles.
SMALL = AcceleratorConfig(pes=2, value_width=8, acc_width=16, x_depth=32, nz_depth=64,
                          row_depth=8, imem_depth=16)
_COUNTERS = {Reg.CYCLES: "cycles", Reg.INSNS: "insns", Reg.MACS: "macs",
             Reg.SKIPPED: "skipped", Reg.GATHER_STALLS: "gather_stalls",
             Reg.SCATTER_STALLS: "scatter_stalls"}


def _host_loop_before(program, x_int):
    """``(y_raw, counters, (code, pc, tile) or None)`` as the model's old host loop gave them."""
    config = program.config
    machine = Machine(config)
    x = program.operand(x_int)
    columns = x if x.ndim == 2 else x[:, None]
    m = machine.map
    y = program.empty_result()
    y_view = y if y.ndim == 2 else y[:, None]
    totals = dict.fromkeys(_COUNTERS.values(), 0)
    pe_busy = [0] * config.pes
    error = None
    for index, tile in enumerate(program.tiles):
        code = np.asarray(tile.code, dtype=np.uint64)
        halves = np.empty(2 * len(code), dtype=np.int64)
        halves[0::2] = (code & np.uint64(0xFFFF_FFFF)).astype(np.int64)
        halves[1::2] = (code >> np.uint64(32)).astype(np.int64)
        machine.write_words(m.imem(0), halves)
        for address, column, start, stop in tile.loads():
            machine.write_words(m.x(address), columns[start:stop, column] & 0xFFFF_FFFF)
        for p in range(config.pes):
            machine.write_words(m.lane(Region.PTR, p, 0), tile.ptr[p])
            machine.write_words(m.lane(Region.NZ, p, 0), tile.nz[p])
            if tile.meta is not None:
                machine.write_words(m.lane(Region.META, p, 0), tile.meta[p])
            if tile.bias is not None:
                machine.write_words(m.lane(Region.BIAS, p, 0),
                                    np.asarray(tile.bias[p], dtype=np.int64) & 0xFFFF_FFFF)
        machine.write_word(m.reg(Reg.CTRL), 3)     # clear | start
        status = machine.read_word(m.reg(Reg.STATUS))
        for reg, name in _COUNTERS.items():
            totals[name] += machine.read_word(m.reg(reg))
        for p in range(config.pes):
            pe_busy[p] += machine.read_word(m.pe_busy(p))
        failed = status & STATUS_ERROR
        if failed:
            error = (ErrorCode((status >> 8) & 0xFF), machine.read_word(m.reg(Reg.PC)), index)
        if not failed or error[0] == ErrorCode.OVERFLOW:
            readback = tile.results()
            for p in range(config.pes):
                mine = readback[readback[:, 0] == p]
                if len(mine) == 0:
                    continue
                words = machine.read_words(m.lane(Region.OUT, p, 0), int(mine[:, 1].max()) + 1)
                words = words[mine[:, 1]] & 0xFFFF_FFFF
                y_view[mine[:, 2], mine[:, 3]] = words - ((words >> 31) << 32)
        if failed:
            break
    totals["pe_busy"] = pe_busy
    return y, totals, error


def _driver(program, x):
    """The same triple from :func:`run_model`."""
    try:
        result = run_model(program, x)
    except DeviceError as error:
        return error.result.y_raw, error.result.counters, (error.code, error.pc, error.tile)
    return result.y_raw, result.counters, None


def _assert_same(program, x):
    y_before, counters_before, error_before = _host_loop_before(program, x)
    y, counters, error = _driver(program, x)
    assert y.dtype == y_before.dtype and y.shape == y_before.shape
    np.testing.assert_array_equal(y, y_before)
    assert counters == counters_before
    assert error == error_before
    return error


def _matrix(rng, rows, cols, density, low=-40, high=40):
    a = scipy.sparse.random(rows, cols, density=density, format="csr", random_state=rng)
    a.data = rng.integers(low, high + 1, a.nnz).astype(np.int64)
    a.eliminate_zeros()
    return a


@pytest.mark.parametrize("fmt", ALL)
def test_every_format(fmt):
    rng = np.random.default_rng(ALL.index(fmt))
    a = _matrix(rng, 70, 90, 0.08)
    x = rng.integers(-9, 10, 90) * (rng.random(90) < 0.4)
    program = compile_kernel(a, FULL, x=x, fmt=fmt, prune_nm=fmt == "nm",
                             bias=rng.integers(-50, 50, 70),
                             shift=1, relu=True, clamp=(-30, 500))
    assert _assert_same(program, x) is None


def test_split_rows_and_several_tiles():
    rng = np.random.default_rng(21)
    a = _matrix(rng, 48, 600, 0.005).tolil()
    a[3, rng.choice(600, 400, replace=False)] = 1
    a[20, rng.choice(600, 250, replace=False)] = -1
    program = compile_spmv(a.tocsr(), AcceleratorConfig(pes=8))
    assert program.report["balance"]["split"]
    assert _assert_same(program, rng.integers(-5, 6, 600)) is None
    small = compile_spmv(_matrix(rng, 60, 40, 0.2, -3, 3), SMALL)
    assert len(small.tiles) > 2
    assert _assert_same(small, rng.integers(-3, 4, 40)) is None


def test_matrix_operand():
    rng = np.random.default_rng(22)
    a = _matrix(rng, 30, 25, 0.2)
    x = rng.integers(-4, 5, (25, 3))
    program = compile_kernel(a, FULL, x=x)
    assert program.is_matrix
    assert _assert_same(program, x) is None


def test_overflow_in_a_later_tile():
    a = np.ones((40, 4), dtype=np.int64)
    a[30:] = 127                    # rows of the third tile overflow 16 bits
    program = compile_spmv(scipy.sparse.csr_matrix(a), SMALL)
    x = np.full(4, 127)
    code, pc, tile = _assert_same(program, x)
    assert code == ErrorCode.OVERFLOW and tile > 0
    with pytest.raises(DeviceError) as info:
        run(program, x, backend="model")
    assert str(info.value) == (f"the accelerator stopped with OVERFLOW at instruction {pc} "
                               f"(tile {tile})")
    assert (info.value.code, info.value.pc, info.value.tile) == (code, pc, tile)
    assert model_counters(program, x) == info.value.result.counters


def test_illegal_instruction():
    program = compile_kernel(np.eye(4, dtype=np.int64), FULL, fmt="dense")
    program.config = AcceleratorConfig(pes=4, x_depth=128, nz_depth=512, row_depth=32,
                                       imem_depth=16, formats=("csr",))
    assert _assert_same(program, np.ones(4, dtype=np.int64)) == (ErrorCode.ILLEGAL_INSN, 0, 0)
