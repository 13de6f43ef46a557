"""Lane: SPMV tiles through decoder, a Python gather stub, PE and writeback."""

import random
from collections import deque

import numpy as np
import pytest

from zeroskip.config import AcceleratorConfig
from zeroskip.hdl.lane import Lane
from zeroskip.sim.streams import simulate

CONFIG = AcceleratorConfig(pes=1, value_width=16, acc_width=32, x_depth=256, nz_depth=512,
                           row_depth=64)

#: Lane busy cycles minus tokens of an SPMV, without the gather's latency.
LANE_OVERHEAD = 12


def wrap(config, value):
    return (value - config.acc_min) % (1 << config.acc_width) + config.acc_min


def epilogue_and_adds(config, s, out_old, bias, desc, epi):
    """Steps 2 to 4 of SPMV (zeroskip.firmware.isa); returns (s, overflow)."""
    overflow = False
    for flag, term in ((desc["accumulate"], out_old), (desc["bias"], bias)):
        if flag:
            s += term
            overflow |= not config.acc_min <= s <= config.acc_max
            s = wrap(config, s)
    if desc["epilogue"]:
        shift = epi["shift"]
        s = (s + ((1 << (shift - 1)) if shift else 0)) >> shift
        if epi["relu"]:
            s = max(s, 0)
        s = min(max(s, epi["clamp_lo"]), epi["clamp_hi"])
        s = min(max(s, config.value_min), config.value_max)
    return s, overflow


def random_matrix(rng, config, rows, cols, density, *, empty_rows=0.2):
    a = rng.integers(config.value_min, config.value_max + 1, (rows, cols))
    a[rng.random((rows, cols)) >= density] = 0
    a[rng.random(rows) < empty_rows] = 0
    return a


def csr_image(a):
    """(ends, entries) of a dense tile: the lane's CSR form."""
    ends, entries = [], []
    for row in a:
        for col in np.flatnonzero(row):
            entries.append((int(col), int(row[col])))
        ends.append(len(entries))
    return ends, entries


class Spmv:
    """One SPMV: a tile placed at the given bases, and its operands."""

    def __init__(self, a, *, ptr_base=0, nz_base=0, x_base=0, out_base=0, accumulate=0,
                 bias=0, epilogue=0, epi=None):
        self.a = a
        self.desc = {"ptr_base": ptr_base, "nz_base": nz_base, "x_base": x_base,
                     "out_base": out_base, "accumulate": accumulate, "bias": bias,
                     "epilogue": epilogue}
        self.epi = epi or {"shift": 0, "relu": 0, "clamp_lo": 0, "clamp_hi": 0}

    @property
    def tokens(self):
        return sum(max(1, int(np.count_nonzero(row))) for row in self.a)

    def load(self, ptr, nz):
        ends, entries = csr_image(self.a)
        ptr[self.desc["ptr_base"]] = len(ends)
        for i, end in enumerate(ends):
            ptr[self.desc["ptr_base"] + 1 + i] = end
        for k, entry in enumerate(entries):
            nz[self.desc["nz_base"] + k] = entry

    def apply(self, config, x, out, bias):
        """Expected effect on ``out`` (a list), numpy for the products."""
        d = self.desc
        cols = self.a.shape[1]
        y = self.a.astype(np.int64) @ np.array(x[d["x_base"]:d["x_base"] + cols], dtype=np.int64)
        overflow = False
        for i, s in enumerate(y.tolist()):
            addr = d["out_base"] + i
            overflow |= not config.acc_min <= s <= config.acc_max
            out[addr], row_overflow = epilogue_and_adds(config, wrap(config, s), out[addr],
                                                        bias[addr], d, self.epi)
            overflow |= row_overflow
        return overflow


def run_lane(config, ptr, nz, bias, x, spmvs, *, stall=0.3, latency=2, seed=0,
             read_rows=None, max_cycles=20000):
    """Load the lane through the host port, run ``spmvs``, read ``out`` back.

    Returns a dict: per-instruction (busy cycles, desc_error, overflow), the
    out image, and the PE pulse counts.
    """
    dut = Lane(config)
    found = {"runs": [], "mac": 0, "skip": 0, "pe_busy": 0}
    rng = random.Random(seed)
    mask = (1 << 32) - 1

    async def gather(ctx):
        """Responds to requests with x[addr], after ``latency`` cycles, in order."""
        pending = deque()
        offered = None
        cycle = 0
        ctx.set(dut.req.ready, 1)
        async for _, _, rv, rr, rp, sv, sr in ctx.tick().sample(
                dut.req.valid, dut.req.ready, dut.req.payload, dut.resp.valid, dut.resp.ready):
            if rv and rr:
                tag = {"value": rp.tag.value, "row": rp.tag.row, "last": rp.tag.last,
                       "empty": rp.tag.empty}
                data = 0 if rp.skip else x[rp.addr]
                pending.append((cycle + latency, {"data": data, "tag": tag}))
            if sv and sr:
                offered = None
            cycle += 1
            if offered is None and pending and pending[0][0] <= cycle:
                if not (stall and rng.random() < stall):
                    offered = pending.popleft()[1]
            ctx.set(dut.resp.valid, offered is not None)
            if offered is not None:
                ctx.set(dut.resp.payload, offered)
            ctx.set(dut.req.ready, not (stall and rng.random() < stall))

    async def monitor(ctx):
        async for _, _, mac, skip, pe_busy in ctx.tick().sample(dut.mac, dut.skip, dut.pe_busy):
            found["mac"] += mac
            found["skip"] += skip
            found["pe_busy"] += pe_busy

    async def host_write(ctx, strobe, addr, value):
        ctx.set(dut.host_addr, addr)
        ctx.set(dut.host_wdata, value & mask)
        ctx.set(strobe, 1)
        await ctx.tick()
        ctx.set(strobe, 0)

    async def bench(ctx):
        for i, word in enumerate(ptr):
            if word:
                await host_write(ctx, dut.host_we_ptr, i, word)
        for i, entry in enumerate(nz):
            if entry:
                col, value = entry
                await host_write(ctx, dut.host_we_nz, i,
                                 col | (value & ((1 << config.value_width) - 1))
                                 << config.col_width)
        for i, value in enumerate(bias):
            if value:
                await host_write(ctx, dut.host_we_bias, i, value)
        for spmv in spmvs:
            ctx.set(dut.desc, spmv.desc)
            ctx.set(dut.epi, spmv.epi)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            # Scramble the operands: the lane must have latched them.
            ctx.set(dut.desc, {"ptr_base": 1, "nz_base": 1, "x_base": 1, "out_base": 1,
                               "accumulate": 1, "bias": 1, "epilogue": 1})
            ctx.set(dut.epi, {"shift": 3, "relu": 1, "clamp_lo": -1, "clamp_hi": 1})
            busy_cycles = 0
            while ctx.get(dut.busy):
                busy_cycles += 1
                assert busy_cycles < max_cycles, "lane did not finish"
                await ctx.tick()
            found["runs"].append((busy_cycles, ctx.get(dut.desc_error), ctx.get(dut.overflow)))
        image = []
        for row in (read_rows if read_rows is not None else range(config.row_depth)):
            ctx.set(dut.host_addr, row)
            await ctx.tick()
            image.append(ctx.get(dut.host_rdata))
        found["image"] = [v - (1 << 32) if v >> 31 else v for v in image]

    simulate(dut, bench, processes=[gather, monitor])
    return found


def random_x(rng, config, zero=0.2):
    x = rng.integers(config.value_min, config.value_max + 1, config.x_depth)
    x[rng.random(config.x_depth) < zero] = 0
    return [int(v) for v in x]


def expected_counts(spmvs, x):
    mac = skip = 0
    for spmv in spmvs:
        for col, value in csr_image(spmv.a)[1]:
            operand = x[spmv.desc["x_base"] + col]
            if value and operand:
                mac += 1
            else:
                skip += 1
    return mac, skip


@pytest.mark.parametrize("seed", range(3))
def test_spmv_tiles_vs_numpy(seed):
    config = CONFIG
    rng = np.random.default_rng(seed)
    x = [v // 128 for v in random_x(rng, config)]      # keeps every sum inside 32 bits
    ptr = [0] * config.row_depth
    nz = [None] * config.nz_depth
    bias = [int(v) for v in rng.integers(-1000, 1000, config.row_depth)]

    a1 = random_matrix(rng, config, 20, 40, 0.2)
    a2 = random_matrix(rng, config, 20, 30, 0.3)
    a3 = random_matrix(rng, config, 12, 25, 0.5, empty_rows=0.3)
    a3[3:7] = 0                                         # a run of empty rows
    nz2 = np.count_nonzero(a1) + 3
    nz3 = nz2 + np.count_nonzero(a2) + 5
    spmvs = [
        Spmv(a1),
        # The next column tile of the same rows: accumulate onto the partial sums.
        Spmv(a2, ptr_base=21, nz_base=nz2, x_base=40, accumulate=1),
        Spmv(a3, ptr_base=42, nz_base=nz3, x_base=180, out_base=30, bias=1, epilogue=1,
             epi={"shift": 9, "relu": 1, "clamp_lo": -100, "clamp_hi": 20000}),
        # a1 again (same image), into the top rows with every option on.
        Spmv(a1, out_base=44, bias=1, accumulate=1, epilogue=1,
             epi={"shift": 0, "relu": 0, "clamp_lo": -32768, "clamp_hi": 32767}),
    ]
    for spmv in spmvs:
        spmv.load(ptr, nz)

    found = run_lane(config, ptr, nz, bias, x, spmvs, seed=seed)

    out = [0] * config.row_depth
    assert not any(spmv.apply(config, x, out, bias) for spmv in spmvs)
    assert found["image"] == out
    assert [r[1:] for r in found["runs"]] == [(0, 0)] * len(spmvs)
    mac, skip = expected_counts(spmvs, x)
    assert (found["mac"], found["skip"], found["pe_busy"]) == (mac, skip, mac + skip)


@pytest.mark.parametrize("latency", [1, 3])
def test_throughput_busy_cycles(latency):
    """Gather granting every cycle at a fixed latency: busy = tokens + constant."""
    config = CONFIG
    rng = np.random.default_rng(5)
    x = random_x(rng, config)
    a_mixed = random_matrix(rng, config, 30, 20, 0.15, empty_rows=0.3)
    a_empty = np.zeros((20, 4), dtype=np.int64)
    a_empty[[3, 11, 12, 19], 1] = 7
    a_long = random_matrix(rng, config, 1, 200, 1.0, empty_rows=0.0)
    a_single = np.eye(6, 40, dtype=np.int64) * 3
    spmvs = [Spmv(a_mixed), Spmv(a_empty, ptr_base=31, nz_base=200),
             Spmv(a_single, ptr_base=52, nz_base=220), Spmv(a_long, ptr_base=59, nz_base=250)]
    ptr = [0] * config.row_depth
    nz = [None] * config.nz_depth
    for spmv in spmvs:
        spmv.load(ptr, nz)
    found = run_lane(config, ptr, nz, [0] * config.row_depth, x, spmvs, stall=0.0,
                     latency=latency, read_rows=[])
    overheads = [busy - spmv.tokens for (busy, _, _), spmv in zip(found["runs"], spmvs,
                                                                   strict=True)]
    assert overheads == [LANE_OVERHEAD + latency] * len(spmvs)
    assert Lane.OVERHEAD == LANE_OVERHEAD


def test_n_zero_finishes():
    config = CONFIG
    spmv = Spmv(np.zeros((0, 4), dtype=np.int64), ptr_base=5)
    found = run_lane(config, [0] * config.row_depth, [None] * config.nz_depth,
                     [0] * config.row_depth, [0] * config.x_depth, [spmv], read_rows=[])
    assert found["runs"] == [(N_ZERO_BUSY, 0, 0)]
    assert Lane.EMPTY_BUSY == N_ZERO_BUSY


#: Busy cycles of an SPMV whose lane has no rows.
N_ZERO_BUSY = 4


def test_overflow_sticky_until_start():
    config = AcceleratorConfig(pes=1, value_width=8, acc_width=16, x_depth=16, nz_depth=16,
                               row_depth=8)
    x = [127] * 16
    a = np.array([[127, 127, 127, 0], [1, 0, 0, 0]])     # 3 * 16129 > 32767
    spmvs = [Spmv(a), Spmv(a[1:], ptr_base=4, nz_base=5),
             Spmv(a[1:], ptr_base=4, nz_base=5, bias=1)]
    ptr = [0] * 8
    nz = [None] * 16
    for spmv in spmvs[:2]:
        spmv.load(ptr, nz)
    bias = [config.acc_max] + [0] * 7                     # 127 + acc_max overflows
    found = run_lane(config, ptr, nz, bias, x, spmvs, read_rows=[1])
    assert [r[1:] for r in found["runs"]] == [(0, 1), (0, 0), (0, 1)]
    assert found["image"] == [127]


def test_descriptor_error_drains_and_clears():
    config = CONFIG
    rng = np.random.default_rng(9)
    x = random_x(rng, config)
    a = random_matrix(rng, config, 10, 30, 0.4, empty_rows=0.0)
    good = Spmv(a)
    bad_x = Spmv(a, x_base=config.x_depth - 20)          # some column runs past x
    bad_n = Spmv(a, ptr_base=config.row_depth - 10)      # ptr_base + n >= row_depth
    bad_out = Spmv(a, out_base=config.row_depth - 9)     # out_base + n > row_depth
    ptr = [0] * config.row_depth
    nz = [None] * config.nz_depth
    good.load(ptr, nz)
    ptr[config.row_depth - 10] = 10
    spmvs = [bad_x, good, bad_n, bad_out, good]
    found = run_lane(config, ptr, nz, [0] * config.row_depth, x, spmvs, read_rows=range(10))
    assert [r[1:] for r in found["runs"]] == [(1, 0), (0, 0), (1, 0), (1, 0), (0, 0)]
    # Nothing at all is written by an instruction that fails before its first token.
    assert found["runs"][2][0] <= 3 and found["runs"][3][0] <= 3
    out = [0] * config.row_depth
    good.apply(config, x, out, [0] * config.row_depth)
    assert found["image"] == out[:10]
