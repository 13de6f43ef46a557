"""The lanes' work per tile and SPMV and its balance (busiest lane / mean)."""

import numpy as np

from zeroskip.core import timing
from zeroskip.core.config import AcceleratorConfig
from zeroskip.firmware.compiler import compile_kernel
from zeroskip.firmware.explain import explain
from zeroskip.firmware.program import lane_balance

TWO_LANES = AcceleratorConfig(pes=2, formats=("csr",))
#: Row 0 has 3 nonzeros, row 1 has 1: one row per lane.
A = np.array([[1, 2, 3, 0],
              [0, 0, 0, 4]])


def _compile(a=A, **options):
    return compile_kernel(a, TWO_LANES, split_rows=False, **options)


def test_lane_balance_figure():
    assert lane_balance([3, 1]) == 1.5
    assert lane_balance([2, 2, 2, 2]) == 1.0
    assert lane_balance([4, 0, 0, 0]) == 4.0
    assert lane_balance([0, 0]) == 1.0


def test_two_lanes_three_and_one_nonzero():
    balance = _compile().lane_balance()
    spmv = {"format": "csr", "count": 1, "lane_work": [3, 1], "balance": 1.5}
    assert balance == {"lane_work": [3, 1], "balance": 1.5,
                       "tiles": [{"tile": 0, "lane_work": [3, 1], "balance": 1.5,
                                  "spmvs": [spmv]}]}


def test_one_tile_per_row_leaves_a_lane_idle():
    balance = _compile(band_rows=1).lane_balance()
    assert [(t["lane_work"], t["balance"]) for t in balance["tiles"]] == [([3, 0], 2.0),
                                                                           ([1, 0], 2.0)]
    assert balance["lane_work"] == [4, 0] and balance["balance"] == 2.0


def test_batch_spmvs_of_one_descriptor_count_once():
    tile = _compile(rhs_columns=2).lane_balance()["tiles"][0]
    assert tile["spmvs"] == [{"format": "csr", "count": 2, "lane_work": [3, 1], "balance": 1.5}]
    assert tile["lane_work"] == [6, 2] and tile["balance"] == 1.5


def test_an_empty_row_with_a_bias_is_one_token():
    program = _compile(np.array([[1, 2, 3, 0], [0, 0, 0, 0]]), bias=[1, 5])
    assert program.lane_balance()["lane_work"] == [3, 1]


def test_lane_work_is_the_balance_total():
    program = _compile(rhs_columns=3)
    assert program.lane_work.tolist() == [9, 3]


def test_explain_and_listing_show_it():
    program = _compile()
    assert ("lane balance (an SPMV lasts as long as its busiest PE; balance = the busiest "
            "PE's work / the mean, 1.00 = even): balance 1.50 (work per PE 3 1)\n"
            "  tile 0: balance 1.50 (work per PE 3 1)\n") in explain(program)
    listing = program.listing()
    assert "work spread: tokens per lane min 1 max 3, CV 0.500, balance 1.50 (max / mean)\n" \
        in listing
    cycles = timing.SPMV_OVERHEAD + 3 + timing.INSN_OVERHEAD   # busiest lane: 3 tokens
    assert f"predicted {cycles} cycles, lane balance 1.50\n" in listing


def test_explain_names_the_busiest_of_many_lanes():
    a = np.zeros((17, 4), dtype=np.int64)
    a[:, 0] = 1
    a[5, 1:] = 1
    program = compile_kernel(a, AcceleratorConfig(pes=17, formats=("csr",)), split_rows=False)
    text = explain(program)
    # The longest row goes first, to lane 0: 4 of 20 tokens, 4 / (20 / 17) = 3.4.
    assert program.lane_balance()["lane_work"] == [4] + [1] * 16
    assert "tile 0: balance 3.40 (busiest PE 0 4, mean 1.2)\n" in text
