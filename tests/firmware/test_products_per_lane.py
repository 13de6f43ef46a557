"""products_per_lane (k): a lane applies each decoded nonzero to k inputs of a batch.

The ISA model counts a batch of n inputs in ceil(n / k) passes, each costing
what one input costs at k = 1 (the pass rule of zeroskip.core.timing); results and
every counter but the cycles and stalls equal those of k = 1. The generated
hardware is k = 1 only, and says so.
"""

import json

import numpy as np
import pytest
import scipy.sparse

from zeroskip.app.nn.compile import dense_mode_cycles
from zeroskip.core import timing
from zeroskip.core.config import AcceleratorConfig, ConfigError, check_generated
from zeroskip.firmware.compiler import compile_kernel
from zeroskip.sim.backends import Job, run_many, run_model

REFUSAL = ("products_per_lane {k}: the generated hardware issues one product per lane per "
           "cycle; only the ISA model runs products_per_lane > 1")

#: The default configuration's fingerprint before products_per_lane existed.
DEFAULT_FINGERPRINT = "8e8a5941fc26"


def _matrix(rows=40, cols=64, density=0.2, seed=2):
    rng = np.random.default_rng(seed)
    return scipy.sparse.random(rows, cols, density=density, random_state=seed,
                               data_rvs=lambda n: rng.integers(-50, 50, n)).tocsr()


def _inputs(cols, n, *, zeros=0.0, seed=3):
    rng = np.random.default_rng(seed)
    x = rng.integers(-20, 20, (cols, n))
    x[rng.random(x.shape) < zeros] = 0
    return x


def _config(k, **fields):
    return AcceleratorConfig(pes=4, products_per_lane=k, formats=("csr", "csc"), **fields)


# The configuration ------------------------------------------------------------------------------

def test_k1_leaves_the_configuration_json_and_fingerprint_unchanged():
    default = AcceleratorConfig()
    assert default.products_per_lane == 1
    assert "products_per_lane" not in default.to_dict()
    assert "products_per_lane" not in json.loads(default.to_json())
    assert default.fingerprint == DEFAULT_FINGERPRINT
    assert AcceleratorConfig(products_per_lane=1).to_json() == default.to_json()


def test_k_above_1_is_in_the_json_and_round_trips(tmp_path):
    config = AcceleratorConfig(pes=16, products_per_lane=8)
    assert config.to_dict()["products_per_lane"] == 8
    assert config.macs_per_cycle == 128
    assert AcceleratorConfig(pes=3, products_per_lane=2).macs_per_cycle == 6
    assert AcceleratorConfig.from_dict(config.to_dict()) == config
    config.save(tmp_path / "c.json")
    assert AcceleratorConfig.load(tmp_path / "c.json") == config
    assert AcceleratorConfig.load(tmp_path / "c.json", products_per_lane=1).to_json() == \
        AcceleratorConfig(pes=16).to_json()
    assert config.fingerprint != AcceleratorConfig(pes=16).fingerprint


@pytest.mark.parametrize("value", [0, 3, 16, True, "2", 2.0])
def test_invalid_values_are_named(value):
    with pytest.raises(ConfigError) as info:
        AcceleratorConfig(products_per_lane=value)
    assert str(info.value) == f"products_per_lane must be 1, 2, 4 or 8, not {value!r}"


def test_the_generated_hardware_refuses_k_above_1():
    check_generated(AcceleratorConfig())
    with pytest.raises(ConfigError) as info:
        check_generated(AcceleratorConfig(products_per_lane=4))
    assert str(info.value) == REFUSAL.format(k=4)


# The pass rule ----------------------------------------------------------------------------------

def test_passes():
    assert [timing.passes(n, 4) for n in (0, 1, 4, 5, 8, 9)] == [0, 1, 1, 2, 2, 3]
    assert timing.passes(6, 1) == 6


def _run(a, x, k, fmt, **kwargs):
    program = compile_kernel(a, _config(k), x=x, kernel="spmm", fmt=fmt, **kwargs)
    return program, run_model(program, x)


@pytest.mark.parametrize("n", [6, 8])
def test_row_mode_cycles_follow_the_pass_rule(n):
    a, x = _matrix(), _inputs(64, n)
    reference = a.toarray() @ x
    base = None
    for k in (1, 2, 4):
        program, result = _run(a, x, k, "csr")
        assert len(program.tiles) == 1
        tile = program.tiles[0]
        # One input's SPMV: the overhead and the longest lane (private banks: no stall).
        one_input = timing.SPMV_OVERHEAD + max(tile.lane_tokens(program.config))
        expected = timing.passes(n, k) * one_input + timing.INSN_OVERHEAD   # + HALT
        assert result.counters["cycles"] == expected
        assert program.predicted_cycles(x) == expected
        assert np.array_equal(result.y_raw, reference)
        if base is None:
            base = result
        else:
            assert np.array_equal(result.y_raw, base.y_raw)
            for name in ("macs", "skipped", "insns", "pe_busy"):
                assert result.counters[name] == base.counters[name], name
    # 6 inputs: 6, 3 and 2 passes.
    assert base.counters["cycles"] == n * one_input + timing.INSN_OVERHEAD


def test_column_mode_passes_visit_the_union_of_their_inputs():
    a, x = _matrix(), _inputs(64, 4, zeros=0.8)
    k = 2
    program, result = _run(a, x, k, "csc")
    assert len(program.tiles) == 1
    tile = program.tiles[0]
    config = program.config
    spmvs = tile.spmvs()
    assert len(spmvs) == 4
    buffer = program.x_buffer(tile, x)
    expected = timing.INSN_OVERHEAD
    for first in range(0, 4, k):
        args = spmvs[first]
        streams = [tile.stream(p, args, config) for p in range(config.pes)]
        count = max(len(s.col_ends) for s in streams)
        union = np.zeros(config.x_depth, dtype=np.int64)
        for member in spmvs[first:first + k]:
            base = member["x_base"]
            union[args["x_base"]:args["x_base"] + count] |= \
                buffer[base:base + count] != 0
        expected += timing.CSC_OVERHEAD + timing.column_mode_cycles(streams, args, union,
                                                                    config)
    assert result.counters["cycles"] == expected
    assert program.predicted_cycles(x) == expected
    assert np.array_equal(result.y_raw, a.toarray() @ x)
    _, single = _run(a, x, 1, "csc")
    assert np.array_equal(result.y_raw, single.y_raw)
    assert result.counters["macs"] == single.counters["macs"]
    assert result.counters["pe_busy"] == single.counters["pe_busy"]
    assert single.counters["cycles"] > result.counters["cycles"]


def test_split_rows_run_in_passes_bit_exact():
    a = _matrix(16, 64, 0.1).tolil()
    a[0, :] = np.arange(1, 65) % 7 + 1        # one long row, split across the lanes
    a = a.tocsr()
    x = _inputs(64, 6)
    cycles = {}
    for k in (1, 2):
        program, result = _run(a, x, k, "csr", split_rows=True)
        assert program.report["balance"]["split"]
        assert np.array_equal(result.y_raw, a.toarray() @ x)
        assert program.predicted_cycles(x) == result.counters["cycles"]
        cycles[k] = result.counters["cycles"]
    # Every column's SPMV, REDUCE and finish run in 3 passes instead of 6; one HALT.
    assert cycles[2] - timing.INSN_OVERHEAD == (cycles[1] - timing.INSN_OVERHEAD) // 2


def _utilization(counters, config):
    return sum(counters["pe_busy"]) / (counters["cycles"] * config.macs_per_cycle)


@pytest.mark.parametrize("k", [1, 2, 4, 8])
@pytest.mark.parametrize("fmt, zeros", [("csr", 0.0), ("csc", 0.7)])
def test_utilization_stays_at_most_1(k, fmt, zeros):
    a = _matrix(64, 64, 0.5)
    x = _inputs(64, 16, zeros=zeros)
    program, result = _run(a, x, k, fmt)
    utilization = _utilization(result.counters, program.config)
    assert 0 < utilization <= 1
    # Products are counted per input: at most k per lane and cycle.
    assert max(result.counters["pe_busy"]) <= k * result.counters["cycles"]


def test_dense_mode_follows_the_pass_rule():
    cycles = {k: dense_mode_cycles(16, 32, _config(k, row_depth=64), batch=8)
              for k in (1, 2, 4, 8)}
    halt = timing.INSN_OVERHEAD         # one tile, one HALT, whatever k
    per_input = (cycles[1] - halt) // 8
    for k, value in cycles.items():
        assert value == timing.passes(8, k) * per_input + halt


@pytest.mark.parametrize("backend", ["pysim", "icarus", "verilator"])
def test_the_simulators_refuse_k_above_1(backend):
    a, x = _matrix(), _inputs(64, 2)
    program = compile_kernel(a, _config(2), x=x, kernel="spmm")
    with pytest.raises(ConfigError) as info:
        run_many([Job(program, x)], backend=backend)
    assert str(info.value) == REFUSAL.format(k=2)
    assert run_many([Job(program, x)], backend="model")[0].counters["cycles"] > 0


def test_the_generator_and_the_board_refuse_k_above_1():
    from zeroskip.boards.build import build
    from zeroskip.boards.link import run_on_board
    from zeroskip.hdl.generate import verilog_text
    from zeroskip.hdl.top import ZeroskipTop
    config = _config(8)
    program = compile_kernel(_matrix(), config, x=_inputs(64, 2), kernel="spmm")
    for attempt in (lambda: verilog_text(config), lambda: ZeroskipTop(config),
                    lambda: build("ulx3s-85f", config=config),
                    lambda: run_on_board(program, _inputs(64, 2), port="/dev/null")):
        with pytest.raises(ConfigError) as info:
            attempt()
        assert str(info.value) == REFUSAL.format(k=8)


# The slots ---------------------------------------------------------------------------------------

def test_slots_divide_x_and_out():
    config = _config(4, x_depth=256, row_depth=64)
    assert (config.x_slot_depth, config.row_slot_depth) == (64, 16)
    one = AcceleratorConfig(x_depth=256, row_depth=64)
    assert (one.x_slot_depth, one.row_slot_depth) == (256, 64)


@pytest.mark.parametrize("fields, message", [
    ({"x_depth": 64, "x_banks": 64}, "x_depth must be at least products_per_lane x "
                                     "x_banks (2 x 64), not 64"),
    ({"row_depth": 4, "products_per_lane": 8}, "row_depth must be at least products_per_lane "
                                               "(8), not 4"),
])
def test_slots_that_cannot_exist_are_refused(fields, message):
    fields = {"products_per_lane": 2, **fields}
    with pytest.raises(ConfigError) as info:
        AcceleratorConfig(pes=4, **fields)
    assert str(info.value) == message


def _spmv(x_base, out_base):
    return {"fmt": 0, "ptr_base": 0, "nz_base": 0, "accumulate": 0, "bias": 0,
            "epilogue": 0, "x_base": x_base, "out_base": out_base}


def test_a_member_joins_only_one_slot_further_on():
    config = _config(4, x_depth=256, row_depth=64)
    first = _spmv(8, 2)
    assert timing.joins_pass("SPMV", first, _spmv(8 + 64, 2 + 16), 1, config)
    assert timing.joins_pass("SPMV", first, _spmv(8 + 3 * 64, 2 + 3 * 16), 3, config)
    # The slot's offset must be the first's; the member's place in the pass counts.
    assert not timing.joins_pass("SPMV", first, _spmv(9 + 64, 2 + 16), 1, config)
    assert not timing.joins_pass("SPMV", first, _spmv(8 + 64, 3 + 16), 1, config)
    assert not timing.joins_pass("SPMV", first, _spmv(8 + 64, 2 + 16), 2, config)
    assert not timing.joins_pass("SPMV", first, _spmv(8 + 4 * 64, 2 + 4 * 16), 4, config)
    other = dict(_spmv(8 + 64, 2 + 16), nz_base=5)
    assert not timing.joins_pass("SPMV", first, other, 1, config)
    reduce_first = {"ptr_base": 3, "src_base": 0, "dst_base": 4}
    assert timing.joins_pass("REDUCE", reduce_first,
                             {"ptr_base": 3, "src_base": 16, "dst_base": 20}, 1, config)
    assert not timing.joins_pass("REDUCE", reduce_first,
                                 {"ptr_base": 3, "src_base": 1, "dst_base": 5}, 1, config)


def _cycles_of(config, spmvs, tokens):
    from zeroskip.firmware.cycles import RunCycles
    run = RunCycles(config)
    for args in spmvs:
        run.spmv(tokens, args=args)
    return run.cycles


def test_misaligned_members_cost_a_pass_each():
    config = _config(2, x_depth=256, row_depth=64)
    tokens = [[0, 0, 0]] * config.pes
    alone = timing.SPMV_OVERHEAD + 3
    assert _cycles_of(config, [_spmv(0, 0), _spmv(128, 32)], tokens) == alone
    assert _cycles_of(config, [_spmv(0, 0), _spmv(64, 16)], tokens) == 2 * alone
    assert _cycles_of(config, [_spmv(0, 0), _spmv(128, 32), _spmv(0, 0)], tokens) == 2 * alone


def test_the_compiler_places_each_column_in_its_slot():
    config = _config(4, x_depth=256, row_depth=64)    # slots of 64 words: 2 column tiles
    a = _matrix(40, 100, 0.2)
    x = _inputs(100, 10)
    program = compile_kernel(a, config, x=x, kernel="spmm", fmt="csr")
    for tile in program.tiles:
        # A tile's inputs fit one slot of X, its lanes' rows one slot of out.
        assert tile.x_cols[1] - tile.x_cols[0] <= config.x_slot_depth
        assert max(tile.lane_rows()) <= config.row_slot_depth
        bases = [(args["x_base"], args["out_base"]) for args in tile.spmvs()]
        for j, (x_base, out_base) in enumerate(bases):
            assert x_base // config.x_slot_depth == j % 4
            assert out_base // config.row_slot_depth == j % 4
            assert (x_base - bases[j - j % 4][0]) == (j % 4) * config.x_slot_depth
    result = run_model(program, x)
    assert np.array_equal(result.y_raw, a.toarray() @ x)
    assert program.predicted_cycles(x) == result.counters["cycles"]
    assert len({tile.x_cols for tile in program.tiles}) == 2
    single = run_model(compile_kernel(a, _config(1, x_depth=256, row_depth=64), x=x,
                                      kernel="spmm", fmt="csr"), x)
    assert result.counters["macs"] == single.counters["macs"]
    assert result.counters["cycles"] < single.counters["cycles"]
