import numpy as np
import pytest
import scipy.sparse

from zeroskip.core import timing
from zeroskip.core.config import AcceleratorConfig
from zeroskip.core.errors import CompileError, DeviceError, InputError
from zeroskip.core.isa import ErrorCode, Opcode
from zeroskip.firmware.asm import decode
from zeroskip.firmware.compiler import compile_spmv
from zeroskip.firmware.compiler.gather import _order_lanes
from zeroskip.firmware.program import unpack_nz
from zeroskip.firmware.reference import spmv_reference
from zeroskip.sim.backends import run_model

DEFAULT = AcceleratorConfig()
SMALL = AcceleratorConfig(pes=3, value_width=8, acc_width=32, x_depth=16, nz_depth=16,
                          row_depth=8, imem_depth=4)


def random_matrix(rng, rows, cols, density, low, high):
    """A random integer CSR matrix with values in [low, high] (zeros dropped)."""
    a = scipy.sparse.random(rows, cols, density=density, format="csr", random_state=rng)
    a.data = rng.integers(low, high + 1, a.nnz).astype(np.int64)
    a.eliminate_zeros()
    return a


def run_and_check(a, x, config, **options):
    program = compile_spmv(a, config, **options)
    result = run_model(program, x)
    epilogue = program.epilogue.applied
    expected, overflow = spmv_reference(a, x, config=config, bias=options.get("bias"),
                                        shift=options.get("shift", 0),
                                        relu=options.get("relu", False),
                                        clamp=options.get("clamp"), epilogue=epilogue)
    assert not overflow
    assert np.array_equal(result.y_raw, expected)
    if not epilogue and options.get("bias") is None:
        assert np.array_equal(result.y_raw, scipy.sparse.csr_matrix(a).astype(np.int64) @ x)
    c = result.counters
    csr = scipy.sparse.csr_matrix(a)
    csr.eliminate_zeros()
    assert program.nnz == csr.nnz
    assert c["macs"] + c["skipped"] == csr.nnz
    assert c["macs"] == int(np.count_nonzero(x[csr.indices]))
    assert c["pe_busy"] == program.lane_nnz.tolist()
    assert c["cycles"] == program.predicted_cycles()
    assert c["insns"] == sum(len(t.code) for t in program.tiles)
    rows_read = np.concatenate([t.readback[:, 2] for t in program.tiles]) if program.tiles \
        else np.zeros(0)
    # Each row is read back at most once; the rows never run are exactly the
    # empty rows whose result is 0 (they cost nothing and read as 0).
    times_read = np.bincount(rows_read.astype(np.int64), minlength=a.shape[0])
    assert times_read.max(initial=0) <= 1
    empty_zero = (np.diff(csr.indptr) == 0) & (expected == 0)
    assert np.array_equal(times_read == 0, empty_zero)
    return program, result


@pytest.mark.parametrize("density", [0.01, 0.05, 0.2, 0.5])
@pytest.mark.parametrize("config", [DEFAULT, DEFAULT.replace(pes=1), DEFAULT.replace(pes=3),
                                    SMALL], ids=["p8", "p1", "p3", "small"])
def test_random_matrices(density, config):
    rng = np.random.default_rng(int(density * 1000) + config.pes)
    a = random_matrix(rng, 61, 45, density, -20, 20)
    x = rng.integers(-20, 21, 45)
    run_and_check(a, x, config)


def test_macs_and_skips_follow_zero_operands():
    rng = np.random.default_rng(3)
    a = random_matrix(rng, 30, 30, 0.3, -5, 5)
    x = rng.integers(-2, 3, 30)
    program, result = run_and_check(a, x, DEFAULT)
    csr = scipy.sparse.csr_matrix(a)
    cols = csr.indices
    assert result.counters["skipped"] == int(np.count_nonzero(x[cols] == 0))


def test_empty_rows_and_empty_matrix():
    rng = np.random.default_rng(4)
    a = random_matrix(rng, 50, 20, 0.1, -9, 9).tolil()
    a[10:30, :] = 0
    a = a.tocsr()
    run_and_check(a, rng.integers(-9, 10, 20), DEFAULT)
    program, result = run_and_check(scipy.sparse.csr_matrix((7, 5), dtype=np.int64),
                                    np.ones(5, dtype=np.int64), DEFAULT)
    assert program.nnz == 0 and result.y_raw.tolist() == [0] * 7
    # Nothing to run: no tile, no cycle.
    assert program.tiles == [] and result.counters["cycles"] == 0
    # Empty rows with a bias, or an epilogue that maps 0 elsewhere, still run.
    bias = np.array([0, 5, 0, -3, 0, 0, 9])
    program, result = run_and_check(scipy.sparse.csr_matrix((7, 5), dtype=np.int64),
                                    np.ones(5, dtype=np.int64), DEFAULT, bias=bias)
    assert result.y_raw.tolist() == bias.tolist()
    assert program.tiles[0].x_cols == (0, 0)
    assert sorted(program.tiles[0].readback[:, 2].tolist()) == [1, 3, 6]
    program, result = run_and_check(a, rng.integers(-9, 10, 20), DEFAULT, clamp=(2, 100))
    assert (result.y_raw >= 2).all() and sum(len(t.readback) for t in program.tiles) == 50


def test_single_nonzero_and_explicit_zeros():
    a = scipy.sparse.coo_matrix(([0, 7, 0], ([0, 3, 4], [1, 2, 0])), shape=(5, 4))
    program, result = run_and_check(a, np.array([1, 2, 3, 4]), DEFAULT)
    assert program.nnz == 1
    assert result.y_raw.tolist() == [0, 0, 0, 21, 0]
    assert sum(len(nz) for nz in program.tiles[0].nz) == 1


def test_duplicates_are_summed_and_dense_input_works():
    a = scipy.sparse.coo_matrix(([3, 4], ([1, 1], [0, 0])), shape=(2, 2))
    _, result = run_and_check(a, np.array([2, 0]), DEFAULT)
    assert result.y_raw.tolist() == [0, 14]
    _, result = run_and_check(np.array([[1, -1], [0, 2]]), np.array([3, 4]), DEFAULT)
    assert result.y_raw.tolist() == [-1, 8]


@pytest.mark.parametrize("width", [8, 16])
def test_value_width_extremes(width):
    config = DEFAULT.replace(value_width=width, acc_width=32)
    lo, hi = config.value_min, config.value_max
    # one product per row keeps the accumulator in range at both widths
    a = scipy.sparse.csr_matrix(np.diag([lo, hi, lo, hi, -1]))
    x = np.array([lo, lo, hi, hi, lo])
    _, result = run_and_check(a, x, config)
    assert result.y_raw.tolist() == [lo * lo, hi * lo, lo * hi, hi * hi, -lo]


def test_value_width_8_random():
    config = DEFAULT.replace(value_width=8, acc_width=16, pes=4)
    rng = np.random.default_rng(5)
    a = random_matrix(rng, 40, 40, 0.2, -128, 127)
    x = rng.integers(-4, 5, 40)
    run_and_check(a, x, config)


def test_row_blocks_and_column_tiles():
    rng = np.random.default_rng(6)
    a = random_matrix(rng, 40, 50, 0.3, -9, 9)
    program, _ = run_and_check(a, rng.integers(-9, 10, 50), SMALL)
    assert len(program.tiles) > 4
    column_tiles = {t.x_cols for t in program.tiles}
    assert len(column_tiles) == 4   # 50 columns in tiles of 16
    for tile in program.tiles:
        assert all(len(p) <= SMALL.row_depth for p in tile.ptr)
        assert all(int(p[0]) + 1 <= SMALL.row_depth for p in tile.ptr)
        assert all(len(nz) <= SMALL.nz_depth for nz in tile.nz)
        assert tile.x_cols[1] - tile.x_cols[0] <= SMALL.x_depth
    # within a row block: first tile overwrites, later ones accumulate, the last reads back
    flags = [decode(int(t.code[0]))[1]["accumulate"] for t in program.tiles]
    assert flags[0] == 0 and 1 in flags


def test_dense_row_longer_than_nz_depth():
    config = SMALL.replace(x_depth=64)
    rng = np.random.default_rng(7)
    a = scipy.sparse.csr_matrix(rng.integers(1, 5, (3, 64)))
    program, _ = run_and_check(a, rng.integers(-3, 4, 64), config)
    assert {t.x_cols[1] - t.x_cols[0] for t in program.tiles} == {16}


def test_epilogues():
    rng = np.random.default_rng(8)
    a = random_matrix(rng, 37, 29, 0.3, -100, 100)
    x = rng.integers(-100, 101, 29)
    bias = rng.integers(-5000, 5000, 37)
    for options in [dict(bias=bias), dict(shift=6), dict(relu=True),
                    dict(clamp=(-50, 20)), dict(bias=bias, shift=4, relu=True, clamp=(-7, 300)),
                    dict(epilogue=True)]:
        for config in (DEFAULT, SMALL.replace(value_width=16)):
            program, result = run_and_check(a, x, config, **options)
            epi = program.epilogue
            assert epi.applied == any(k in options for k in ("shift", "relu", "clamp",
                                                             "epilogue"))
            assert epi.has_bias == ("bias" in options)
    program = compile_spmv(a, DEFAULT, shift=3)
    ops = [decode(int(w))[0] for w in program.tiles[-1].code]
    assert ops == [Opcode.SET_EPI, Opcode.SPMV, Opcode.HALT]
    assert program.y_frac_bits == -3


def test_epilogue_only_on_last_column_tile():
    rng = np.random.default_rng(9)
    a = random_matrix(rng, 6, 40, 0.5, -9, 9)
    program = compile_spmv(a, SMALL.replace(value_width=16), bias=np.arange(6), relu=True)
    for tile in program.tiles:
        last = len(tile.readback) > 0
        spmv = [decode(int(w))[1] for w in tile.code if decode(int(w))[0] == Opcode.SPMV][0]
        assert spmv["epilogue"] == spmv["bias"] == int(last)
        assert (tile.bias is not None) == last


def test_overflow_is_detected():
    config = DEFAULT.replace(value_width=8, acc_width=16)
    a = scipy.sparse.csr_matrix(np.full((2, 4), 127))
    x = np.full(4, 127)
    with pytest.raises(DeviceError) as info:
        run_model(compile_spmv(a, config), x)
    _, overflow = spmv_reference(a, x, config=config)
    assert overflow
    assert info.value.code == ErrorCode.OVERFLOW and info.value.tile == 0
    _, overflow = spmv_reference(np.array([[1]]), np.array([1]), config=config,
                                 bias=np.array([32767]))
    assert overflow


@pytest.mark.parametrize("kwargs, message", [
    (dict(matrix=np.array([[0, 0.5]])),
     "matrix value 0.5 at row 0, column 1 is not an integer (quantize it first)"),
    (dict(matrix=scipy.sparse.csr_matrix(np.array([[0, 0], [0, 70000]]))),
     "matrix value 70000 at row 1, column 1 does not fit 16-bit signed values"),
    (dict(bias=np.arange(3)), "bias has 3 values but the matrix has 2 rows"),
    (dict(bias=np.array([0, 2**31])),
     "bias value 2147483648 at index 1 does not fit 32-bit signed accumulators"),
    (dict(shift=32), "shift must be between 0 and 31, not 32"),
    (dict(clamp=(5, 4)), "clamp low bound 5 exceeds high bound 4"),
    (dict(clamp=(0, 40000)), "clamp high bound must be between -32768 and 32767, not 40000"),
    (dict(clamp=3), "clamp must be a pair (lo, hi), not 3"),
    (dict(relu=1), "relu must be True or False, not 1"),
    (dict(shift=2, epilogue=False),
     "shift, relu and clamp need the epilogue (epilogue=False given)"),
])
def test_compile_errors(kwargs, message):
    matrix = kwargs.pop("matrix", np.eye(2, dtype=np.int64))
    with pytest.raises(CompileError) as info:
        compile_spmv(matrix, DEFAULT, **kwargs)
    assert str(info.value) == message


def test_bank_ordering_keeps_rows_and_matches_the_schedule():
    rng = np.random.default_rng(10)
    a = random_matrix(rng, 64, 128, 0.1, 1, 9)
    for bank_aware in (False, True):
        program = compile_spmv(a, DEFAULT, bank_aware=bank_aware)
        tile = program.tiles[0]
        for p in range(DEFAULT.pes):
            n = int(tile.ptr[p][0])
            ends = tile.ptr[p][1:n + 1].astype(np.int64)
            cols, values = unpack_nz(tile.nz[p], DEFAULT)
            rows = tile.readback[tile.readback[:, 0] == p]
            for (_, address, row), start, end in zip(rows, np.r_[0, ends[:-1]], ends,
                                                     strict=True):
                assert address < n
                got = sorted(zip(cols[start:end].tolist(), values[start:end].tolist(),
                                 strict=True))
                want = sorted(zip(a[row].indices.tolist(), a[row].data.tolist(), strict=True))
                assert got == want


@pytest.mark.parametrize("reorder_rows", [False, True])
def test_ordering_pass_replays_the_arbitration(reorder_rows):
    rng = np.random.default_rng(13)
    for _ in range(30):
        lanes, banks = int(rng.integers(1, 5)), int(rng.choice([1, 2, 4]))
        ids = iter(range(10**6))
        lane_rows = [[[(int(b), next(ids)) for b in rng.integers(0, banks, rng.integers(0, 4))]
                      for _ in range(rng.integers(0, 6))] for _ in range(lanes)]
        order, row_order, cycles = _order_lanes(lane_rows, banks, lanes,
                                                reorder_rows=reorder_rows)
        tokens = []
        for rows, entries, perm in zip(lane_rows, order, row_order, strict=True):
            assert sorted(perm) == list(range(len(rows)))
            if not reorder_rows:
                assert perm == sorted(perm)
            bank_of = {k: b for row in rows for b, k in row}
            toks, position = [], 0
            for r in perm:
                row = rows[r]
                assert sorted(entries[position:position + len(row)]) == sorted(
                    k for _, k in row)
                toks.extend(bank_of[k] for k in entries[position:position + len(row)])
                if not row:
                    toks.append(-1)
                position += len(row)
            tokens.append(toks)
        assert timing.schedule(tokens, banks).cycles == cycles


@pytest.mark.parametrize("cluster_lanes", [8, 4])
def test_bank_ordering_reduces_stalls(cluster_lanes):
    # Lanes that share a cluster's banks (private copies of x never stall).
    config = AcceleratorConfig(pes=8, cluster_lanes=cluster_lanes)
    rng = np.random.default_rng(11)
    a = random_matrix(rng, 128, 128, 0.1, 1, 9)
    x = rng.integers(1, 9, 128)
    plain = run_model(compile_spmv(a, config, bank_aware=False), x).counters
    aware = run_model(compile_spmv(a, config), x).counters
    assert aware["gather_stalls"] < plain["gather_stalls"]
    assert aware["cycles"] < plain["cycles"]


def test_balance_across_lanes():
    rng = np.random.default_rng(12)
    # skewed rows: a few long rows and many short ones
    lengths = np.r_[np.full(8, 60), np.full(200, 2)]
    rows = np.repeat(np.arange(len(lengths)), lengths)
    cols = np.concatenate([rng.choice(100, n, replace=False) for n in lengths])
    a = scipy.sparse.csr_matrix((np.ones(len(rows), dtype=np.int64), (rows, cols)),
                                shape=(len(lengths), 100))
    program = compile_spmv(a, DEFAULT)
    assert program.work_cv < 0.05


def test_run_program_checks_the_vector():
    program = compile_spmv(np.eye(3, dtype=np.int64), DEFAULT)
    with pytest.raises(InputError, match=r"^vector has shape \(2,\) but the matrix has 3 "
                                         r"columns$"):
        run_model(program, np.zeros(2, dtype=np.int64))
    with pytest.raises(InputError, match=r"^vector value 40000 at index 1 does not fit "
                                         r"16-bit signed values$"):
        run_model(program, np.array([0, 40000, 0]))
    with pytest.raises(InputError, match=r"^vector value 0.5 at index 0 is not an integer"):
        run_model(program, np.array([0.5, 0, 0]))
    assert run_model(program, np.array([1.0, 2.0, 3.0])).y_raw.tolist() == [1, 2, 3]
