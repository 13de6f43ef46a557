"""Every format x kernel through the ISA model (and the driver) against NumPy."""

import time

import numpy as np
import pytest
import scipy.sparse

from zeroskip.core.config import AcceleratorConfig
from zeroskip.core.errors import CompileError, DeviceError, InputError
from zeroskip.core.isa import ErrorCode, Format, Opcode
from zeroskip.firmware.asm import decode
from zeroskip.firmware.compiler import compile_kernel, compile_spmv
from zeroskip.firmware.explain import explain
from zeroskip.firmware.formats import prune_nm
from zeroskip.firmware.program import Program
from zeroskip.firmware.reference import spmv_reference
from zeroskip.sim.backends import model_counters, run, run_model

ALL = ("csr", "coo", "bitmap", "nm", "dense", "csc")
FULL = AcceleratorConfig(pes=4, x_depth=128, nz_depth=512, row_depth=32, imem_depth=16,
                         formats=ALL)
TINY = AcceleratorConfig(pes=3, x_depth=32, nz_depth=128, row_depth=16, imem_depth=8,
                         formats=ALL)
EPILOGUE = {"shift": 2, "relu": True, "clamp": (-40, 900)}


def random_matrix(rng, rows, cols, density, low=-40, high=40):
    a = scipy.sparse.random(rows, cols, density=density, format="csr", random_state=rng)
    a.data = rng.integers(low, high + 1, a.nnz).astype(np.int64)
    a.eliminate_zeros()
    return a


def ragged_matrix(rng, rows=40, cols=300):
    """A row with hundreds of nonzeros next to empty rows, and sparse rows around."""
    a = random_matrix(rng, rows, cols, 0.03).tolil()
    a[3, :] = rng.integers(1, 9, cols)
    a[2, :] = 0
    a[4, :] = 0
    a[10:14, :] = 0
    return a.tocsr()


def operand(rng, kernel, cols, density=0.3, columns=5):
    if kernel in ("spmv", "spmspv"):
        x = rng.integers(-6, 7, cols)
        return x * (rng.random(cols) < density) if kernel == "spmspv" else x
    x = rng.integers(-6, 7, (cols, columns))
    if kernel == "spmspm":
        x = x * (rng.random((cols, columns)) < density)
        x[:, 0] = 0                       # an all-zero right-hand column
        x[:, 1] = rng.integers(1, 7, cols)  # a fully dense one
    return x


def expected(a, x, config, bias=None, **epi):
    y, overflow = spmv_reference(a, x, config=config, bias=bias, **epi)
    assert not overflow
    return y


def check(program, a, x, config, bias=None, **epi):
    """Run on the model; results, counters and the cycle prediction must agree."""
    result = run_model(program, x)
    np.testing.assert_array_equal(result.y_raw, expected(a, x, config, bias, **epi))
    c = result.counters
    assert c["cycles"] == program.predicted_cycles(x)
    assert c["insns"] == sum(len(t.code) for t in program.tiles)
    # every stored entry streamed is either multiplied or counted as skipped
    assert c["macs"] + c["skipped"] == int(program.lane_nnz.sum())
    columns = x if x.ndim == 2 else x[:, None]
    csr = scipy.sparse.csr_matrix(a)
    csr.eliminate_zeros()
    macs = sum(int(np.count_nonzero(columns[csr.indices, k])) for k in range(columns.shape[1]))
    assert c["macs"] == macs
    if "csc" not in program.formats:
        assert c["pe_busy"] == program.lane_nnz.tolist()
    else:
        assert sum(c["pe_busy"]) <= program.lane_nnz.sum()
    return program, result


@pytest.mark.parametrize("kernel", ["spmv", "spmspv", "spmm", "spmspm"])
@pytest.mark.parametrize("fmt", ALL)
@pytest.mark.parametrize("config", [FULL, TINY], ids=["full", "tiny"])
def test_every_format_and_kernel(config, fmt, kernel):
    rng = np.random.default_rng(ALL.index(fmt) * 10 + len(kernel))
    for density in (0.05, 0.4):
        a = random_matrix(rng, 37, 70, density)
        options = {}
        if fmt == "nm":
            a, _ = prune_nm(a, 2, 4)
            options["nm"] = "2:4"
        x = operand(rng, kernel, 70)
        program = compile_kernel(a, config, x=x, kernel=kernel, fmt=fmt, **options)
        assert program.kernel == kernel and program.formats == [fmt]
        assert program.is_matrix == (kernel in ("spmm", "spmspm"))
        check(program, a, x, config)
        bias = rng.integers(-500, 500, 37)
        program = compile_kernel(a, config, x=x, kernel=kernel, fmt=fmt, bias=bias, **options,
                                 **EPILOGUE)
        check(program, a, x, config, bias=bias, **EPILOGUE)


@pytest.mark.parametrize("fmt", ALL)
def test_ragged_rows(fmt):
    rng = np.random.default_rng(5)
    a = ragged_matrix(rng)
    options = {}
    if fmt == "nm":
        a, _ = prune_nm(a, 2, 4)
    x = rng.integers(-5, 6, 300)
    for kernel, x_k in (("spmv", x), ("spmm", np.stack([x, -x, x * 0], axis=1))):
        program = compile_kernel(a, FULL, x=x_k, kernel=kernel, fmt=fmt, **options)
        check(program, a, x_k, FULL)


def test_spmspv_activations():
    rng = np.random.default_rng(6)
    a = random_matrix(rng, 50, 90, 0.2)
    for x in (np.zeros(90, dtype=np.int64), rng.integers(1, 5, 90),
              rng.integers(1, 5, 90) * (rng.random(90) < 0.05)):
        for fmt in ("csc", "auto"):
            program = compile_kernel(a, FULL, x=x, kernel="spmspv", fmt=fmt)
            check(program, a, x, FULL)
    # column mode visits only the nonzero activations
    x = np.zeros(90, dtype=np.int64)
    x[7] = 3
    program = compile_kernel(a, FULL, x=x, kernel="spmspv", fmt="csc")
    _, result = check(program, a, x, FULL)
    assert result.counters["macs"] == a[:, 7].nnz
    assert sum(result.counters["pe_busy"]) == a[:, 7].nnz
    assert result.counters["gather_stalls"] == 0


def test_column_mode_cycles_follow_the_contract():
    # one lane: rows 0-2; columns 0..3; x visits columns 1 and 3
    config = AcceleratorConfig(pes=1, x_depth=16, x_banks=2, nz_depth=16, row_depth=8,
                               formats=("csc",))
    a = scipy.sparse.csr_matrix(np.array([[1, 2, 0, 0], [0, 3, 0, 0], [0, 4, 0, 0]]))
    x = np.array([0, 1, 0, 2])
    program = compile_kernel(a, config, x=x, fmt="csc", dense_baseline=False)
    result = run_model(program, x)
    # Two banks: the detector steps on column 1 in cycle 5 (moved in cycle 6)
    # and on column 3 in cycle 6 (moved in 7). The lane zeroes rows in cycles
    # 3-5, walks column 1 (3 entries) in 9-11 and column 3 (none) in 12; it is
    # done at max(3 + n, 13, 8 + 2, last entry 11 + 7) = 18. CSC overhead 4, HALT 2.
    assert result.counters["cycles"] == 4 + 18 + 2
    program = compile_kernel(a, config, x=x, fmt="csc", bias=np.ones(3, dtype=np.int64),
                             dense_baseline=False)
    # The final pass for the bias: n + 7 more.
    assert run_model(program, x).counters["cycles"] == 4 + 18 + 3 + 7 + 2
    # the skipped count holds the entries of the columns never visited
    assert result.counters["skipped"] == 1


def test_spmm_batches_columns_per_tile():
    rng = np.random.default_rng(7)
    a = random_matrix(rng, 20, 40, 0.2)
    x = rng.integers(-5, 6, (40, 9))
    program = compile_kernel(a, FULL, x=x, fmt="csr")
    assert program.kernel == "spmm" and program.rhs_columns == 9
    check(program, a, x, FULL)
    spmvs = [sum(decode(int(w))[0] is Opcode.SPMV for w in t.code) for t in program.tiles]
    assert max(spmvs) > 1                  # several right-hand columns per tile
    bases = {decode(int(w))[1]["x_base"] for t in program.tiles for w in t.code
             if decode(int(w))[0] is Opcode.SPMV}
    assert len(bases) > 1
    # the driver over the model bus gives the same 2-D result
    result = run(program, x, backend="model")
    np.testing.assert_array_equal(result.y_raw, a @ x)


def test_spmspm_picks_column_mode_per_right_hand_column():
    rng = np.random.default_rng(8)
    a = random_matrix(rng, 64, 64, 0.2)
    x = rng.integers(1, 5, (64, 6)) * (rng.random((64, 6)) < [0.01, 0.02, 0.05, 1, 1, 1])
    program = compile_kernel(a, FULL, x=scipy.sparse.csc_matrix(x), kernel="spmspm")
    assert program.kernel == "spmspm"
    split = program.report["bands"][0].get("columns")
    assert split is not None and split["csc"] == [0, 1, 2]
    check(program, a, x, FULL)


def test_sparse_operand_types_and_shapes():
    rng = np.random.default_rng(9)
    a = random_matrix(rng, 10, 12, 0.3)
    x = rng.integers(0, 3, 12) * (rng.random(12) < 0.3)
    for sample in (x, scipy.sparse.csr_matrix(x[:, None]), scipy.sparse.csr_matrix(x[None, :])):
        program = compile_kernel(a, FULL, x=sample)
        assert program.kernel == "spmspv" and not program.is_matrix
    assert compile_kernel(a, FULL, x=np.ones(12)).kernel == "spmv"
    assert compile_kernel(a, FULL, x=np.ones((12, 2))).kernel == "spmm"
    assert compile_kernel(a, FULL, rhs_columns=3).rhs_columns == 3
    program = compile_kernel(a, FULL, x=x, kernel="spmm")      # a vector as one column
    assert program.rhs_columns == 1
    np.testing.assert_array_equal(run_model(program, x[:, None]).y_raw, a @ x[:, None])


@pytest.mark.parametrize("kwargs, message", [
    (dict(fmt="bitmap", config=AcceleratorConfig()),
     "format 'bitmap' is not enabled in this configuration (formats: csr)"),
    (dict(fmt="nm"), "matrix is not 2:4 structured: row 0, columns 0-3 hold 3 nonzeros "
                     "(use --prune-nm)"),
    (dict(fmt="nm", nm="1:8"), "matrix is not 1:8 structured: row 0, columns 0-7 hold 3 "
                               "nonzeros (use --prune-nm)"),
    (dict(fmt="nm", nm="2:64", prune_nm=True, config=TINY),
     "N:M group of 64 columns exceeds the 32-entry x buffer"),
    (dict(x=np.ones((4, 2)), kernel="spmv"),
     "kernel spmv takes a vector but x is a 4 x 2 matrix (use spmm or spmspm)"),
    (dict(x=np.ones(5)), "x has 5 entries but the matrix has 4 columns"),
    (dict(x=np.ones((5, 2))), "x has 5 rows but the matrix has 4 columns"),
    (dict(kernel="spmm"), "kernel spmm needs the right-hand matrix (x) or its number of "
                          "columns (rhs_columns)"),
    (dict(kernel="gemm"), "unknown kernel 'gemm'; choose one of auto, spmv, spmspv, spmm, "
                          "spmspm"),
    (dict(fmt="ell"), "unknown format 'ell'; known: csr, coo, bitmap, nm, dense, csc"),
    (dict(nm="3:4:5", fmt="nm"), "N:M must look like 2:4, not '3:4:5'"),
])
def test_compile_errors(kwargs, message):
    config = kwargs.pop("config", FULL)
    a = np.array([[1, 2, 3, 0], [0, 0, 0, 1]])
    with pytest.raises(CompileError) as info:
        compile_kernel(a, config, **kwargs)
    assert str(info.value) == message


def test_pruned_nm_matches_the_pruned_reference():
    rng = np.random.default_rng(10)
    a = random_matrix(rng, 30, 64, 0.6)
    program = compile_kernel(a, FULL, fmt="nm", prune_nm=True)
    pruned, removed = prune_nm(a, 2, 4)
    assert program.report["pruned"] == removed > 0
    x = rng.integers(-5, 6, 64)
    check(program, pruned, x, FULL)


def test_format_not_in_hardware_is_an_illegal_instruction():
    a = np.eye(4, dtype=np.int64)
    program = compile_kernel(a, FULL, fmt="dense")
    other = AcceleratorConfig(pes=4, x_depth=128, nz_depth=512, row_depth=32, imem_depth=16,
                              formats=("csr",))
    program.config = other          # the same tiles, on hardware without DENSE
    with pytest.raises(DeviceError) as info:
        run_model(program, np.ones(4, dtype=np.int64))
    assert info.value.code == ErrorCode.ILLEGAL_INSN and info.value.pc == 0


def test_cost_model_picks_dense_only_where_sparsity_does_not_pay():
    rng = np.random.default_rng(11)
    config = AcceleratorConfig(pes=8, formats=ALL)
    full = scipy.sparse.csr_matrix(rng.integers(1, 9, (64, 128)))
    program = compile_kernel(full, config)
    assert program.formats == ["dense"]
    assert "sparsity does not pay" in program.report["bands"][0]["reason"]
    sparse = random_matrix(rng, 64, 128, 0.05)
    program = compile_kernel(sparse, config)
    assert program.formats == ["csr"]
    assert program.dense_cycles > 5 * program.predicted_cycles()


def test_auto_is_never_much_slower_than_dense():
    rng = np.random.default_rng(12)
    for pes in (8, 16):
        config = AcceleratorConfig(pes=pes, formats=ALL)
        for density in (0.005, 0.05, 0.3, 0.7, 0.95, 1.0):
            a = random_matrix(rng, 128, 128, density, 1, 9)
            program = compile_kernel(a, config)
            x = rng.integers(-4, 5, 128)
            cycles = run_model(program, x).counters["cycles"]
            dense = compile_kernel(a, config, fmt="dense", dense_baseline=False)
            measured = run_model(dense, x).counters["cycles"]
            assert cycles <= 1.05 * measured, (pes, density)
            # Dense mode proper: every row and column (the matrix fully stored).
            full = compile_kernel(np.ones(a.shape, dtype=np.int64), config, fmt="dense",
                                  dense_baseline=False)
            assert run_model(full, x).counters["cycles"] == program.dense_cycles


def test_two_four_is_twice_as_fast_as_dense():
    rng = np.random.default_rng(13)
    config = AcceleratorConfig(pes=8, formats=ALL)
    a, _ = prune_nm(scipy.sparse.csr_matrix(rng.integers(1, 9, (128, 256))), 2, 4)
    program = compile_kernel(a, config, fmt="nm")
    assert program.dense_cycles / program.predicted_cycles() == pytest.approx(2.0, rel=0.01)


def test_explain_names_options_and_reason():
    rng = np.random.default_rng(14)
    a = random_matrix(rng, 60, 60, 0.1)
    x = rng.integers(1, 4, 60) * (rng.random(60) < 0.1)
    program = compile_kernel(a, FULL, x=x, name="demo")
    text = explain(program, operand="sample", x=x, run=model_counters)
    assert text.startswith("explain demo: 60 x 60, ")
    for name in ALL:
        assert f"  {name} " in text
    assert "matrix is not 2:4 structured" in text or "  nm " in text
    assert f"-> {program.report['bands'][0]['winner']}: " in text
    assert f"predicted {program.predicted_cycles(x)} cycles" in text
    assert "dense mode" in text and "work spread" in text


def test_matrix_program_round_trip(tmp_path):
    rng = np.random.default_rng(15)
    a = random_matrix(rng, 30, 50, 0.2)
    x = rng.integers(-3, 4, (50, 4)) * (rng.random((50, 4)) < 0.2)
    program = compile_kernel(a, FULL, x=x, bias=rng.integers(-9, 9, 30), relu=True)
    path = tmp_path / "p.npz"
    program.save(path)
    loaded = Program.load(path)
    assert (loaded.kernel, loaded.rhs_columns) == (program.kernel, program.rhs_columns)
    assert loaded.report == program.report and loaded.dense_cycles == program.dense_cycles
    assert loaded.formats == program.formats
    for a_tile, b_tile in zip(loaded.tiles, program.tiles, strict=True):
        assert (a_tile.meta is None) == (b_tile.meta is None)
        assert (a_tile.x_loads is None) == (b_tile.x_loads is None)
        if a_tile.x_loads is not None:
            np.testing.assert_array_equal(a_tile.x_loads, b_tile.x_loads)
        np.testing.assert_array_equal(a_tile.readback, b_tile.readback)
    assert loaded.listing() == program.listing()
    np.testing.assert_array_equal(run_model(loaded, x).y_raw, run_model(program, x).y_raw)


def test_listing_shows_format_and_dataflow():
    rng = np.random.default_rng(16)
    a = random_matrix(rng, 30, 50, 0.2)
    program = compile_kernel(a, FULL, fmt="bitmap")
    text = program.listing()
    assert "format bitmap, dataflow row" in text
    assert "tile 0: bitmap, x[0:50]" in text
    assert "fmt=bitmap" in text
    assert "dense mode on this array: predicted" in text


def test_operand_checks():
    program = compile_kernel(np.eye(3, dtype=np.int64), FULL, rhs_columns=2)
    with pytest.raises(InputError, match=r"^right-hand matrix has shape \(3,\) but the program "
                                         r"needs \(3, 2\)$"):
        run_model(program, np.zeros(3, dtype=np.int64))
    with pytest.raises(InputError, match=r"^right-hand matrix value 40000 at row 1, column 0 "):
        run_model(program, np.array([[0, 0], [40000, 0], [0, 0]]))
    sparse = scipy.sparse.csr_matrix(np.array([[1, 0], [0, 2], [3, 0]]))
    np.testing.assert_array_equal(run_model(program, sparse).y_raw, sparse.toarray())


def test_balance_report():
    rng = np.random.default_rng(17)
    lengths = np.r_[200, np.full(60, 3)]
    rows = np.repeat(np.arange(len(lengths)), lengths)
    cols = np.concatenate([rng.choice(256, n, replace=False) for n in lengths])
    a = scipy.sparse.csr_matrix((np.ones(len(rows), dtype=np.int64), (rows, cols)),
                                shape=(len(lengths), 256))
    program = compile_spmv(a, AcceleratorConfig(pes=8, reduce=False))
    balance = program.report["balance"]
    assert balance["long_rows"] == 1 and not balance["split"]
    assert balance["cv_split_rows"] < balance["cv_whole_rows"]
    assert "no scatter/reduce network" in balance["note"]
    assert balance["cycles_split_rows"] is None
    # with the scatter/reduce network the long row is split
    program = compile_spmv(a, AcceleratorConfig(pes=8))
    balance = program.report["balance"]
    assert balance["long_rows"] == 1 and balance["split"]
    assert balance["cycles_split_rows"] < balance["cycles_whole_rows"]


def test_default_configuration_keeps_the_csr_program():
    rng = np.random.default_rng(18)
    a = random_matrix(rng, 50, 60, 0.1)
    program = compile_spmv(a, AcceleratorConfig())
    assert program.formats == ["csr"] and program.kernel == "spmv"
    assert all(t.meta is None and t.x_loads is None and t.readback.shape[1] == 3
               for t in program.tiles)
    assert program.dense_cycles is None


def test_compile_speed():
    rng = np.random.default_rng(19)
    a = random_matrix(rng, 1024, 1024, 32768 / 1024 ** 2, 1, 99)
    started = time.perf_counter()
    program = compile_kernel(a, AcceleratorConfig(pes=8, formats=ALL))
    assert time.perf_counter() - started < 10   # typically well under a second
    assert program.formats == ["csr"]


def test_x_loads_of_matrix_tiles():
    rng = np.random.default_rng(20)
    a = random_matrix(rng, 8, 200, 0.3)
    x = rng.integers(-3, 4, (200, 3))
    config = AcceleratorConfig(pes=2, x_depth=64, nz_depth=256, row_depth=16, formats=ALL)
    for fmt in ("csr", "dense", "csc"):
        program = compile_kernel(a, config, x=x, fmt=fmt)
        check(program, a, x, config)
        for tile in program.tiles:
            for address, column, start, stop in tile.loads():
                assert address + stop - start <= config.x_depth and 0 <= column < 3
        assert any(decode(int(w))[1].get("accumulate") for t in program.tiles for w in t.code
                   if decode(int(w))[0] is Opcode.SPMV)


def test_spmv_formats_match_on_the_samples(examples_data):
    from zeroskip.firmware.loader import load_matrix
    from zeroskip.firmware.quant import quantize
    config = AcceleratorConfig(pes=8, formats=ALL)
    rng = np.random.default_rng(21)
    for name in ("west0067", "Erdos971"):
        a = scipy.sparse.csr_matrix(quantize(load_matrix(examples_data / f"{name}.mtx"),
                                             value_width=16).ints)
        x = rng.integers(-4, 5, a.shape[1])
        for fmt in ("csr", "coo", "bitmap", "dense", "csc"):
            check(compile_kernel(a, config, x=x, kernel="spmv", fmt=fmt), a, x, config)


def test_spmspv_through_compile_spmv():
    rng = np.random.default_rng(22)
    config = AcceleratorConfig(pes=4, formats=ALL)
    a = random_matrix(rng, 40, 200, 0.1)
    x = rng.integers(1, 4, 200) * (rng.random(200) < 0.03)
    program = compile_spmv(a, config, x=x)
    assert program.kernel == "spmspv"
    check(program, a, x, config)
    assert program.formats == [Format.CSC.name.lower()]
    # a dense x keeps the row dataflow
    x = rng.integers(1, 4, 200)
    program = compile_spmv(a, config, x=x)
    assert program.kernel == "spmv" and program.formats == ["csr"]
