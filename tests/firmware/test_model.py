import numpy as np
import pytest

from zeroskip.core import timing
from zeroskip.core.config import AcceleratorConfig
from zeroskip.core.isa import (
    CTRL_CLEAR,
    CTRL_START,
    HARDWARE_ID,
    STATUS_DONE,
    STATUS_ERROR,
    ErrorCode,
    Reg,
    Region,
    route_word,
)
from zeroskip.firmware.asm import assemble, decode
from zeroskip.firmware.model import BusError, Machine
from zeroskip.firmware.program import pack_nz

CONFIG = AcceleratorConfig(pes=2, value_width=8, acc_width=16, x_depth=16, x_banks=2,
                           nz_depth=16, row_depth=8, imem_depth=8)


def load_code(m, text):
    for i, word in enumerate(assemble(text)):
        m.write_word(m.map.imem(i), word & 0xFFFFFFFF)
        m.write_word(m.map.imem(i) + 4, word >> 32)


def load_lane(m, lane, rows, *, base=0, nz_base=0, bias=None):
    """rows: list of lists of (col, value)."""
    ends = np.cumsum([len(r) for r in rows]).tolist()
    for i, word in enumerate([len(rows)] + ends):
        m.write_word(m.map.lane(Region.PTR, lane, base + i), word)
    entries = [e for r in rows for e in r]
    if entries:
        cols, values = zip(*entries, strict=True)
        for i, word in enumerate(pack_nz(cols, values, m.config).tolist()):
            m.write_word(m.map.lane(Region.NZ, lane, nz_base + i), word)
    for i, b in enumerate(bias or []):
        m.write_word(m.map.lane(Region.BIAS, lane, i), b & 0xFFFFFFFF)


def load_x(m, values):
    for i, v in enumerate(values):
        m.write_word(m.map.x(i), v & 0xFFFFFFFF)


def start(m, clear=True):
    m.write_word(m.map.reg(Reg.CTRL), CTRL_START | (CTRL_CLEAR if clear else 0))


def read(m, reg):
    return m.read_word(m.map.reg(reg))


def out(m, lane, n):
    words = [m.read_word(m.map.lane(Region.OUT, lane, i)) for i in range(n)]
    return [w - (1 << 32) if w >> 31 else w for w in words]


def error_code(m):
    status = read(m, Reg.STATUS)
    return ErrorCode((status >> 8) & 0xFF) if status & STATUS_ERROR else None


def test_identification_registers():
    m = Machine(CONFIG)
    assert read(m, Reg.ID) == HARDWARE_ID
    assert read(m, Reg.CONFIG) == 2 | 8 << 8 | 16 << 16
    assert read(m, Reg.FINGERPRINT) == int(CONFIG.fingerprint[:8], 16)
    assert read(m, Reg.CTRL) == 0
    assert read(m, Reg.STATUS) == 0
    assert m.read_word(m.map.pe_busy(1)) == 0
    # unassigned offsets of the register window read 0
    assert m.read_word(0x1C) == 0 and m.read_word(m.map.pe_busy(2)) == 0


@pytest.mark.parametrize("address", [
    8 << 24,                       # no such region
    (Region.META << 24),           # write-only
    1 << 28,                       # beyond the 28-bit map
    (Region.X << 24) + 2,          # not word aligned
    (Region.OUT << 24) + (2 << 18),  # lane 2 of 2
    (Region.OUT << 24) + 4 * 8,    # beyond row_depth
    (Region.IMEM << 24),           # write-only windows
    (Region.X << 24),
    (Region.PTR << 24),
    (Region.NZ << 24),
    (Region.BIAS << 24),
])
def test_read_bus_errors(address):
    with pytest.raises(BusError) as info:
        Machine(CONFIG).read_word(address)
    assert info.value.address == address


@pytest.mark.parametrize("address", [
    8 << 24,
    int(Reg.STATUS),                   # read-only register
    (Region.OUT << 24),                # read-only window
    (Region.IMEM << 24) + 8 * 8,       # instruction 8 of 8
    (Region.X << 24) + 4 * 16,
    (Region.NZ << 24) + 4 * 16,
    (Region.PTR << 24) + (3 << 18),
])
def test_write_bus_errors(address):
    with pytest.raises(BusError):
        Machine(CONFIG).write_word(address, 0)


def test_memory_writes_while_busy_fail():
    m = Machine(CONFIG)
    m.busy = True
    with pytest.raises(BusError, match="while busy"):
        m.write_word(m.map.x(0), 1)


def test_word_formats():
    m = Machine(CONFIG)
    m.write_word(m.map.imem(3), 0x89ABCDEF)
    m.write_word(m.map.imem(3) + 4, 0x01234567)
    assert int(m.imem[3]) == 0x0123456789ABCDEF
    m.write_word(m.map.x(2), 0xFFFFFFFF)
    m.write_word(m.map.x(3), 0x17F)     # only value_width bits are kept
    assert m.x[2:4].tolist() == [-1, 127]
    m.write_word(m.map.lane(Region.BIAS, 1, 0), 0xFFFF8000)
    assert m.bias[1, 0] == -32768
    m.out[1, 5] = -2
    assert m.read_word(m.map.lane(Region.OUT, 1, 5)) == 0xFFFFFFFE


def test_hand_program_results_and_counters():
    m = Machine(CONFIG)
    load_code(m, "set_epi shift=0 lo=-128 hi=127\nspmv\nhalt")
    # lane 0: row 0 = 2*x0 - 3*x3, row 1 empty, row 2 = 5*x1 + 7*x2 (x2 = 0: skipped)
    load_lane(m, 0, [[(0, 2), (3, -3)], [], [(1, 5), (2, 7)]])
    load_lane(m, 1, [[(3, 1)]])
    load_x(m, [10, -4, 0, 6])
    start(m)
    assert read(m, Reg.STATUS) == STATUS_DONE
    assert out(m, 0, 3) == [2 * 10 - 3 * 6, 0, -20]
    assert out(m, 1, 1) == [6]
    assert read(m, Reg.INSNS) == 3
    assert read(m, Reg.MACS) == 4
    assert read(m, Reg.SKIPPED) == 1
    assert m.read_word(m.map.pe_busy(0)) == 4
    assert m.read_word(m.map.pe_busy(1)) == 1
    sched = timing.schedule([[0, 1, -1, 1, 0], [1]], 2)
    assert read(m, Reg.CYCLES) == 2 * timing.INSN_OVERHEAD + timing.SPMV_OVERHEAD + sched.cycles
    assert read(m, Reg.GATHER_STALLS) == sched.stalls
    assert read(m, Reg.PC) == 2


def test_bases_accumulate_bias_and_epilogue():
    m = Machine(CONFIG)
    load_code(m, """
        spmv ptr=2 nz=4 x=8 out=1
        set_epi shift=2 relu=1 lo=-100 hi=50
        spmv ptr=2 nz=4 x=8 out=1 accumulate=1 bias=1 epilogue=1
        halt
    """)
    load_lane(m, 0, [[(0, 3)], [(1, 4)], [(1, -9)]], base=2, nz_base=4)
    for i, b in enumerate([0, 1, 2, -60]):
        m.write_word(m.map.lane(Region.BIAS, 0, i), b & 0xFFFFFFFF)
    load_x(m, [0] * 8 + [20, 7])
    start(m)
    assert error_code(m) is None
    # first pass: [60, 28, -63]; second doubles and adds bias[1:4] = [1, 2, -60]
    # -> [121, 58, -186]; (s + 2) >> 2 -> [30, 15, -47]; relu -> [30, 15, 0]; clamp hi 50
    assert out(m, 0, 4) == [0, 30, 15, 0]


def test_epilogue_saturates_and_rounds():
    m = Machine(CONFIG)
    load_code(m, "set_epi shift=1 lo=-32768 hi=32767\nspmv epilogue=1\nhalt")
    load_lane(m, 0, [[(0, 100)], [(0, -100)], [(1, 3)], [(1, -3)]])
    load_x(m, [100, 1])
    start(m)
    # 10000 >> 1 saturates to 127; -10000 -> -128; (3 + 1) >> 1 = 2; (-3 + 1) >> 1 = -1
    assert out(m, 0, 4) == [127, -128, 2, -1]


def test_epilogue_registers_persist_across_runs():
    m = Machine(CONFIG)
    load_lane(m, 0, [[(0, 3)]])
    load_x(m, [5])
    # reset values: shift 0, no relu, clamp [0, 0]
    load_code(m, "spmv epilogue=1\nhalt")
    start(m)
    assert out(m, 0, 1) == [0]
    load_code(m, "set_epi shift=1 lo=-128 hi=127\nhalt")
    start(m)
    load_code(m, "spmv epilogue=1\nhalt")
    start(m)
    assert out(m, 0, 1) == [8]   # (15 + 1) >> 1


def test_illegal_instruction():
    m = Machine(CONFIG)
    load_code(m, "nop\n.word 0xF\nhalt")
    start(m)
    assert error_code(m) == ErrorCode.ILLEGAL_INSN
    assert not read(m, Reg.STATUS) & STATUS_DONE
    assert read(m, Reg.PC) == 1
    assert read(m, Reg.INSNS) == 1


def test_pc_overrun():
    m = Machine(CONFIG)
    start(m)   # the instruction memory holds nothing but NOP
    assert error_code(m) == ErrorCode.PC_OVERRUN
    assert read(m, Reg.PC) == CONFIG.imem_depth
    assert read(m, Reg.INSNS) == CONFIG.imem_depth
    assert read(m, Reg.CYCLES) == (CONFIG.imem_depth * timing.INSN_OVERHEAD
                                   + timing.OVERRUN_OVERHEAD)


def _descriptor_case(m, case):
    code = "spmv\nhalt"
    if case == "ptr_base":       # ptr_base + n >= row_depth
        m.write_word(m.map.lane(Region.PTR, 1, 5), 3)   # ends would be words 6..8
        code = "spmv ptr=5\nhalt"
    elif case == "out_base":     # out_base + n > row_depth
        load_lane(m, 1, [[(0, 1)]] * 3)
        code = "spmv out=6\nhalt"
    elif case == "decreasing":
        for i, word in enumerate([2, 3, 1]):
            m.write_word(m.map.lane(Region.PTR, 1, i), word)
    elif case == "nz_end":       # nz_base + end > nz_depth
        load_lane(m, 1, [[(0, 1)]] * 3)
        code = "spmv nz=14\nhalt"
    elif case == "x_address":    # x_base + col >= x_depth
        load_lane(m, 1, [[(5, 1)]])
        code = "spmv x=11\nhalt"
    load_code(m, code)


@pytest.mark.parametrize("case", ["ptr_base", "out_base", "decreasing", "nz_end", "x_address"])
def test_descriptor_errors_write_nothing(case):
    m = Machine(CONFIG)
    load_lane(m, 0, [[(0, 1)]])   # a valid lane 0
    load_x(m, [9])
    _descriptor_case(m, case)
    start(m)
    assert error_code(m) == ErrorCode.DESCRIPTOR
    assert read(m, Reg.PC) == 0
    assert out(m, 0, 1) == [0]
    assert read(m, Reg.MACS) == 0


def test_descriptor_limits_are_inclusive():
    m = Machine(CONFIG)
    load_lane(m, 0, [[(0, 1)]] * 3, base=4)   # ptr words 4..7: fits exactly
    load_code(m, "spmv ptr=4 out=5 x=15\nhalt")  # out words 5..7, x address 15
    load_x(m, [0] * 15 + [3])
    start(m)
    assert error_code(m) is None
    assert out(m, 0, 8)[5:] == [3, 3, 3]


def test_overflow_of_a_partial_sum():
    m = Machine(CONFIG)
    load_code(m, "spmv\nhalt")
    # 127 * 127 = 16129; partial sums 16129, 32258, 48387 (overflow), 32258, 16129
    load_lane(m, 0, [[(0, 127)] * 3 + [(0, -127)] * 2])
    load_lane(m, 1, [[(0, 1)]])
    load_x(m, [127])
    start(m)
    assert error_code(m) == ErrorCode.OVERFLOW
    assert read(m, Reg.PC) == 0
    assert read(m, Reg.INSNS) == 0   # the SPMV completes but does not retire
    assert read(m, Reg.MACS) == 6
    assert out(m, 0, 1) == [16129]   # written, and wrapped results are exact here
    assert out(m, 1, 1) == [127]


def test_overflow_from_bias():
    m = Machine(CONFIG)
    load_code(m, "spmv bias=1\nhalt")
    load_lane(m, 0, [[(0, 127)]], bias=[32767])
    load_x(m, [1])
    start(m)
    assert error_code(m) == ErrorCode.OVERFLOW
    assert out(m, 0, 1) == [127 + 32767 - 65536]


def test_round_robin_pointers_persist_within_a_run():
    config = CONFIG.replace(x_banks=1, cluster_lanes=2)
    m = Machine(config)
    load_lane(m, 0, [[(0, 1), (1, 1)]])
    load_lane(m, 1, [[(2, 1)]])
    load_code(m, "spmv\nspmv\nhalt")
    start(m)
    # first SPMV: stalls lane 1 then lane 0, leaves rr = 1; the second starts with lane 1
    first = timing.schedule([[0, 0], [0]], 1)
    second = timing.schedule([[0, 0], [0]], 1, rr=first.rr)
    assert (first.stalls, second.stalls) == (2, 1)
    assert read(m, Reg.GATHER_STALLS) == 3
    assert read(m, Reg.CYCLES) == 2 * timing.SPMV_OVERHEAD + first.cycles + second.cycles + 2


def test_counters_accumulate_until_cleared():
    m = Machine(CONFIG)
    load_code(m, "nop\nhalt")
    start(m)
    start(m, clear=False)
    assert read(m, Reg.INSNS) == 4
    assert read(m, Reg.STATUS) == STATUS_DONE
    m.write_word(m.map.reg(Reg.CTRL), CTRL_CLEAR)
    assert read(m, Reg.INSNS) == 0 and read(m, Reg.STATUS) == 0
    assert read(m, Reg.PC) == 1   # the HALT's address; clear leaves PC alone


def test_counters_wrap_at_32_bits():
    m = Machine(CONFIG)
    m.counters["cycles"] = 0xFFFFFFFF
    load_code(m, "halt")
    start(m, clear=False)
    assert read(m, Reg.CYCLES) == timing.INSN_OVERHEAD - 1


def test_bulk_helpers_match_single_words():
    a, b = Machine(CONFIG), Machine(CONFIG)
    words = [1, 0xFFFFFFFF, 0x80, 5]
    a.write_words(a.map.lane(Region.NZ, 1, 2), words)
    for i, w in enumerate(words):
        b.write_word(b.map.lane(Region.NZ, 1, 2 + i), w)
    assert np.array_equal(a.nz, b.nz)
    with pytest.raises(BusError):
        a.write_words(a.map.lane(Region.NZ, 1, 14), words)
    with pytest.raises(BusError):
        a.write_words(a.map.x(14), words)
    a.out[0, :3] = [-1, 2, -3]
    assert a.read_words(a.map.lane(Region.OUT, 0, 0), 3).tolist() == [
        0xFFFFFFFF, 2, 0xFFFFFFFD]


# Storage formats ------------------------------------------------------------------------------

ALL = ("csr", "coo", "bitmap", "nm", "dense", "csc")
FMT = CONFIG.replace(formats=ALL, nz_depth=512, row_depth=16, x_depth=32)


def load_words(m, region, lane, words, base=0):
    for i, word in enumerate(words):
        m.write_word(m.map.lane(region, lane, base + i), int(word))


def test_pointer_words_hold_the_nm_descriptor():
    # ptr_width is 5 bits here; with N:M enabled pointer words keep 12
    assert CONFIG.ptr_width == 5
    small = CONFIG.replace(formats=("csr", "nm"))
    assert small.ptr_width == 12
    m = Machine(small)
    m.write_word(m.map.lane(Region.PTR, 0, 2), 2 | 2 << 8 | 1 << 12)
    assert m.ptr[0, 2] == 2 | 2 << 8
    m = Machine(CONFIG)
    m.write_word(m.map.lane(Region.PTR, 0, 2), 2 | 2 << 8)
    assert m.ptr[0, 2] == 2


def test_meta_window():
    m = Machine(FMT)
    m.write_word(m.map.lane(Region.META, 1, 3), 0x1_ABCD)    # 16 bits are kept
    assert m.meta[1, 3] == 0xABCD
    m.write_words(m.map.lane(Region.META, 0, 0), [1, 2, 3])
    assert m.meta[0, :3].tolist() == [1, 2, 3]
    with pytest.raises(BusError):
        m.read_word(m.map.lane(Region.META, 0, 0))


def test_coo_hand_program():
    m = Machine(FMT)
    load_code(m, "spmv fmt=coo\nhalt")
    # rows 0 and 3 of 4 hold entries; rows 1 and 2 are empty
    load_words(m, Region.PTR, 0, [4, 3])
    load_words(m, Region.NZ, 0, pack_nz([0, 2, 1], [2, 3, -1], FMT))
    load_words(m, Region.META, 0, [0, 0, 3])
    load_x(m, [5, 7, 1])
    start(m)
    assert error_code(m) is None
    assert out(m, 0, 4) == [13, 0, 0, -7]
    # tokens: 2 entries, 2 empty rows, 1 entry: banks 0, 0, -, -, 1 (x_banks 2)
    sched = timing.schedule([[0, 0, -1, -1, 1], []], 2)
    assert read(m, Reg.CYCLES) == timing.SPMV_OVERHEAD + sched.cycles + timing.INSN_OVERHEAD


def test_dense_and_nm_hand_programs():
    m = Machine(FMT)
    load_code(m, "spmv fmt=dense\nspmv fmt=nm ptr=4 nz=8 out=4\nhalt")
    # DENSE: 2 rows of L = 3
    load_words(m, Region.PTR, 0, [2, 3])
    load_words(m, Region.NZ, 0, pack_nz([0] * 6, [1, 0, 2, 0, 0, -1], FMT))
    # NM 1:2 with G = 2 groups: row 0 slots (col 1 of group 0, padding), row 1 (0, 1)
    load_words(m, Region.PTR, 0, [2, 2, 1 | 1 << 8], base=4)
    load_words(m, Region.NZ, 0, pack_nz([1, 0, 0, 1], [4, 0, 3, 5], FMT), base=8)
    load_x(m, [10, 20, 30, 40])
    start(m)
    assert error_code(m) is None
    assert out(m, 0, 2) == [70, -30]
    assert out(m, 0, 6)[4:] == [80, 230]
    # every slot is a token; zeros and padding are skipped products
    assert read(m, Reg.MACS) == 3 + 3
    assert read(m, Reg.SKIPPED) == 3 + 1
    assert m.read_word(m.map.pe_busy(0)) == 6 + 4


def test_bitmap_hand_program():
    m = Machine(FMT)
    load_code(m, "spmv fmt=bitmap\nhalt")
    # 2 rows, C = 2 chunks: row 0 columns 1 and 17, row 1 none
    load_words(m, Region.PTR, 0, [2, 2])
    load_words(m, Region.META, 0, [1 << 1, 1 << 1, 0, 0])
    load_words(m, Region.NZ, 0, pack_nz([0, 0], [3, -2], FMT))
    x = [0] * 32
    x[1], x[17] = 4, 6
    load_x(m, x)
    start(m)
    assert out(m, 0, 2) == [0, 0]
    x[1] = 5
    load_x(m, x)
    start(m)
    assert out(m, 0, 2) == [3 * 5 - 2 * 6, 0]
    # each chunk costs max(set bits, 1): banks 1 and 1 for row 0, two empty chunks for row 1
    sched = timing.schedule([[1, 1, -1, -1], []], 2)
    assert read(m, Reg.CYCLES) == timing.SPMV_OVERHEAD + sched.cycles + timing.INSN_OVERHEAD


def test_csc_hand_program():
    m = Machine(FMT)
    load_code(m, "spmv fmt=csc x=1 bias=1\nhalt")
    # 3 rows, 3 columns: col 0 = rows 0, 2; col 1 = row 1; col 2 = rows 0, 1
    load_words(m, Region.PTR, 0, [3, 3, 2, 3, 5])
    load_words(m, Region.NZ, 0, pack_nz([0] * 5, [1, 2, 3, 4, 5], FMT))
    load_words(m, Region.META, 0, [0, 2, 1, 0, 1])
    load_words(m, Region.BIAS, 0, [100, 200, 300])
    load_x(m, [9, 2, 0, 3])          # x_base 1: columns see 2, 0, 3
    start(m)
    assert error_code(m) is None
    assert out(m, 0, 3) == [100 + 2 + 12, 200 + 15, 300 + 4]
    assert read(m, Reg.MACS) == 4 and read(m, Reg.SKIPPED) == 1
    assert m.read_word(m.map.pe_busy(0)) == 4
    assert read(m, Reg.GATHER_STALLS) == 0
    # Two banks, x_base 1: the detector visits column 0 (moved in cycle 6)
    # and column 2 (moved in 7). Lane 0 walks them in cycles 9-10 and 11-12
    # and is done at max(3 + n, 13, 8 + 2, last entry 12 + 7) = 19, plus
    # n + 7 for the bias pass; lane 1 (no rows) is faster.
    assert read(m, Reg.CYCLES) == timing.CSC_OVERHEAD + 19 + 3 + 7 + timing.INSN_OVERHEAD


@pytest.mark.parametrize("fmt, ptr, meta", [
    ("coo", [2, 2], [1, 0]),           # rows decrease
    ("coo", [2, 1], [2]),              # row beyond n
    ("csc", [2, 1, 1], [2]),           # row beyond n
    ("csc", [1, 40], []),              # column ends beyond the pointer memory
    ("dense", [2, 40], []),            # x_base + L beyond the x buffer
    ("nm", [2, 200, 2 | 2 << 8], []),  # slots beyond the nonzero memory
])
def test_format_descriptor_errors(fmt, ptr, meta):
    m = Machine(FMT)
    load_code(m, f"spmv fmt={fmt}\nhalt")
    load_words(m, Region.PTR, 1, ptr)
    load_words(m, Region.META, 1, meta)
    start(m)
    assert error_code(m) == ErrorCode.DESCRIPTOR
    assert read(m, Reg.PC) == 0


def test_disabled_and_unknown_formats_are_illegal():
    m = Machine(CONFIG)              # CSR only
    load_code(m, "spmv fmt=dense\nhalt")
    start(m)
    assert error_code(m) == ErrorCode.ILLEGAL_INSN and read(m, Reg.PC) == 0
    m = Machine(FMT)
    word = assemble("spmv")[0] | 6 << 7     # fmt (bits 7-9) 6 names no format
    m.write_word(m.map.imem(0), word & 0xFFFFFFFF)
    m.write_word(m.map.imem(0) + 4, word >> 32)
    start(m)
    assert error_code(m) == ErrorCode.ILLEGAL_INSN


# REDUCE -----------------------------------------------------------------------------------------

RED = AcceleratorConfig(pes=4, value_width=8, acc_width=16, x_depth=16, nz_depth=16,
                        row_depth=16, imem_depth=8)


def load_routes(m, lane, routes, *, source, base=0):
    """routes: (destination lane, destination row) of each of ``lane``'s routes."""
    words = [len(routes), source] + [route_word(m.config, q, r) for q, r in routes]
    load_words(m, Region.PTR, lane, words, base)


def reduce_reference(out, routes, sources, src_base, dst_base):
    expected = out.copy()
    for p, lane_routes in enumerate(routes):
        for i, (q, r) in enumerate(lane_routes):
            expected[q, dst_base + r] += out[p, src_base + sources[p] + i]
    return expected


def test_reduce_matches_numpy():
    rng = np.random.default_rng(30)
    for trial in range(40):
        m = Machine(RED)
        src_base, dst_base = int(rng.integers(0, 3)), int(rng.integers(0, 3))
        ptr_base = int(rng.integers(0, 4))
        load_code(m, f"reduce ptr={ptr_base} src={src_base} dst={dst_base}\nhalt")
        m.out[:] = rng.integers(-300, 300, m.out.shape)
        # destinations: rows 0-4 (past dst_base); sources: rows 8 and up (past src_base)
        routes, sources = [], []
        for p in range(RED.pes):
            count = int(rng.integers(0, 6))
            lane_routes = [(int(rng.integers(RED.pes)), int(rng.integers(5)))
                           for _ in range(count)]
            if trial % 4 == 0 and count:
                lane_routes[0] = (p, lane_routes[0][1])      # a self-route
            source = 8 - src_base + int(rng.integers(0, 16 - 8 - count + 1))
            load_routes(m, p, lane_routes, source=source, base=ptr_base)
            routes.append(lane_routes)
            sources.append(source)
        expected = reduce_reference(m.out, routes, sources, src_base, dst_base)
        start(m)
        assert error_code(m) is None
        np.testing.assert_array_equal(m.out, expected)
        result = timing.reduce_schedule([[q for q, _ in r] for r in routes], RED.pes)
        assert read(m, Reg.CYCLES) == (timing.reduce_cycles(result.cycles)
                                       + timing.INSN_OVERHEAD)
        assert read(m, Reg.SCATTER_STALLS) == result.stalls
        assert read(m, Reg.INSNS) == 2


def test_reduce_cycles_and_counters_by_hand():
    m = Machine(RED)
    load_code(m, "reduce ptr=0 src=0 dst=0\nreduce ptr=0 src=0 dst=0\nhalt")
    # destinations as in tests/firmware/test_timing.py::test_reduce_schedule_by_hand
    load_routes(m, 0, [(1, 0), (1, 1)], source=8)
    load_routes(m, 1, [(1, 2), (0, 0)], source=8)
    load_routes(m, 2, [(0, 1)], source=8)
    load_routes(m, 3, [], source=8)
    m.out[:3, 8:10] = [[1, 2], [3, 4], [5, 0]]
    start(m)
    assert error_code(m) is None
    # 5 cycles, 7 stalls; the second REDUCE starts from rr = [2]:
    # cycle 1: lanes 0, 1, 2 offer, lane 2 is granted
    # cycles 2-5: lanes 0 and 1 alternate, from lane 0
    assert read(m, Reg.CYCLES) == 2 * timing.REDUCE_OVERHEAD + 5 + 5 + timing.INSN_OVERHEAD
    assert read(m, Reg.SCATTER_STALLS) == 7 + 5
    assert read(m, Reg.INSNS) == 3
    for reg in (Reg.MACS, Reg.SKIPPED, Reg.GATHER_STALLS):
        assert read(m, reg) == 0
    assert all(m.read_word(m.map.pe_busy(p)) == 0 for p in range(RED.pes))
    assert out(m, 0, 2) == [2 * 4, 2 * 5]
    assert out(m, 1, 3) == [2 * 1, 2 * 2, 2 * 3]
    # a new start resets the scatter pointers; CTRL.clear clears SCATTER_STALLS
    start(m)
    assert read(m, Reg.SCATTER_STALLS) == 7 + 5
    m.write_word(m.map.reg(Reg.CTRL), CTRL_CLEAR)
    assert read(m, Reg.SCATTER_STALLS) == 0


@pytest.mark.parametrize("code, routes, source", [
    ("reduce ptr=12", [(0, 0)] * 3, 0),           # ptr_base + 2 + m > row_depth
    ("reduce ptr=15", [], 0),                     # the header itself does not fit
    ("reduce src=4", [(0, 0)] * 3, 10),           # src_base + s + m > row_depth
    ("reduce", [(0, 0), (3, 0)], 8),              # destination lane beyond pes
    ("reduce dst=12", [(0, 1), (0, 4)], 8),       # dst_base + r beyond row_depth
])
def test_reduce_descriptor_errors(code, routes, source):
    config = RED.replace(pes=3)     # a lane field that can name lane 3
    m = Machine(config)
    load_code(m, f"nop\n{code}\nhalt")
    base = decode(assemble(code)[0])[1]["ptr_base"]
    words = [len(routes), source] + [route_word(config, q, r) for q, r in routes]
    load_words(m, Region.PTR, 2, words[:config.row_depth - base], base)
    start(m)
    assert error_code(m) == ErrorCode.DESCRIPTOR
    assert read(m, Reg.PC) == 1


def test_reduce_overflow_follows_the_grant_order():
    m = Machine(RED)         # acc_width 16
    load_code(m, "reduce\nhalt")
    # lane 0 and lane 1 both add to out[0][0]; lane 0 is granted first
    load_routes(m, 0, [(0, 0)], source=8)
    load_routes(m, 1, [(0, 0)], source=8)
    m.out[0, 0] = 32000
    m.out[0, 8], m.out[1, 8] = 1000, -1000     # 33000 on the way: overflow
    start(m)
    assert error_code(m) == ErrorCode.OVERFLOW and read(m, Reg.PC) == 0
    m.out[0, 0] = 32000
    m.out[0, 8], m.out[1, 8] = -1000, 1000     # 31000, then 32000
    start(m)
    assert error_code(m) is None and out(m, 0, 1) == [32000]


def test_reduce_is_illegal_without_the_network():
    m = Machine(RED.replace(reduce=False))
    load_code(m, "nop\nreduce\nhalt")
    start(m)
    assert error_code(m) == ErrorCode.ILLEGAL_INSN and read(m, Reg.PC) == 1
    assert read(m, Reg.CYCLES) == 2 * timing.INSN_OVERHEAD


# MOVE.

def fill_out(m, lane, values):
    """``out[lane][0:len(values)] = values`` (at most 7): an SPMV over empty rows with bias."""
    load_lane(m, lane, [[]] * len(values), bias=values)


def test_move_copies_lane_major_and_saturates():
    m = Machine(CONFIG)   # 2 lanes, 8-bit values, x_depth 16, row_depth 8
    fill_out(m, 0, [100, -200, 5, 7, 300, 0, 1])
    fill_out(m, 1, [1, 2, 3, 4, 5, 6, 7])
    load_x(m, [-1] * 16)
    load_code(m, "spmv bias=1\nmove src=1 dst=3 count=4\nhalt")
    start(m)
    assert error_code(m) is None
    # x[3 + p * 4 + i] = saturate(out[p][1 + i]); the rest as the host wrote it
    assert m.x.tolist() == [-1, -1, -1, -128, 5, 7, 127, 2, 3, 4, 5, -1, -1, -1, -1, -1]
    assert out(m, 0, 7) == [100, -200, 5, 7, 300, 0, 1]      # out is only read
    spmv = timing.SPMV_OVERHEAD + 7      # 7 empty rows per lane, one cycle each
    assert read(m, Reg.CYCLES) == spmv + timing.MOVE_OVERHEAD + 2 * 4 + timing.INSN_OVERHEAD
    assert (read(m, Reg.INSNS), read(m, Reg.MACS), read(m, Reg.PC)) == (3, 0, 2)


def test_move_of_nothing_costs_the_overhead():
    m = Machine(CONFIG)
    load_x(m, [4] * 16)
    load_code(m, "move src=8 dst=16 count=0\nhalt")     # the limits, inclusive
    start(m)
    assert error_code(m) is None
    assert m.x.tolist() == [4] * 16
    assert read(m, Reg.CYCLES) == timing.MOVE_OVERHEAD + timing.INSN_OVERHEAD


@pytest.mark.parametrize("operands", [
    "src=5 dst=0 count=4",      # out words 5..8: row_depth is 8
    "src=0 dst=9 count=4",      # X words 9..16: x_depth is 16
    "src=0 dst=0 count=9",      # both
])
def test_move_descriptor_errors_write_nothing(operands):
    m = Machine(CONFIG)
    fill_out(m, 0, [1] * 7)
    load_x(m, list(range(16)))
    load_code(m, f"spmv bias=1\nmove {operands}\nhalt")
    start(m)
    assert error_code(m) == ErrorCode.DESCRIPTOR
    assert read(m, Reg.PC) == 1 and read(m, Reg.INSNS) == 1
    assert m.x.tolist() == list(range(16))


def test_move_limits_are_inclusive():
    m = Machine(CONFIG)
    fill_out(m, 0, [9, 8, 7, 6, 5, 4, 3])                     # out[0][7] stays 0
    load_x(m, [-5] * 16)
    load_code(m, "spmv bias=1\nmove src=5 dst=10 count=3\nhalt")   # out 5..7, X 10..15
    start(m)
    assert error_code(m) is None
    assert m.x.tolist() == [-5] * 10 + [4, 3, 0, 0, 0, 0]


def test_move_is_illegal_without_the_move_engine():
    m = Machine(RED.replace(move=False))
    load_code(m, "nop\nmove src=0 dst=0 count=1\nhalt")
    start(m)
    assert error_code(m) == ErrorCode.ILLEGAL_INSN and read(m, Reg.PC) == 1
    assert read(m, Reg.CYCLES) == 2 * timing.INSN_OVERHEAD
