"""Lane: SPMV tiles through decoder, a Python gather stub, PE and writeback.

Row formats run through a gather stub with random stalls; column mode (CSC)
takes its nonzero columns from a stub of the nonzero detector, also with
random stalls.
"""

import random
from collections import deque

import numpy as np
import pytest

from zeroskip.core.config import AcceleratorConfig
from zeroskip.core.isa import BITMAP_CHUNK, Format
from zeroskip.hdl.axil import READ_LATENCY
from zeroskip.hdl.lane import Lane
from zeroskip.sim.streams import simulate

CONFIG = AcceleratorConfig(pes=1, value_width=16, acc_width=32, x_depth=256, nz_depth=512,
                           row_depth=64)
ALL_FORMATS = ("csr", "coo", "bitmap", "nm", "dense", "csc")
CONFIG_ALL = CONFIG.replace(formats=ALL_FORMATS)

#: Lane busy cycles minus tokens of an SPMV, without the gather's latency.
LANE_OVERHEAD = 14


def wrap(config, value):
    return (value - config.acc_min) % (1 << config.acc_width) + config.acc_min


def epilogue_and_adds(config, s, out_old, bias, desc, epi):
    """Steps 2 to 4 of SPMV (zeroskip.core.isa); returns (s, overflow)."""
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
                     "epilogue": epilogue, "fmt": Format.CSR}
        self.epi = epi or {"shift": 0, "relu": 0, "clamp_lo": 0, "clamp_hi": 0}

    def columns(self, x):
        """Column mode only: the detector's entries for this instruction."""
        return []

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


def run_lane(config, ptr, nz, bias, x, spmvs, *, meta=(), stall=0.3, latency=2, seed=0,
             read_rows=None, max_cycles=20000, col_stall=None):
    """Load the lane through the host port, run ``spmvs``, read ``out`` back.

    ``col_stall`` is the probability that the column stub holds back an entry
    (``stall`` by default).

    Returns a dict: per-instruction (busy cycles, desc_error, overflow), the
    out image, and the PE pulse counts.
    """
    col_stall = stall if col_stall is None else col_stall
    dut = Lane(config)
    found = {"runs": [], "mac": 0, "skip": 0, "pe_busy": 0, "moved": []}
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
        async for _, _, mac, skip, pe_busy, bulk in ctx.tick().sample(
                dut.mac, dut.skip, dut.pe_busy, dut.skip_bulk):
            found["mac"] += mac
            found["skip"] += skip + bulk
            found["pe_busy"] += pe_busy

    async def host_write(ctx, strobe, addr, value):
        ctx.set(dut.host_waddr, addr)
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
        for i, word in enumerate(meta):
            if word:
                await host_write(ctx, dut.host_we_meta, i, word)
        col_rng = random.Random(seed + 7)
        for spmv in spmvs:
            ctx.set(dut.desc, spmv.desc)
            ctx.set(dut.epi, spmv.epi)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            # Scramble the operands: the lane must have latched them.
            ctx.set(dut.desc, {"ptr_base": 1, "nz_base": 1, "x_base": 1, "out_base": 1,
                               "accumulate": 1, "bias": 1, "epilogue": 1, "fmt": Format.NM})
            ctx.set(dut.epi, {"shift": 3, "relu": 1, "clamp_lo": -1, "clamp_hi": 1})
            columns = spmv.columns(x)
            moved = []          # the cycle (after start) each column entry moved
            sent = 0
            offering = False
            busy_cycles = 0
            while ctx.get(dut.busy):
                busy_cycles += 1
                assert busy_cycles < max_cycles, "lane did not finish"
                # The detector stub: entries in order, held until taken.
                if not offering and sent < len(columns):
                    offering = not (col_stall and col_rng.random() < col_stall)
                ctx.set(dut.cols.valid, offering)
                if offering:
                    ctx.set(dut.cols.payload, columns[sent])
                _, _, ready = await ctx.tick().sample(dut.cols.ready)
                if offering and ready:
                    sent += 1
                    offering = False
                    moved.append(busy_cycles)
            ctx.set(dut.cols.valid, 0)
            assert sent == len(columns), "the lane went idle before the end of its columns"
            found["runs"].append((busy_cycles, ctx.get(dut.desc_error), ctx.get(dut.overflow)))
            found["moved"].append(moved)
        # One address a cycle: the word of each comes exactly READ_LATENCY
        # cycles later.
        image = []
        rows = list(read_rows if read_rows is not None else range(config.row_depth))
        for cycle in range(len(rows) + READ_LATENCY - 1):
            if cycle < len(rows):
                ctx.set(dut.host_addr, rows[cycle])
            await ctx.tick()
            if cycle + 1 >= READ_LATENCY:
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


# ---------------------------------------------------------------------------
# Every format: images encoded from a dense tile as isa.py lays them out.
# ---------------------------------------------------------------------------

def encode(fmt, a, config, *, nm=(2, 4), seed=0):
    """``(ptr words, nz entries, meta words)`` of tile ``a`` in ``fmt``, from address 0.

    nz entries are ``(col, value)``; where a format ignores the column field
    it holds junk. CSC stores a column's entries in a shuffled row order.
    """
    rng = random.Random(seed)
    n, width = a.shape

    def junk():
        return rng.randrange(1 << config.col_width)

    if fmt is Format.CSR:
        ends, entries = csr_image(a)
        return [n] + ends, entries, []
    if fmt is Format.COO:
        rows, cols = np.nonzero(a)
        return ([n, len(rows)], [(int(j), int(a[i, j])) for i, j in zip(rows, cols)],
                [int(i) for i in rows])
    if fmt is Format.BITMAP:
        chunks = -(-width // BITMAP_CHUNK)
        meta, nz = [], []
        for i in range(n):
            for c in range(chunks):
                word = 0
                for t in range(BITMAP_CHUNK):
                    j = BITMAP_CHUNK * c + t
                    if j < width and a[i, j]:
                        word |= 1 << t
                        nz.append((junk(), int(a[i, j])))
                meta.append(word)
        return [n, chunks], nz, meta
    if fmt is Format.NM:
        big_n, m = nm
        groups = -(-width // m)
        nz = []
        for i in range(n):
            for g in range(groups):
                held = [(j - g * m, int(a[i, j])) for j in range(g * m, min(width, g * m + m))
                        if a[i, j]]
                assert len(held) <= big_n, "the tile is not N:M"
                # Padding slots: value 0, any column of the group.
                nz += held + [(rng.randrange(m), 0) for _ in range(big_n - len(held))]
        return [n, groups, big_n | (m.bit_length() - 1) << 8], nz, []
    if fmt is Format.DENSE:
        return [n, width], [(junk(), int(v)) for v in a.reshape(-1)], []
    assert fmt is Format.CSC
    ends, nz, meta = [], [], []
    for j in range(width):
        rows = [int(i) for i in np.flatnonzero(a[:, j])]
        rng.shuffle(rows)
        for i in rows:
            nz.append((junk(), int(a[i, j])))
            meta.append(i)
        ends.append(len(nz))
    return [n, width] + ends, nz, meta


def nm_matrix(rng, config, rows, cols, big_n, m, *, empty_rows=0.2):
    """A random tile with at most ``big_n`` nonzeros in every aligned group of ``m``."""
    a = np.zeros((rows, cols), dtype=np.int64)
    for i in range(rows):
        if rng.random() < empty_rows:
            continue
        for g in range(0, cols, m):
            width = min(m, cols - g)
            keep = rng.choice(width, size=min(big_n, width), replace=False)
            keep = keep[rng.random(len(keep)) < 0.8]
            a[i, g + keep] = rng.integers(config.value_min, config.value_max + 1, len(keep))
    return a


class FormatSpmv(Spmv):
    """An SPMV of tile ``a`` stored in ``fmt``."""

    def __init__(self, a, fmt, *, nm=(2, 4), config=CONFIG, **kwargs):
        super().__init__(a, **kwargs)
        self.fmt = fmt
        self.nm = nm
        self.desc["fmt"] = fmt
        self.image = encode(fmt, a, config, nm=nm)

    def load(self, ptr, nz, meta=None):
        words, entries, metas = self.image
        for i, word in enumerate(words):
            ptr[self.desc["ptr_base"] + i] = word
        for k, entry in enumerate(entries):
            nz[self.desc["nz_base"] + k] = entry
        for k, word in enumerate(metas):
            meta[self.desc["nz_base"] + k] = word

    @property
    def tokens(self):
        """Row formats: the token count of the timing contract."""
        a = self.a
        n, width = a.shape
        if self.fmt in (Format.CSR, Format.COO):
            return sum(max(1, int(np.count_nonzero(row))) for row in a)
        if self.fmt is Format.BITMAP:
            chunks = -(-width // BITMAP_CHUNK)
            if chunks == 0:
                return n
            return sum(max(1, int(np.count_nonzero(row[c * 16:c * 16 + 16])))
                       for row in a for c in range(chunks))
        if self.fmt is Format.NM:
            big_n, m = self.nm
            return n * max(1, -(-width // m) * big_n)
        return n * max(1, width)

    def products(self, x):
        """``(a, x)`` of every product the PE consumes (PE_BUSY, MACS, SKIPPED)."""
        xb = self.desc["x_base"]
        if self.fmt is Format.CSC:
            return [(value, x[xb + j]) for j in range(self.a.shape[1]) if x[xb + j]
                    for value in self.a[:, j] if value]
        if self.fmt is Format.NM:
            return [(value, x[xb + col]) for col, value in self._nm_slots()]
        if self.fmt is Format.DENSE:
            return [(value, x[xb + j]) for row in self.a for j, value in enumerate(row)]
        return [(value, x[xb + j]) for row in self.a for j, value in enumerate(row) if value]

    def unvisited(self, x):
        """CSC: entries of the columns with a zero activation (counted as skipped)."""
        if self.fmt is not Format.CSC:
            return 0
        xb = self.desc["x_base"]
        return sum(int(np.count_nonzero(self.a[:, j])) for j in range(self.a.shape[1])
                   if not x[xb + j])

    def _nm_slots(self):
        words, entries, _ = self.image
        big_n, m = self.nm
        per_row = words[1] * big_n
        return [((s % per_row) // big_n * m + col, value)
                for s, (col, value) in enumerate(entries)]

    def columns(self, x):
        if self.fmt is not Format.CSC:
            return []
        xb = self.desc["x_base"]
        return ([{"col": j, "value": x[xb + j], "end": 0} for j in range(self.a.shape[1])
                 if xb + j < len(x) and x[xb + j]] + [{"col": 0, "value": 0, "end": 1}])

    def work(self, x):
        """CSC: the lane's cycles per visited column, ``max(entries, 1)``."""
        xb = self.desc["x_base"]
        return [max(1, int(np.count_nonzero(self.a[:, j]))) for j in range(self.a.shape[1])
                if x[xb + j]]


def load_all(config, spmvs):
    ptr = [0] * config.row_depth
    nz = [None] * config.nz_depth
    meta = [0] * config.nz_depth
    for spmv in spmvs:
        spmv.load(ptr, nz, meta)
    return ptr, nz, meta


def check_counts(found, spmvs, x):
    products = [p for spmv in spmvs for p in spmv.products(x)]
    unvisited = sum(spmv.unvisited(x) for spmv in spmvs)
    mac = sum(1 for a, v in products if a and v)
    assert (found["mac"], found["skip"], found["pe_busy"]) == (
        mac, len(products) - mac + unvisited, len(products))


def format_tiles(fmt, rng, config):
    """Three tiles of ``fmt`` (the third with every option on), their SPMVs."""
    def matrix(rows, cols, density, **kwargs):
        if fmt is Format.NM:
            return nm_matrix(rng, config, rows, cols, 2, 4, **kwargs)
        return random_matrix(rng, config, rows, cols, density, **kwargs)

    # Widths that keep every image inside the memories (N:M and dense store
    # n * width slots, CSC one pointer per column).
    widths = {Format.DENSE: (12, 10, 8), Format.NM: (24, 20, 21),
              Format.CSC: (20, 16, 12)}.get(fmt, (40, 36, 21))
    a1 = matrix(14, widths[0], 0.2)
    a2 = matrix(14, widths[1], 0.5)
    a3 = matrix(9, widths[2], 0.4, empty_rows=0.3)
    a3[2:4] = 0                                   # a run of empty rows
    if fmt is Format.BITMAP:
        a1[:, 16:32] = 0                          # an all-zero chunk in every row
    images = [encode(fmt, a, config) for a in (a1, a2, a3)]
    ptr2 = len(images[0][0]) + 1
    ptr3 = ptr2 + len(images[1][0]) + 2
    nz2 = len(images[0][1]) + 3
    nz3 = nz2 + len(images[1][1]) + 5
    assert ptr3 + len(images[2][0]) <= config.row_depth
    assert nz3 + len(images[2][1]) <= config.nz_depth
    spmvs = [
        FormatSpmv(a1, fmt),
        FormatSpmv(a2, fmt, ptr_base=ptr2, nz_base=nz2, x_base=40, accumulate=1),
        FormatSpmv(a3, fmt, ptr_base=ptr3, nz_base=nz3, x_base=180, out_base=30, bias=1,
                   epilogue=1, accumulate=1,
                   epi={"shift": 9, "relu": 1, "clamp_lo": -100, "clamp_hi": 20000}),
    ]
    return spmvs


@pytest.mark.parametrize("fmt", list(Format), ids=lambda f: f.name.lower())
def test_formats_vs_numpy(fmt):
    config = CONFIG_ALL
    rng = np.random.default_rng(20 + fmt.value)
    x = [v // 128 for v in random_x(rng, config, zero=0.4)]
    bias = [int(v) for v in rng.integers(-1000, 1000, config.row_depth)]
    spmvs = format_tiles(fmt, rng, config)
    ptr, nz, meta = load_all(config, spmvs)
    found = run_lane(config, ptr, nz, bias, x, spmvs, meta=meta, seed=fmt.value)
    out = [0] * config.row_depth
    assert not any(spmv.apply(config, x, out, bias) for spmv in spmvs)
    assert [r[1:] for r in found["runs"]] == [(0, 0)] * len(spmvs)
    assert found["image"] == out
    check_counts(found, spmvs, x)


ROW_FORMATS = [f for f in Format if f is not Format.CSC]


@pytest.mark.parametrize("fmt", ROW_FORMATS, ids=lambda f: f.name.lower())
def test_format_busy_cycles(fmt):
    """Gather granting every cycle: busy = tokens + OVERHEAD + latency, every format."""
    config = CONFIG_ALL
    rng = np.random.default_rng(30 + fmt.value)
    x = random_x(rng, config)
    spmvs = format_tiles(fmt, rng, config)[:2]
    ptr, nz, meta = load_all(config, spmvs)
    for latency in (1, 3):
        found = run_lane(config, ptr, nz, [0] * config.row_depth, x, spmvs, meta=meta,
                         stall=0.0, latency=latency, read_rows=[])
        assert [busy - spmv.tokens for (busy, _, _), spmv in zip(found["runs"], spmvs)] == \
            [LANE_OVERHEAD + latency] * len(spmvs)


@pytest.mark.parametrize("fmt", list(Format), ids=lambda f: f.name.lower())
def test_format_n_zero_finishes(fmt):
    config = CONFIG_ALL
    spmv = FormatSpmv(np.zeros((0, 4), dtype=np.int64), fmt, ptr_base=5)
    ptr, nz, meta = load_all(config, [spmv])
    found = run_lane(config, ptr, nz, [0] * config.row_depth, [1] * config.x_depth, [spmv],
                     meta=meta, read_rows=[], stall=0.0)
    busy, error, overflow = found["runs"][0]
    assert (error, overflow) == (0, 0)
    if fmt is not Format.CSC:
        assert busy == N_ZERO_BUSY


def test_disabled_format_is_a_format_error():
    config = CONFIG.replace(formats=("csr", "dense"))
    rng = np.random.default_rng(3)
    a = random_matrix(rng, config, 6, 10, 0.5)
    good = FormatSpmv(a, Format.DENSE)
    bad = FormatSpmv(a, Format.COO, ptr_base=20, nz_base=100)
    ptr, nz, meta = load_all(config, [good])
    dut = Lane(config)
    seen = []

    async def bench(ctx):
        for desc in (bad.desc, good.desc, {**good.desc, "fmt": Format.CSC}):
            ctx.set(dut.desc, desc)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            cycles = 0
            while ctx.get(dut.busy):
                cycles += 1
                await ctx.tick()
            seen.append((ctx.get(dut.fmt_error), ctx.get(dut.desc_error), cycles))
        # An encoding that names no format at all.
        ctx.set(dut.desc.as_value(), Format.CSR.value << 3 | 7 << 3)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        await ctx.tick()
        seen.append((ctx.get(dut.fmt_error), ctx.get(dut.desc_error), ctx.get(dut.busy)))

    simulate(dut, bench, processes=[])
    assert [s[:2] for s in seen] == [(1, 0), (0, 0), (1, 0), (1, 0)]
    assert seen[0][2] == 1 and seen[2][2] == 1 and seen[3][2] == 0


# ---------------------------------------------------------------------------
# Column mode (CSC): products accumulated per row, then steps 2 to 4.
# ---------------------------------------------------------------------------

def csc_lane_busy(n, work, entries, moved, *, final_pass):
    """Busy cycles of a lane in column mode (the timing contract, lane part).

    ``work[t]`` is ``max(entries, 1)`` of the ``t``-th visited column,
    ``entries[t]`` its entries in this lane, ``moved[t]`` the cycle after
    ``start`` in which the ``t``-th column entry reached the lane (the last
    one is ``end``). The rows are zeroed in cycles 3 to ``2 + n``; the walker
    starts a column three cycles after it reached the lane (but not before
    cycle 5: the header is checked in cycle 2) and not before the previous
    column is done; an entry takes seven more cycles to reach its row; ``end``
    two.
    """
    ready = 3 + n
    last = last_entry = None
    for t, w in enumerate(work):
        first = max(ready, moved[t] + 3, 5)
        last = first + w - 1
        if entries[t]:
            last_entry = last
        ready = last + 1
    done = max(3 + n, ready, moved[-1] + 2)
    if last_entry is not None:
        done = max(done, last_entry + 7)
    if final_pass:
        done += n + 7 if n else 1
    return done


def csc_spmv(a, **kwargs):
    return FormatSpmv(a, Format.CSC, **kwargs)


SMALL8 = AcceleratorConfig(pes=1, value_width=8, acc_width=16, x_depth=16, nz_depth=16,
                           row_depth=8, formats=("csr", "csc"))


def sparse_x(rng, config, density, cols, x_base=0):
    """x with about ``density`` of its ``cols`` columns from ``x_base`` nonzero."""
    x = [0] * config.x_depth
    for j in range(x_base, x_base + cols):
        if rng.random() < density:
            x[j] = int(rng.integers(-200, 200)) or 1
    return x


def check_csc_busy(found, spmvs, x):
    for (busy, _, _), moved, spmv in zip(found["runs"], found["moved"], spmvs, strict=True):
        xb = spmv.desc["x_base"]
        visited = [j for j in range(spmv.a.shape[1]) if x[xb + j]]
        entries = [int(np.count_nonzero(spmv.a[:, j])) for j in visited]
        d = spmv.desc
        final = bool(d["accumulate"] or d["bias"] or d["epilogue"])
        assert busy == csc_lane_busy(spmv.a.shape[0], spmv.work(x), entries, moved,
                                     final_pass=final)


@pytest.mark.parametrize("density", [0.0, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("col_stall", [0.0, 0.5])
def test_csc_random_vs_numpy(density, col_stall):
    config = CONFIG_ALL
    rng = np.random.default_rng(int(density * 10) + int(col_stall * 100))
    cols = 24
    x = sparse_x(rng, config, density, 160)
    bias = [int(v) for v in rng.integers(-1000, 1000, config.row_depth)]
    a1 = random_matrix(rng, config, 16, cols, 0.3)
    a2 = random_matrix(rng, config, 16, 20, 0.6, empty_rows=0.0)
    a3 = random_matrix(rng, config, 7, 11, 0.2)
    a3[:, 4:7] = 0                                      # columns without entries
    images = [encode(Format.CSC, a, config) for a in (a1, a2, a3)]
    spmvs = [
        csc_spmv(a1, x_base=3),
        csc_spmv(a2, ptr_base=len(images[0][0]), nz_base=len(images[0][1]), x_base=90,
                 accumulate=1),
        csc_spmv(a3, ptr_base=len(images[0][0]) + len(images[1][0]) + 1,
                 nz_base=len(images[0][1]) + len(images[1][1]) + 2, x_base=140, out_base=40,
                 bias=1, epilogue=1,
                 epi={"shift": 4, "relu": 1, "clamp_lo": -50, "clamp_hi": 30000}),
    ]
    ptr, nz, meta = load_all(config, spmvs)
    found = run_lane(config, ptr, nz, bias, x, spmvs, meta=meta, stall=0.3,
                     col_stall=col_stall, seed=int(density * 7))
    out = [0] * config.row_depth
    assert not any(spmv.apply(config, x, out, bias) for spmv in spmvs)
    assert [r[1:] for r in found["runs"]] == [(0, 0)] * len(spmvs)
    assert found["image"] == out
    check_counts(found, spmvs, x)
    check_csc_busy(found, spmvs, x)


def test_csc_same_row_back_to_back():
    """Every product of a tile goes to one or two rows: read-modify-write forwarding."""
    config = CONFIG_ALL
    rng = np.random.default_rng(5)
    # One row, every column dense: one update of row 0 per cycle.
    a1 = rng.integers(-300, 300, (1, 24))
    a1[a1 == 0] = 1
    # Two rows, alternating and repeating across column boundaries.
    a2 = np.zeros((3, 20), dtype=np.int64)
    a2[1, :] = np.arange(1, 21)
    a2[2, ::3] = -7
    x = [int(v) or 1 for v in rng.integers(-100, 100, config.x_depth)]
    spmvs = [csc_spmv(a1), csc_spmv(a2, ptr_base=27, nz_base=30, out_base=5),
             csc_spmv(a1, x_base=7, out_base=1, accumulate=1)]
    ptr, nz, meta = load_all(config, spmvs)
    found = run_lane(config, ptr, nz, [0] * config.row_depth, x, spmvs, meta=meta, stall=0.0)
    out = [0] * config.row_depth
    assert not any(spmv.apply(config, x, out, [0] * config.row_depth) for spmv in spmvs)
    assert found["image"] == out
    check_csc_busy(found, spmvs, x)


def test_csc_duplicate_entries_in_a_column():
    """A column may hold one row twice: both products count, back to back."""
    config = CONFIG_ALL
    x = [3] * config.x_depth
    # ptr: n = 2, c = 2, column ends 3, 5; entries (row, value).
    ptr = [2, 2, 3, 5] + [0] * (config.row_depth - 4)
    rows_values = [(1, 4), (1, 5), (0, -2), (0, 1), (0, 1)]
    nz = [(0, v) for _, v in rows_values] + [None] * (config.nz_depth - 5)
    meta = [r for r, _ in rows_values] + [0] * (config.nz_depth - 5)

    class Raw(FormatSpmv):
        def load(self, *args):
            pass

    spmv = Raw(np.zeros((2, 2), dtype=np.int64), Format.CSC)
    found = run_lane(config, ptr, nz, [0] * config.row_depth, x, [spmv], meta=meta,
                     read_rows=[0, 1])
    assert found["image"] == [3 * (-2 + 1 + 1), 3 * (4 + 5)]


def test_csc_bias_epilogue_and_accumulate_pass():
    """Steps 2 to 4 after the column sums, each flag alone and all together."""
    config = CONFIG_ALL
    rng = np.random.default_rng(11)
    x = sparse_x(rng, config, 0.5, 64)
    bias = [int(v) for v in rng.integers(-5000, 5000, config.row_depth)]
    a = random_matrix(rng, config, 12, 16, 0.4)
    size = len(encode(Format.CSC, a, config)[0])
    epi = {"shift": 6, "relu": 1, "clamp_lo": -20, "clamp_hi": 3000}
    flags = [{}, {"accumulate": 1}, {"bias": 1}, {"epilogue": 1, "epi": epi},
             {"accumulate": 1, "bias": 1, "epilogue": 1, "epi": epi}]
    spmvs = [csc_spmv(a, x_base=5 * i, out_base=12 * (i % 4), **f)
             for i, f in enumerate(flags)]
    for spmv in spmvs:
        spmv.desc["ptr_base"] = 0
        assert size <= config.row_depth
    ptr, nz, meta = load_all(config, spmvs[:1])
    found = run_lane(config, ptr, nz, bias, x, spmvs, meta=meta, seed=3)
    out = [0] * config.row_depth
    assert not any(spmv.apply(config, x, out, bias) for spmv in spmvs)
    assert found["image"] == out
    check_csc_busy(found, spmvs, x)


def test_csc_overflow_is_that_of_the_column_sum():
    """Steps 1 to 3 in order: the column sum alone, then + out, then + bias."""
    config = SMALL8
    x = [127] * 16
    # Step 1: an intermediate column sum (3 * 16129) overflows although the
    # row ends at 16129.
    b = csc_spmv(np.array([[127, 127, 127, -127, -127]]), config=config)
    ptr, nz, meta = load_all(config, [b])
    found = run_lane(config, ptr, nz, [0] * 8, x, [b], meta=meta, read_rows=[0])
    assert found["runs"][0][1:] == (0, 1)
    assert found["image"] == [127 * 127]
    # Step 2: out (2 * 118 * 127 = 29972 from a CSR tile) + the column sum
    # 16129 overflows; the column sum itself does not.
    first = Spmv(np.array([[118, 118]]))
    second = csc_spmv(np.array([[127]]), ptr_base=4, nz_base=5, accumulate=1, config=config)
    ptr, nz, meta = [0] * 8, [None] * 16, [0] * 16
    first.load(ptr, nz)
    second.load(ptr, nz, meta)
    found = run_lane(config, ptr, nz, [0] * 8, x, [first, second], meta=meta, read_rows=[])
    assert [r[1:] for r in found["runs"]] == [(0, 0), (0, 1)]


def test_csc_accumulate_keeps_old_out_out_of_the_column_sum():
    """``out`` + partial column sums may leave the range; only the ISA's sums count."""
    config = SMALL8
    x = [127] * 16
    # First instruction writes 30000 into out[0] (CSR), the second adds the
    # column sum 16129 - 16129 = 0 to it: the ISA's partial sums are 16129
    # and 0 (fine) and 30000 + 0 (fine); 30000 + 16129 would not fit.
    first = Spmv(np.array([[100, 100, 36]]))
    x2 = list(x)
    second = csc_spmv(np.array([[127, -127]]), ptr_base=4, nz_base=5, accumulate=1,
                      config=config)
    ptr = [0] * 8
    nz = [None] * 16
    meta = [0] * 16
    first.load(ptr, nz)
    second.load(ptr, nz, meta)
    x2[0:3] = [100, 100, 100]
    found = run_lane(config, ptr, nz, [0] * 8, x2, [first, second], meta=meta, read_rows=[0])
    assert [r[1:] for r in found["runs"]] == [(0, 0), (0, 0)]
    assert found["image"] == [23600 + 100 * 127 - 100 * 127]


def test_csc_descriptor_errors():
    config = CONFIG_ALL
    rng = np.random.default_rng(12)
    a = random_matrix(rng, config, 6, 10, 0.5, empty_rows=0.0)
    x = [1] * config.x_depth
    good = csc_spmv(a)
    words = len(encode(Format.CSC, a, config)[0])
    cases = {
        # Found before anything is written: the header.
        "ptr": csc_spmv(a, ptr_base=config.row_depth - words + 1),
        "out": csc_spmv(a, out_base=config.row_depth - 5),
        "x": csc_spmv(a, x_base=config.x_depth - 9),
    }
    ptr, nz, meta = load_all(config, [good])
    for spmv in cases.values():
        base = spmv.desc["ptr_base"]
        if base:
            ptr[base:base + 2] = ptr[0:2]
    spmvs = list(cases.values()) + [good]
    found = run_lane(config, ptr, nz, [0] * config.row_depth, x, spmvs, meta=meta,
                     read_rows=range(6))
    assert [r[1] for r in found["runs"]] == [1, 1, 1, 0]
    out = [0] * config.row_depth
    good.apply(config, x, out, [0] * config.row_depth)
    assert found["image"] == out[:6]


def test_csc_streaming_errors_only_for_visited_columns():
    config = CONFIG_ALL
    a = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    spmv = csc_spmv(a)
    ptr, nz, meta = load_all(config, [spmv])      # ends 2, 4, 6, 8 at ptr[2..5]
    x = [1, 0, 1, 1] + [0] * (config.x_depth - 4)

    def run(ptr, meta, x):
        found = run_lane(config, ptr, nz, [0] * config.row_depth, x, [spmv], meta=meta,
                         read_rows=[], stall=0.2)
        return found["runs"][0][1]

    assert run(ptr, meta, x) == 0
    # Column 1 is not visited: its end below its start goes unnoticed...
    bad = list(ptr)
    bad[3] = 1
    assert run(bad, meta, x) == 0
    # ... but column 2 starts where column 1 ended: 1 <= 6 is fine, so
    # make column 2 end before that.
    bad[4] = 0
    assert run(bad, meta, x) == 1
    # A column end past the nz memory.
    bad = list(ptr)
    bad[5] = config.nz_depth + 1
    assert run(bad, meta, x) == 1
    # A row at n or beyond in a visited column, and in an unvisited one.
    bad_meta = list(meta)
    bad_meta[5] = 2                               # column 2, second entry
    assert run(ptr, bad_meta, x) == 1
    bad_meta = list(meta)
    bad_meta[3] = 2                               # column 1 (not visited)
    assert run(ptr, bad_meta, x) == 0
