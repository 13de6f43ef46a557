"""Long rows split across lanes and summed back with REDUCE (compiler and ISA model)."""

import numpy as np
import pytest
import scipy.io
import scipy.sparse

from zeroskip.core.config import AcceleratorConfig
from zeroskip.core.errors import CompileError
from zeroskip.core.isa import Opcode
from zeroskip.firmware.asm import decode
from zeroskip.firmware.compiler import compile_kernel, compile_spmv
from zeroskip.firmware.explain import explain
from zeroskip.firmware.program import Program
from zeroskip.firmware.reference import spmv_reference
from zeroskip.sim.backends import run_model

CONFIG = AcceleratorConfig(pes=8)
EPILOGUE = {"shift": 3, "relu": True, "clamp": (-50, 2000)}


def long_rows_matrix(rng, rows=48, cols=600):
    """Two rows with hundreds of nonzeros next to empty rows and short rows."""
    a = scipy.sparse.random(rows, cols, density=0.005, format="lil", random_state=rng)
    a[3, rng.choice(cols, 2 * cols // 3, replace=False)] = 1
    a[20, rng.choice(cols, 5 * cols // 12, replace=False)] = 1
    a[5:16, :] = 0
    a = a.tocsr()
    a.data = rng.integers(-9, 10, a.nnz).astype(np.int64)
    a.eliminate_zeros()
    return a


def opcodes(tile):
    return [decode(int(word))[0] for word in tile.code]


def check(program, a, x, bias=None, **epi):
    """Bit-exact results, the counters and the cycle prediction on the ISA model."""
    result = run_model(program, x)
    expected, overflow = spmv_reference(a, x, config=program.config, bias=bias, **epi)
    assert not overflow
    np.testing.assert_array_equal(result.y_raw, expected)
    c = result.counters
    assert c["cycles"] == program.predicted_cycles(x)
    assert c["insns"] == sum(len(t.code) for t in program.tiles)
    assert c["pe_busy"] == program.lane_nnz.tolist()
    assert c["macs"] + c["skipped"] == a.nnz * max(program.rhs_columns, 1)
    return result


@pytest.mark.parametrize("options", [{}, {"bias": True}, EPILOGUE, dict(EPILOGUE, bias=True)],
                         ids=["raw", "bias", "epilogue", "bias+epilogue"])
def test_split_rows_are_bit_exact(options):
    rng = np.random.default_rng(40)
    a = long_rows_matrix(rng)
    x = rng.integers(-20, 21, a.shape[1])
    options = dict(options)
    if options.pop("bias", False):
        options["bias"] = rng.integers(-1000, 1000, a.shape[0])
    program = compile_spmv(a, CONFIG, **options)
    assert program.report["balance"]["split"]
    tail = "bias" in options or "shift" in options
    for tile in program.tiles:
        expected = [Opcode.SPMV, Opcode.REDUCE] + [Opcode.SPMV] * tail + [Opcode.HALT]
        assert opcodes(tile) == ([Opcode.SET_EPI] if "shift" in options else []) + expected
    check(program, a, x, **options)


def test_split_tile_layout():
    rng = np.random.default_rng(41)
    a = long_rows_matrix(rng)
    program = compile_spmv(a, CONFIG, bias=np.ones(a.shape[0], dtype=np.int64))
    (tile,) = program.tiles
    main, reduce, finish = (decode(int(word))[1] for word in tile.code[:3])
    assert main["ptr_base"] == 0 and not (main["bias"] or main["epilogue"])
    assert (finish["accumulate"], finish["bias"], finish["epilogue"]) == (1, 1, 0)
    n_local = [int(ptr[0]) for ptr in tile.ptr]
    route_base = reduce["ptr_base"]
    assert route_base == 1 + max(n_local)
    helpers = [int(ptr[route_base]) for ptr in tile.ptr]
    finish_base = finish["ptr_base"]
    assert finish_base == route_base + 2 + max(helpers)
    readback = tile.results()
    shift = CONFIG.row_addr_width
    for p, ptr in enumerate(tile.ptr):
        assert len(ptr) <= CONFIG.row_depth
        n_own = int(ptr[route_base + 1])
        assert n_own + helpers[p] == n_local[p]
        # own rows are read back from local rows 0 .. n_own - 1
        assert sorted(readback[readback[:, 0] == p, 1].tolist()) == list(range(n_own))
        # routes name a lane and one of its own rows, never the sending lane
        for word in ptr[route_base + 2:route_base + 2 + helpers[p]].tolist():
            q, r = word >> shift, word & ((1 << shift) - 1)
            assert q != p and r < int(tile.ptr[q][route_base + 1])
        assert ptr[finish_base:].tolist() == [n_own] + [0] * n_own
    assert sum(helpers) > 0
    # the two long rows are owned by one lane each and read back once
    assert sorted(readback[:, 2].tolist()) == list(range(a.shape[0]))


def test_split_rows_even_out_the_work():
    rng = np.random.default_rng(42)
    a = long_rows_matrix(rng)
    split = compile_spmv(a, CONFIG)
    whole = compile_spmv(a, CONFIG, split_rows=False)
    assert split.work_cv < whole.work_cv / 4
    assert split.predicted_cycles() < whole.predicted_cycles()
    balance = split.report["balance"]
    assert balance["split"] and balance["long_rows"] == 2
    assert balance["cv_split_rows"] < balance["cv_whole_rows"]
    assert balance["cycles_split_rows"] == split.predicted_cycles()
    assert balance["cycles_whole_rows"] == whole.predicted_cycles()
    assert "summed with REDUCE" in balance["note"]
    text = explain(split)
    assert (f"rows split across the PEs: yes (predicted {split.predicted_cycles()} cycles with "
            f"split rows, {whole.predicted_cycles()} with whole rows") in text
    assert "rows split across the PEs: no" in explain(whole)
    assert "splitting is off (split_rows=False)" in whole.report["balance"]["note"]


def test_split_rows_false_keeps_the_whole_row_program():
    rng = np.random.default_rng(43)
    a = long_rows_matrix(rng)
    bias = rng.integers(-9, 9, a.shape[0])
    whole = compile_spmv(a, CONFIG, split_rows=False, bias=bias, **EPILOGUE)
    without = compile_spmv(a, CONFIG.replace(reduce=False), bias=bias, **EPILOGUE)
    assert len(whole.tiles) == len(without.tiles)
    for mine, theirs in zip(whole.tiles, without.tiles, strict=True):
        assert Opcode.REDUCE not in opcodes(mine)
        assert mine.code.tolist() == theirs.code.tolist()
        assert mine.readback.tolist() == theirs.readback.tolist()
        for name in ("ptr", "nz", "bias"):
            assert [v.tolist() for v in getattr(mine, name)] == \
                   [v.tolist() for v in getattr(theirs, name)]
    note = without.report["balance"]["note"]
    assert note == ("rows are not split across lanes: the hardware has no scatter/reduce "
                    "network (reduce=false)")


def test_split_rows_setting():
    a = np.eye(4, dtype=np.int64)
    with pytest.raises(CompileError) as info:
        compile_spmv(a, CONFIG.replace(reduce=False), split_rows=True)
    assert str(info.value) == ("split_rows=True needs the scatter/reduce network, which this "
                               "configuration lacks (reduce=false)")
    for value in ("yes", 1, None):
        with pytest.raises(CompileError) as info:
            compile_kernel(a, CONFIG, split_rows=value)
        assert str(info.value) == f"split_rows must be 'auto', True or False, not {value!r}"
    # False without the network, and True without long rows, change nothing
    assert not compile_spmv(a, CONFIG.replace(reduce=False), split_rows=False) \
        .report["balance"]["split"]
    assert not compile_spmv(a, CONFIG, split_rows=True).report["balance"]["split"]


@pytest.fixture(scope="module")
def erdos(examples_data):
    return scipy.sparse.csr_matrix(scipy.io.mmread(examples_data / "Erdos971.mtx")) \
        .astype(np.int64)


@pytest.mark.parametrize("config, band_rows", [
    (CONFIG, None),
    (AcceleratorConfig(pes=32), 100),        # small bands: their hubs are long rows
    (AcceleratorConfig(pes=8), 50),          # splitting does not pay here
])
def test_erdos971_auto_never_predicts_more(erdos, config, band_rows):
    auto = compile_spmv(erdos, config, band_rows=band_rows)
    whole = compile_spmv(erdos, config, band_rows=band_rows, split_rows=False)
    assert auto.predicted_cycles() <= whole.predicted_cycles()
    if auto.report["balance"]["split"]:
        assert auto.predicted_cycles() < whole.predicted_cycles()
    x = np.random.default_rng(44).integers(-3, 4, erdos.shape[1])
    check(auto, erdos, x)
    forced = compile_spmv(erdos, config, band_rows=band_rows, split_rows=True)
    assert auto.predicted_cycles() <= forced.predicted_cycles()
    assert forced.report["balance"]["split"] == (band_rows is not None)
    check(forced, erdos, x)


def test_split_rows_with_a_right_hand_matrix():
    rng = np.random.default_rng(45)
    a = long_rows_matrix(rng, cols=300)     # three right-hand columns fit the x buffer
    x = rng.integers(-6, 7, (a.shape[1], 3))
    bias = rng.integers(-100, 100, a.shape[0])
    program = compile_kernel(a, CONFIG, x=x, bias=bias, **EPILOGUE)
    assert program.kernel == "spmm" and program.report["balance"]["split"]
    (tile,) = program.tiles
    ops = opcodes(tile)
    assert ops == [Opcode.SET_EPI] + [Opcode.SPMV, Opcode.REDUCE, Opcode.SPMV] * 3 + [Opcode.HALT]
    args = [decode(int(word))[1] for word in tile.code]
    n_max = max(int(ptr[0]) for ptr in tile.ptr)
    for j in range(3):
        main, reduce, finish = args[1 + 3 * j:4 + 3 * j]
        assert main["out_base"] == finish["out_base"] == j * n_max
        assert reduce["src_base"] == reduce["dst_base"] == j * n_max
    check(program, a, x, bias=bias, **EPILOGUE)


def test_split_bands_halve_to_fit_the_row_memory():
    rng = np.random.default_rng(46)
    config = AcceleratorConfig(pes=4, row_depth=16, imem_depth=8)
    a = long_rows_matrix(rng, rows=56, cols=300)
    x = rng.integers(-9, 10, 300)
    program = compile_spmv(a, config, split_rows=True, bias=np.ones(56, dtype=np.int64))
    assert program.report["balance"]["split"]
    assert len(program.tiles) > len(program.report["bands"])
    check(program, a, x, bias=np.ones(56, dtype=np.int64))


def test_split_program_round_trip(tmp_path):
    rng = np.random.default_rng(47)
    a = long_rows_matrix(rng)
    x = rng.integers(-9, 10, a.shape[1])
    program = compile_spmv(a, CONFIG, **EPILOGUE)
    program.save(tmp_path / "p.npz")
    loaded = Program.load(tmp_path / "p.npz")
    assert loaded.report["balance"] == program.report["balance"]
    assert loaded.predicted_cycles() == program.predicted_cycles()
    np.testing.assert_array_equal(run_model(loaded, x).y_raw, run_model(program, x).y_raw)
    assert "reduce ptr=" in loaded.listing()
