# amaranth: UnusedElaboratable=no

"""The whole accelerator (pysim, over AXI4-Lite) in every storage format.

Programs of hand-encoded instructions run on several lanes; the results must
equal numpy's, and ``CYCLES`` (and the other counters) must equal the timing
contract of ``docs/internals.md``: the round-robin gather schedule for the
row formats is replayed here from first principles; column mode (the
nonzero detector, the column credits and the lanes' walkers) is the ISA
model's :func:`~zeroskip.core.timing.column_mode_cycles`.
"""

import random
from types import SimpleNamespace

import numpy as np
import pytest
from amaranth.sim import Simulator

from zeroskip.core import timing
from zeroskip.core.config import AcceleratorConfig
from zeroskip.core.isa import (
    BITMAP_CHUNK,
    CTRL_CLEAR,
    CTRL_START,
    STATUS_DONE,
    STATUS_ERROR,
    ErrorCode,
    Format,
    Insn,
    MemoryMap,
    Opcode,
    Reg,
    Region,
)
from zeroskip.hdl.top import ZeroskipTop
from zeroskip.sim.buses import PysimBus

ALL = ("csr", "coo", "bitmap", "nm", "dense", "csc")
CONFIG = AcceleratorConfig(pes=3, value_width=16, acc_width=32, x_depth=128, nz_depth=256,
                           row_depth=64, imem_depth=16, formats=ALL, cluster_lanes=3)

#: Cycles of an instruction other than SPMV, and of a row-mode SPMV beyond
#: its schedule (the values the CSR path was measured with).
INSN_OVERHEAD = 2
SPMV_OVERHEAD = 21
#: Cycles of a column-mode SPMV beyond the slowest lane's busy cycles.
CSC_OVERHEAD = timing.CSC_OVERHEAD


# ---------------------------------------------------------------------------
# Images.
# ---------------------------------------------------------------------------

def encode(fmt, a, config, rng, *, nm=(2, 4)):
    """``(ptr words, nz (col, value), meta words)`` of tile ``a``; also the
    stream of the row formats as ``(column or None, value, row)`` per token."""
    n, width = a.shape
    tokens = []

    def junk():
        return rng.randrange(1 << config.col_width)

    if fmt in (Format.CSR, Format.COO):
        ends, nz, meta = [], [], []
        for i in range(n):
            cols = [int(j) for j in np.flatnonzero(a[i])]
            nz += [(j, int(a[i, j])) for j in cols]
            meta += [i] * len(cols)
            ends.append(len(nz))
            tokens += [(j, int(a[i, j]), i) for j in cols] or [(None, 0, i)]
        ptr = [n] + ends if fmt is Format.CSR else [n, len(nz)]
        return ptr, nz, meta if fmt is Format.COO else [], tokens
    if fmt is Format.BITMAP:
        chunks = -(-width // BITMAP_CHUNK)
        nz, meta = [], []
        for i in range(n):
            for c in range(chunks):
                word = 0
                held = []
                for t in range(BITMAP_CHUNK):
                    j = BITMAP_CHUNK * c + t
                    if j < width and a[i, j]:
                        word |= 1 << t
                        nz.append((junk(), int(a[i, j])))
                        held.append((j, int(a[i, j]), i))
                meta.append(word)
                tokens += held or [(None, 0, i)]
            if not chunks:
                tokens.append((None, 0, i))
        return [n, chunks], nz, meta, tokens
    if fmt is Format.NM:
        big_n, m = nm
        groups = -(-width // m)
        nz = []
        for i in range(n):
            for g in range(groups):
                held = [(j - g * m, int(a[i, j])) for j in range(g * m, min(width, g * m + m))
                        if a[i, j]]
                slots = held + [(rng.randrange(m), 0) for _ in range(big_n - len(held))]
                nz += slots
                tokens += [(g * m + col, value, i) for col, value in slots]
            if not groups:
                tokens.append((None, 0, i))
        return [n, groups, big_n | (m.bit_length() - 1) << 8], nz, [], tokens
    if fmt is Format.DENSE:
        tokens = [(j, int(a[i, j]), i) for i in range(n) for j in range(width)]
        return [n, width], [(junk(), int(v)) for v in a.reshape(-1)], [], tokens
    ends, nz, meta = [], [], []
    for j in range(width):
        rows = [int(i) for i in np.flatnonzero(a[:, j])]
        rng.shuffle(rows)
        nz += [(junk(), int(a[i, j])) for i in rows]
        meta += rows
        ends.append(len(nz))
    return [n, width] + ends, nz, meta, None


def nm_matrix(rng, rows, cols, big_n=2, m=4):
    a = np.zeros((rows, cols), dtype=np.int64)
    for i in range(rows):
        for g in range(0, cols, m):
            keep = rng.sample(range(min(m, cols - g)), min(big_n, cols - g))
            for j in keep:
                if rng.random() < 0.7:
                    a[i, g + j] = rng.randint(-3000, 3000) or 1
    return a


def random_matrix(rng, rows, cols, density):
    a = np.zeros((rows, cols), dtype=np.int64)
    for i in range(rows):
        if rng.random() < 0.15:
            continue
        for j in range(cols):
            if rng.random() < density:
                a[i, j] = rng.randint(-3000, 3000) or 1
    return a


class Spmv:
    """One SPMV: per lane a tile ``a[p]`` in ``fmt``, placed at the given bases."""

    def __init__(self, fmt, tiles, *, ptr_base=0, nz_base=0, x_base=0, out_base=0,
                 accumulate=0, bias=0, epilogue=0, seed=0):
        self.fmt = fmt
        self.tiles = tiles
        self.desc = {"fmt": fmt, "ptr_base": ptr_base, "nz_base": nz_base, "x_base": x_base,
                     "out_base": out_base, "accumulate": accumulate, "bias": bias,
                     "epilogue": epilogue}
        rng = random.Random(seed)
        self.images = [encode(fmt, a, CONFIG, rng) for a in tiles]

    def word(self):
        return int(Insn.const({"opcode": Opcode.SPMV, "args": {"spmv": self.desc}}).as_bits())

    def load(self, lanes):
        """Write the images into ``lanes`` (per lane: dict of ptr/nz/meta lists)."""
        d = self.desc
        for p, (ptr, nz, meta, _) in enumerate(self.images):
            for i, word in enumerate(ptr):
                lanes[p]["ptr"][d["ptr_base"] + i] = word
            for k, entry in enumerate(nz):
                lanes[p]["nz"][d["nz_base"] + k] = entry
            for k, word in enumerate(meta):
                lanes[p]["meta"][d["nz_base"] + k] = word


def epi_word(shift, relu, lo, hi):
    return int(Insn.const({"opcode": Opcode.SET_EPI, "args": {"epi": {
        "shift": shift, "relu": relu, "clamp_lo": lo, "clamp_hi": hi}}}).as_bits())


HALT = int(Insn.const({"opcode": Opcode.HALT}).as_bits())


# ---------------------------------------------------------------------------
# The reference: results and cycles.
# ---------------------------------------------------------------------------

def wrap(value):
    c = CONFIG
    return (value - c.acc_min) % (1 << c.acc_width) + c.acc_min


def apply(spmv, x, out, bias, epi):
    d = spmv.desc
    for p, a in enumerate(spmv.tiles):
        n, width = a.shape
        y = a.astype(np.int64) @ np.array(x[d["x_base"]:d["x_base"] + width], dtype=np.int64)
        for i, s in enumerate(y.tolist()):
            addr = d["out_base"] + i
            s = wrap(s)
            if d["accumulate"]:
                s = wrap(s + out[p][addr])
            if d["bias"]:
                s = wrap(s + bias[p][addr])
            if d["epilogue"]:
                shift, relu, lo, hi = epi
                s = (s + ((1 << (shift - 1)) if shift else 0)) >> shift
                s = max(s, 0) if relu else s
                s = min(max(s, lo), hi)
                s = min(max(s, CONFIG.value_min), CONFIG.value_max)
            out[p][addr] = s


def schedule(lane_tokens, banks, rr):
    """Round-robin bank arbitration from pointers ``rr`` (updated); returns (cycles, stalls)."""
    lanes = len(lane_tokens)
    pos = [0] * lanes
    cycles = stalls = 0
    while any(pos[p] < len(lane_tokens[p]) for p in range(lanes)):
        cycles += 1
        claims = {}
        for p in range(lanes):
            if pos[p] < len(lane_tokens[p]):
                bank = lane_tokens[p][pos[p]]
                if bank < 0:
                    pos[p] += 1
                else:
                    claims.setdefault(bank, []).append(p)
        for bank, claimants in claims.items():
            winner = min(claimants, key=lambda p: (p - rr[bank]) % lanes)
            pos[winner] += 1
            stalls += len(claimants) - 1
            rr[bank] = (winner + 1) % lanes
    return cycles, stalls


def row_cycles(spmv, x, rr):
    d = spmv.desc
    banks = [[-1 if col is None else (d["x_base"] + col) % CONFIG.x_banks
              for col, _, _ in image[3]] for image in spmv.images]
    cycles, stalls = schedule(banks, CONFIG.x_banks, rr)
    products = [(value, x[d["x_base"] + col]) for image in spmv.images
                for col, value, _ in image[3] if col is not None]
    busy = [sum(1 for col, _, _ in image[3] if col is not None) for image in spmv.images]
    return SPMV_OVERHEAD + cycles, stalls, products, busy


def column_cycles(spmv, x, *, credits=timing.COLUMN_CREDITS):
    """Cycles of a column-mode SPMV: the ISA model's rule (the timing contract)."""
    streams = [SimpleNamespace(n=a.shape[0], col_ends=image[0][2:])
               for a, image in zip(spmv.tiles, spmv.images)]
    return CSC_OVERHEAD + timing.column_mode_cycles(
        streams, spmv.desc, np.asarray(x), CONFIG, credits=credits)


def column_counts(spmv, x):
    """Products of the visited columns (PE_BUSY), and every entry of the
    unvisited ones as a skipped product (``a, 0``) that keeps no PE busy."""
    d = spmv.desc
    products, busy = [], []
    for a in spmv.tiles:
        lane = [(int(a[i, j]), x[d["x_base"] + j]) for j in range(a.shape[1])
                if x[d["x_base"] + j] for i in range(a.shape[0]) if a[i, j]]
        products += lane + [(int(a[i, j]), 0) for j in range(a.shape[1])
                            if not x[d["x_base"] + j] for i in range(a.shape[0]) if a[i, j]]
        busy.append(len(lane))
    return products, busy


# ---------------------------------------------------------------------------
# Running programs on the top level.
# ---------------------------------------------------------------------------

def run_program(config, x, spmvs, *, epi=(0, 0, -32768, 32767), bias=None, extra=()):
    """Load everything, run [SET_EPI, the SPMVs, HALT], return the machine's view."""
    mmap = MemoryMap(config)
    lanes = [{"ptr": [0] * config.row_depth, "nz": [None] * config.nz_depth,
              "meta": [0] * config.nz_depth} for _ in range(config.pes)]
    for spmv in spmvs:
        spmv.load(lanes)
    bias = bias or [[0] * config.row_depth for _ in range(config.pes)]
    code = [epi_word(*epi)] + [spmv.word() for spmv in spmvs] + list(extra) + [HALT]
    top = ZeroskipTop(config)
    result = {}

    async def bench(ctx):
        bus = PysimBus(ctx, top.axil)
        for i, word in enumerate(code):
            await bus.write(mmap.imem(i), [word & 0xFFFF_FFFF, word >> 32])
        await bus.write(mmap.x(0), [v & 0xFFFF_FFFF for v in x])
        vmask = (1 << config.value_width) - 1
        for p, lane in enumerate(lanes):
            await bus.write(mmap.lane(Region.PTR, p, 0), lane["ptr"])
            await bus.write(mmap.lane(Region.NZ, p, 0), [
                0 if e is None else e[0] | (e[1] & vmask) << config.col_width
                for e in lane["nz"]])
            await bus.write(mmap.lane(Region.META, p, 0), lane["meta"])
            await bus.write(mmap.lane(Region.BIAS, p, 0), [b & 0xFFFF_FFFF for b in bias[p]])
        await bus.write(Reg.CTRL, [CTRL_CLEAR])
        await bus.write(Reg.CTRL, [CTRL_START])
        for _ in range(5000):
            (status,) = await bus.read(Reg.STATUS, 1)
            if status & (STATUS_DONE | STATUS_ERROR):
                break
        result["status"] = status
        result["code"] = ErrorCode(status >> 8 & 0xFF)
        (result["pc"],) = await bus.read(Reg.PC, 1)
        for name in ("CYCLES", "INSNS", "MACS", "SKIPPED", "GATHER_STALLS"):
            (result[name],) = await bus.read(Reg[name], 1)
        result["pe_busy"] = [(await bus.read(mmap.pe_busy(p), 1))[0]
                             for p in range(config.pes)]
        out = []
        for p in range(config.pes):
            words = await bus.read(mmap.lane(Region.OUT, p, 0), config.row_depth)
            out.append([w - (1 << 32) if w >> 31 else w for w in words])
        result["out"] = out

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return result, bias


def expected_run(config, x, spmvs, bias, epi):
    out = [[0] * config.row_depth for _ in range(config.pes)]
    cycles = 2 * INSN_OVERHEAD          # SET_EPI and HALT
    stalls = 0
    products = []
    pe_busy = [0] * config.pes
    rr = [0] * config.x_banks          # reset by CTRL.start only
    for spmv in spmvs:
        apply(spmv, x, out, bias, epi)
        if spmv.fmt is Format.CSC:
            cycles += column_cycles(spmv, x)
            prods, busy = column_counts(spmv, x)
        else:
            spmv_cycles, spmv_stalls, prods, busy = row_cycles(spmv, x, rr)
            cycles += spmv_cycles
            stalls += spmv_stalls
        products += prods
        pe_busy = [a + b for a, b in zip(pe_busy, busy)]
    macs = sum(1 for a, v in products if a and v)
    return {"out": out, "CYCLES": cycles, "GATHER_STALLS": stalls, "MACS": macs,
            "SKIPPED": len(products) - macs, "pe_busy": pe_busy,
            "INSNS": len(spmvs) + 2}


def check(config, x, spmvs, *, epi=(0, 0, -32768, 32767), bias=None):
    found, bias = run_program(config, x, spmvs, epi=epi, bias=bias)
    want = expected_run(config, x, spmvs, bias, epi)
    assert found["code"] == ErrorCode.NONE and found["status"] & STATUS_DONE
    assert found["out"] == want["out"]
    for key in ("MACS", "SKIPPED", "pe_busy", "GATHER_STALLS", "INSNS", "CYCLES"):
        assert found[key] == want[key], key
    return found


def sparse_x(rng, density, length=CONFIG.x_depth):
    return [(rng.randint(-40, 40) or 1) if rng.random() < density else 0 for _ in range(length)]


def tiles_for(fmt, rng, shapes, density):
    if fmt is Format.NM:
        return [nm_matrix(rng, r, c) for r, c in shapes]
    return [random_matrix(rng, r, c, density) for r, c in shapes]


@pytest.mark.parametrize("fmt", list(Format), ids=lambda f: f.name.lower())
def test_every_format_on_the_top(fmt):
    rng = random.Random(50 + fmt.value)
    x = sparse_x(rng, 0.6)
    small = fmt in (Format.DENSE, Format.NM, Format.CSC)
    shapes1 = [(9, 12), (4, 10), (11, 7)] if small else [(9, 30), (4, 40), (11, 25)]
    shapes2 = [(6, 8), (6, 9), (0, 5)]
    first = Spmv(fmt, tiles_for(fmt, rng, shapes1, 0.3), x_base=5, seed=1)
    size = max(len(image[0]) for image in first.images)
    nz_size = max(len(image[1]) for image in first.images)
    second = Spmv(fmt, tiles_for(fmt, rng, shapes2, 0.5), ptr_base=size + 1,
                  nz_base=nz_size + 2, x_base=61, out_base=20, accumulate=1, bias=1,
                  epilogue=1, seed=2)
    third = Spmv(fmt, first.tiles, x_base=17, accumulate=1, seed=1)
    bias = [[rng.randint(-500, 500) for _ in range(CONFIG.row_depth)]
            for _ in range(CONFIG.pes)]
    check(CONFIG, x, [first, second, third], epi=(3, 1, -20, 2000), bias=bias)


@pytest.mark.parametrize("density", [0.0, 0.1, 1.0])
def test_column_mode_activation_skipping(density):
    rng = random.Random(int(density * 10) + 3)
    x = sparse_x(rng, density)
    tiles = [random_matrix(rng, 20, 40, 0.2), random_matrix(rng, 8, 40, 0.05),
             random_matrix(rng, 14, 33, 0.4)]
    spmvs = [Spmv(Format.CSC, tiles, x_base=11, seed=4),
             Spmv(Format.CSC, tiles, x_base=70, bias=1, seed=4)]
    found = check(CONFIG, x, spmvs)
    if density == 0.0:
        entries = sum(int(np.count_nonzero(a)) for a in tiles)
        assert found["MACS"] == 0 and found["SKIPPED"] == 2 * entries


def test_column_mode_credits_couple_the_lanes():
    """Lane 0 is slow on the first columns, lane 1 on the last: the queues fill."""
    rng = random.Random(9)
    x = [rng.randint(1, 9) for _ in range(CONFIG.x_depth)]
    slow_first = np.zeros((30, 50), dtype=np.int64)
    slow_first[:, :6] = 1
    slow_last = np.zeros((30, 50), dtype=np.int64)
    slow_last[:, 44:] = 2
    light = np.eye(6, 50, dtype=np.int64) * 3
    spmv = Spmv(Format.CSC, [slow_first, slow_last, light], seed=5)
    check(CONFIG, x, [spmv])
    # The contract with unlimited queues would be shorter: the credits matter.
    assert column_cycles(spmv, x) > column_cycles(spmv, x, credits=10 ** 6)


def test_disabled_format_stops_the_program():
    config = CONFIG.replace(formats=("csr", "csc"))
    rng = random.Random(2)
    x = sparse_x(rng, 0.5)
    bad = Spmv(Format.DENSE, [random_matrix(rng, 3, 4, 0.5)] * 3)
    found, _ = run_program(config, x, [bad])
    assert found["status"] & STATUS_ERROR
    # The sequencer refuses a disabled format before dispatch.
    assert found["code"] == ErrorCode.ILLEGAL_INSN and found["pc"] == 1


def test_column_descriptor_error_does_not_hang():
    """One lane's header fails: it discards the columns, the program stops."""
    rng = random.Random(6)
    x = sparse_x(rng, 0.7)
    tiles = [random_matrix(rng, 5, 20, 0.3) for _ in range(3)]
    spmv = Spmv(Format.CSC, tiles, seed=1)
    spmv.images[1][0][0] = 70                      # lane 1: n past the output memory
    found, _ = run_program(CONFIG, x, [spmv])
    assert found["code"] == ErrorCode.DESCRIPTOR and found["pc"] == 1
