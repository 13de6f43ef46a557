"""Format decoders: tokens against a Python expansion of the tile, throughput, errors.

CSR tests drive :class:`CsrDecoder`; the other row formats (COO, BITMAP, N:M,
dense) drive :class:`FormatDecoder` with every format enabled and compare
with :func:`expand`, a plain reading of the descriptors of
:mod:`zeroskip.core.isa`.
"""

import random

import pytest
from amaranth.hdl import Elaboratable, Module, unsigned
from amaranth.lib.memory import Memory

from zeroskip.core.config import AcceleratorConfig
from zeroskip.core.isa import BITMAP_CHUNK, META_WIDTH, Format, nz_entry_layout
from zeroskip.hdl.decoder import CsrDecoder, FormatDecoder
from zeroskip.sim.streams import simulate

CONFIG = AcceleratorConfig(pes=1, value_width=16, acc_width=32, x_depth=256,
                           nz_depth=256, row_depth=64)
ALL = ("csr", "coo", "bitmap", "nm", "dense")
CONFIG_ALL = CONFIG.replace(formats=ALL)


class Harness(Elaboratable):
    """The decoder with its memories (ptr, nz, meta), initialized from Python lists."""

    def __init__(self, config, ptr, nz, meta=(), *, dut=None):
        self.config = config
        self.dut = dut or CsrDecoder(config)
        self.ptr = Memory(shape=unsigned(config.ptr_width), depth=config.row_depth,
                          init=ptr)
        self.nz = Memory(shape=nz_entry_layout(config), depth=config.nz_depth,
                         init=[{"col": col, "value": value} for col, value in nz])
        self.meta = Memory(shape=unsigned(META_WIDTH), depth=config.nz_depth, init=list(meta))

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        m.submodules.ptr = self.ptr
        m.submodules.nz = self.nz
        m.submodules.meta = self.meta
        ptr_rd = self.ptr.read_port()
        nz_rd = self.nz.read_port()
        meta_rd = self.meta.read_port()
        m.d.comb += [
            ptr_rd.addr.eq(dut.ptr_addr),
            dut.ptr_data.eq(ptr_rd.data),
            nz_rd.addr.eq(dut.nz_addr),
            nz_rd.en.eq(dut.nz_en),
            dut.nz_data.eq(nz_rd.data),
            meta_rd.addr.eq(dut.meta_addr),
            dut.meta_data.eq(meta_rd.data),
        ]
        return m


class Tile:
    """A lane image: rows of (col, value) placed at the given bases."""

    def __init__(self, config, rows, *, ptr_base=0, nz_base=0, x_base=0, out_base=0,
                 n=None, ends=None):
        self.config = config
        self.rows = rows
        self.desc = {"ptr_base": ptr_base, "nz_base": nz_base, "x_base": x_base,
                     "out_base": out_base}
        self.ptr = [0] * config.row_depth
        self.nz = [(0, 0)] * config.nz_depth
        if ends is None:
            ends, k = [], 0
            for entries in rows:
                for col, value in entries:
                    self.nz[nz_base + k] = (col, value)
                    k += 1
                ends.append(k)
        self.ptr[ptr_base] = len(rows) if n is None else n
        for i, end in enumerate(ends):
            if ptr_base + 1 + i < config.row_depth:
                self.ptr[ptr_base + 1 + i] = end

    def tokens(self):
        """The token sequence of the tile (as tuples addr, value, row, last, empty)."""
        out = []
        x_base = self.desc["x_base"]
        for i, entries in enumerate(self.rows):
            if not entries:
                out.append((0, 0, i, 1, 1))
            for j, (col, value) in enumerate(entries):
                out.append((x_base + col, value, i, int(j == len(entries) - 1), 0))
        return out


def random_rows(rng, config, count, *, x_base=0, p_empty=0.3, max_len=6):
    cols = config.x_depth - x_base
    rows = []
    for _ in range(count):
        if rng.random() < p_empty:
            rows.append([])
        else:
            rows.append([(rng.randrange(cols), rng.randint(config.value_min, config.value_max))
                         for _ in range(rng.randint(1, max_len))])
    return rows


def run(tile, *, stall=0.0, seed=0, timeout=None):
    """Run one instruction; returns (tokens, handshake cycles, error)."""
    harness = Harness(tile.config, tile.ptr, tile.nz, getattr(tile, "meta", ()),
                      dut=getattr(tile, "dut", None))
    dut = harness.dut
    result = {}
    timeout = timeout or 50 + 4 * (len(tile.tokens()) + 10) * (1 + int(stall > 0) * 3)

    async def bench(ctx):
        rng = random.Random(seed)
        ctx.set(dut.desc, {**tile.desc, "accumulate": 0, "epilogue": 0, "bias": 0,
                           "fmt": getattr(tile, "fmt", Format.CSR)})
        await ctx.tick()
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        tokens, cycles = [], []
        cycle = 1
        idle_seen = 0
        held = None
        bubbles = 0     # cycles without a token offered between the first and the last
        while idle_seen < 3:
            ready = not (stall and rng.random() < stall)
            ctx.set(dut.tokens.ready, ready)
            _, _, valid, payload, busy = await ctx.tick().sample(
                dut.tokens.valid, dut.tokens.payload, dut.busy)
            # Stream rule: an offered token stays offered, unchanged, until taken.
            if held is not None:
                assert valid and payload.as_value().value == held
            held = payload.as_value().value if valid and not ready else None
            if ready and valid:
                tokens.append((payload.addr, payload.value, payload.row, payload.last,
                               payload.empty))
                cycles.append(cycle)
            if tokens and not valid and busy:
                bubbles += 1
            if not busy:
                assert not valid
                idle_seen += 1
            cycle += 1
            assert cycle < timeout, "decoder did not finish"
        error = ctx.get(dut.error)
        # Back-pressure never costs more than the stalled cycles themselves.
        assert error or bubbles == 0
        result.update(tokens=tokens, cycles=cycles, error=error)

    simulate(harness, bench)
    return result["tokens"], result["cycles"], result["error"]


@pytest.mark.parametrize("seed", range(4))
def test_random_tiles(seed):
    rng = random.Random(seed)
    c = CONFIG
    x_base = rng.choice([0, 17, 100])
    rows = random_rows(rng, c, rng.randint(1, 20), x_base=x_base, p_empty=0.35)
    # A run of empty rows somewhere.
    at = rng.randrange(len(rows) + 1)
    rows[at:at] = [[] for _ in range(rng.randint(2, 5))]
    tile = Tile(c, rows, ptr_base=rng.choice([0, 3, 20]), nz_base=rng.choice([0, 9, 60]),
                x_base=x_base)
    tokens, _, error = run(tile, stall=0.4, seed=seed)
    assert not error
    assert tokens == tile.tokens()


def test_single_long_row_and_n_zero():
    rng = random.Random(7)
    c = CONFIG
    rows = [[(rng.randrange(c.x_depth), rng.randint(-50, 50)) for _ in range(100)]]
    tile = Tile(c, rows, ptr_base=5, nz_base=150)
    tokens, _, error = run(tile, stall=0.3)
    assert not error and tokens == tile.tokens()

    tile = Tile(c, [], ptr_base=63)
    tokens, _, error = run(tile, stall=0.3)
    assert not error and tokens == []


def test_all_empty_rows():
    c = CONFIG
    tile = Tile(c, [[] for _ in range(40)], ptr_base=2, nz_base=255)
    tokens, _, error = run(tile, stall=0.5)
    assert not error and tokens == tile.tokens()


def test_extreme_bases():
    c = CONFIG
    rows = [[(0, 1)], [], [(c.x_depth - 1 - 40, -1), (0, c.value_min)], [(3, c.value_max)]]
    # The tile ends exactly at the top of every memory.
    tile = Tile(c, rows, ptr_base=c.row_depth - 1 - len(rows), nz_base=c.nz_depth - 4,
                x_base=40, out_base=c.row_depth - len(rows))
    tokens, _, error = run(tile, stall=0.2)
    assert not error and tokens == tile.tokens()


@pytest.mark.parametrize("shape", ["mixed", "empty_runs", "long_row", "singletons"])
def test_throughput_one_token_per_cycle(shape):
    rng = random.Random(3)
    c = CONFIG
    if shape == "mixed":
        rows = random_rows(rng, c, 30, p_empty=0.3, max_len=4)
    elif shape == "empty_runs":
        rows = [[] for _ in range(12)] + [[(1, 2)]] + [[] for _ in range(9)] + [[(3, 4)] * 3]
    elif shape == "long_row":
        rows = [[(i, i + 1) for i in range(200)]]
    else:
        rows = [[(i, 1)] if i % 3 else [] for i in range(50)]
    tile = Tile(c, rows, ptr_base=1, nz_base=7, x_base=3)
    tokens, cycles, error = run(tile)
    assert not error and tokens == tile.tokens()
    assert cycles[-1] - cycles[0] == len(tokens) - 1
    # Start latency: the first token is transferred START_LATENCY cycles after start.
    assert cycles[0] == START_LATENCY == CsrDecoder.START_LATENCY


#: Cycles from the ``start`` cycle to the first token's transfer.
START_LATENCY = 7


def test_error_row_count():
    c = CONFIG
    # ptr_base + n >= row_depth
    tile = Tile(c, [[(1, 1)]] * 10, ptr_base=c.row_depth - 10)
    tokens, _, error = run(tile)
    assert error and tokens == []
    tile = Tile(c, [[(1, 1)]] * 10, ptr_base=c.row_depth - 11)
    tokens, _, error = run(tile)
    assert not error and tokens == tile.tokens()
    # out_base + n > row_depth
    tile = Tile(c, [[(1, 1)]] * 10, out_base=c.row_depth - 9)
    tokens, _, error = run(tile)
    assert error and tokens == []
    tile = Tile(c, [[(1, 1)]] * 10, out_base=c.row_depth - 10)
    tokens, _, error = run(tile)
    assert not error and tokens == tile.tokens()


def _is_prefix(tokens, expected):
    return tokens == expected[:len(tokens)]


def test_error_decreasing_row_end():
    c = CONFIG
    rows = [[(1, 1), (2, 2)], [(3, 3)], [], [(4, 4)], [(5, 5)]]
    good = Tile(c, rows, nz_base=4)
    ends = [2, 3, 3, 2, 5]
    tile = Tile(c, rows, nz_base=4, ends=ends)
    tile.nz = good.nz
    for stall in (0.0, 0.5):
        tokens, _, error = run(tile, stall=stall)
        assert error
        # Nothing of the row with the bad end (row 3) or later.
        assert _is_prefix(tokens, good.tokens()) and len(tokens) <= 5


def test_error_nz_range():
    c = CONFIG
    rows = [[(1, 1)] * 3, [(2, 2)] * 3, [(3, 3)] * 3]
    # The tile ends exactly at the top of the nonzero memory: fine.
    tile = Tile(c, rows, nz_base=c.nz_depth - 9)
    tokens, _, error = run(tile)
    assert not error and tokens == tile.tokens()
    # One entry higher, the last row's end leaves the memory.
    nz_base = c.nz_depth - 8
    good = Tile(c, rows[:2], nz_base=nz_base)
    tile = Tile(c, rows[:2], nz_base=nz_base, n=3, ends=[3, 6, 9])
    tile.nz = good.nz
    tokens, _, error = run(tile)
    assert error and _is_prefix(tokens, good.tokens())
    # nz_base alone beyond the memory.
    tile = Tile(c, [[]], nz_base=c.nz_depth + 1)
    tokens, _, error = run(tile)
    assert error and tokens == []


def test_error_x_range():
    c = CONFIG
    x_base = 200
    rows = [[(1, 1), (2, 2)], [], [(c.x_depth - x_base - 1, 3), (c.x_depth - x_base, 4), (0, 5)],
            [(6, 6)]]
    tile = Tile(c, rows, x_base=x_base)
    expected = tile.tokens()[:4]   # everything before the out-of-range column
    for stall in (0.0, 0.5):
        tokens, _, error = run(tile, stall=stall)
        assert error and tokens == expected
    # x_base beyond the buffer: the first nonzero fails, an empty row does not.
    tile = Tile(c, [[], [(0, 1)]], x_base=c.x_depth)
    tokens, _, error = run(tile)
    assert error and tokens == [(0, 0, 0, 1, 1)]


def test_error_cleared_by_next_start():
    c = CONFIG
    bad = Tile(c, [[(1, 1)]] * 10, ptr_base=c.row_depth - 5)
    good_rows = [[(1, 1)], [], [(2, 2)]]
    harness_tile = Tile(c, good_rows)
    # Both descriptors in one memory image: the good one at ptr_base 0.
    ptr = list(harness_tile.ptr)
    ptr[bad.desc["ptr_base"]] = 10
    harness = Harness(c, ptr, harness_tile.nz)
    dut = harness.dut
    seen = {}

    async def bench(ctx):
        ctx.set(dut.tokens.ready, 1)
        for name, desc in (("bad", bad.desc), ("good", harness_tile.desc)):
            ctx.set(dut.desc, desc)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            tokens = []
            for _ in range(30):
                _, _, valid, payload = await ctx.tick().sample(dut.tokens.valid,
                                                               dut.tokens.payload)
                if valid:
                    tokens.append((payload.addr, payload.value, payload.row, payload.last,
                                   payload.empty))
            seen[name] = (tokens, ctx.get(dut.error), ctx.get(dut.busy))

    simulate(harness, bench)
    assert seen["bad"] == ([], 1, 0)
    assert seen["good"] == (harness_tile.tokens(), 0, 0)


@pytest.mark.parametrize("config", [
    AcceleratorConfig(pes=1, value_width=8, acc_width=16, x_depth=16, nz_depth=16, row_depth=4),
    AcceleratorConfig(pes=1, value_width=16, acc_width=32, x_depth=16384, nz_depth=65536,
                      row_depth=4096),
])
def test_other_configs(config):
    rng = random.Random(11)
    count = min(3, config.row_depth - 1)
    rows = random_rows(rng, config, count, max_len=4)
    tile = Tile(config, rows, x_base=min(5, config.x_depth - 1) if config.x_depth > 16 else 0)
    tokens, cycles, error = run(tile)
    assert not error and tokens == tile.tokens()
    assert cycles[-1] - cycles[0] == len(tokens) - 1


# ---------------------------------------------------------------------------
# The other row formats: COO, BITMAP, N:M, dense.
# ---------------------------------------------------------------------------

class _Padded:
    def __init__(self, items, fill):
        self.items, self.fill = items, fill

    def __getitem__(self, index):
        return self.items[index] if index < len(self.items) else self.fill


def expand(config, fmt, ptr, nz, meta, desc):
    """The token sequence of a tile, read plainly off the isa.py descriptors.

    Tokens are ``(addr, value, row, last, empty)``. BITMAP has one ``empty``
    token for each all-zero chunk (``last`` on the row's final chunk).
    """
    pb, nb, xb = desc["ptr_base"], desc["nz_base"], desc["x_base"]
    # Words past a memory read as 0 (the tests that reach there expect an error).
    ptr = _Padded(ptr, 0)
    nz = _Padded(nz, (0, 0))
    meta = _Padded(meta, 0)
    n = ptr[pb]
    out = []
    if fmt is Format.COO:
        count = ptr[pb + 1]
        rows = [meta[nb + k] for k in range(count)]
        for r in range(n):
            ks = [k for k in range(count) if rows[k] == r]
            if not ks:
                out.append((0, 0, r, 1, 1))
            for q, k in enumerate(ks):
                col, value = nz[nb + k]
                out.append((xb + col, value, r, int(q == len(ks) - 1), 0))
    elif fmt is Format.BITMAP:
        chunks = ptr[pb + 1]
        k = 0
        for i in range(n):
            if chunks == 0:
                out.append((0, 0, i, 1, 1))
            for c in range(chunks):
                word = meta[nb + i * chunks + c]
                final = c == chunks - 1
                if word == 0:
                    out.append((0, 0, i, int(final), 1))
                bits = [t for t in range(BITMAP_CHUNK) if word >> t & 1]
                for q, t in enumerate(bits):
                    out.append((xb + BITMAP_CHUNK * c + t, nz[nb + k][1], i,
                                int(final and q == len(bits) - 1), 0))
                    k += 1
    elif fmt is Format.NM:
        groups, word = ptr[pb + 1], ptr[pb + 2]
        big_n, m = word & 0xFF, 1 << (word >> 8)
        slots = groups * big_n
        for i in range(n):
            if slots == 0:
                out.append((0, 0, i, 1, 1))
            for s in range(slots):
                col, value = nz[nb + i * slots + s]
                out.append((xb + (s // big_n) * m + col, value, i, int(s == slots - 1), 0))
    elif fmt is Format.DENSE:
        width = ptr[pb + 1]
        for i in range(n):
            if width == 0:
                out.append((0, 0, i, 1, 1))
            for j in range(width):
                out.append((xb + j, nz[nb + i * width + j][1], i, int(j == width - 1), 0))
    else:
        raise ValueError(fmt)
    return out


class Image:
    """A lane image in a row format (ptr, nz, meta words) and its descriptor."""

    def __init__(self, config, fmt, *, ptr_base=0, nz_base=0, x_base=0, out_base=0):
        self.config = config
        self.fmt = fmt
        self.dut = FormatDecoder(config)
        self.desc = {"ptr_base": ptr_base, "nz_base": nz_base, "x_base": x_base,
                     "out_base": out_base}
        self.ptr = [0] * config.row_depth
        self.nz = [(0, 0)] * config.nz_depth
        self.meta = [0] * config.nz_depth
        self.rng = random.Random(1)

    def put_ptr(self, *words):
        for i, word in enumerate(words):
            if self.desc["ptr_base"] + i < self.config.row_depth:
                self.ptr[self.desc["ptr_base"] + i] = word

    def put_nz(self, index, col, value):
        if self.desc["nz_base"] + index < self.config.nz_depth:
            self.nz[self.desc["nz_base"] + index] = (col, value)

    def put_meta(self, index, word):
        if self.desc["nz_base"] + index < self.config.nz_depth:
            self.meta[self.desc["nz_base"] + index] = word

    def junk_col(self):
        """A column field the format ignores."""
        return self.rng.randrange(1 << self.config.col_width)

    def tokens(self):
        return expand(self.config, self.fmt, self.ptr, self.nz, self.meta, self.desc)


def coo_image(config, rows, **bases):
    """COO: ``rows`` is a list of per-row lists of (col, value)."""
    image = Image(config, Format.COO, **bases)
    entries = [(r, col, value) for r, row in enumerate(rows) for col, value in row]
    image.put_ptr(len(rows), len(entries))
    for k, (r, col, value) in enumerate(entries):
        image.put_nz(k, col, value)
        image.put_meta(k, r)
    return image


def bitmap_image(config, dense, **bases):
    """BITMAP: ``dense`` is a list of rows (lists of values, 0 for none)."""
    image = Image(config, Format.BITMAP, **bases)
    width = len(dense[0]) if dense else 0
    chunks = -(-width // BITMAP_CHUNK)
    image.put_ptr(len(dense), chunks)
    k = 0
    for i, row in enumerate(dense):
        for c in range(chunks):
            word = 0
            for t in range(BITMAP_CHUNK):
                j = BITMAP_CHUNK * c + t
                if j < width and row[j]:
                    word |= 1 << t
                    image.put_nz(k, image.junk_col(), row[j])
                    k += 1
            image.put_meta(i * chunks + c, word)
    return image


def nm_image(config, slots_of_rows, groups, big_n, log2_m, **bases):
    """N:M: per row, ``groups * big_n`` slots (in-group column, value)."""
    image = Image(config, Format.NM, **bases)
    image.put_ptr(len(slots_of_rows), groups, big_n | log2_m << 8)
    for i, slots in enumerate(slots_of_rows):
        assert len(slots) == groups * big_n
        for s, (col, value) in enumerate(slots):
            image.put_nz(i * groups * big_n + s, col, value)
    return image


def dense_image(config, dense, **bases):
    image = Image(config, Format.DENSE, **bases)
    width = len(dense[0]) if dense else 0
    image.put_ptr(len(dense), width)
    for i, row in enumerate(dense):
        for j, value in enumerate(row):
            image.put_nz(i * width + j, image.junk_col(), value)
    return image


def random_value(rng, config, zero=0.0):
    return 0 if rng.random() < zero else rng.randint(config.value_min, config.value_max)


def random_image(fmt, rng, config=CONFIG_ALL):
    """A random tile in ``fmt`` at random bases, inside every memory."""
    bases = {"ptr_base": rng.choice([0, 3, 20]), "nz_base": rng.choice([0, 9, 60]),
             "x_base": rng.choice([0, 17, 100]), "out_base": rng.choice([0, 5])}
    cols = config.x_depth - bases["x_base"]
    if fmt is Format.COO:
        rows = []
        for _ in range(rng.randint(1, 18)):
            length = 0 if rng.random() < 0.35 else rng.randint(1, 5)
            rows.append([(rng.randrange(cols), random_value(rng, config, 0.1))
                         for _ in range(length)])
        rows += [[] for _ in range(rng.randint(0, 3))]        # trailing empty rows
        return coo_image(config, rows, **bases)
    if fmt is Format.BITMAP:
        width = rng.choice([5, 16, 33, 64, 70])
        density = rng.choice([0.05, 0.2, 0.6])
        dense = []
        for _ in range(rng.randint(1, 8)):
            p = 0 if rng.random() < 0.2 else density
            dense.append([random_value(rng, config) if rng.random() < p else 0
                          for _ in range(width)])
        if width > 32:                                         # an all-zero chunk mid-row
            dense[0][16:32] = [0] * 16
            dense[0][0] = 3
        return bitmap_image(config, dense, **bases)
    if fmt is Format.NM:
        big_n, log2_m = rng.choice([(1, 1), (2, 2), (2, 3), (3, 3), (1, 0)])
        m = 1 << log2_m
        groups = rng.randint(1, max(1, min(6, cols // m)))
        rows = []
        for _ in range(rng.randint(1, 8)):
            slots = []
            for _ in range(groups):
                # Some slots are padding (value 0), columns anywhere in the group.
                slots += [(rng.randrange(m), random_value(rng, config, 0.3))
                          for _ in range(big_n)]
            rows.append(slots)
        return nm_image(config, rows, groups, big_n, log2_m, **bases)
    width = rng.randint(1, 12)
    dense = [[random_value(rng, config, 0.4) for _ in range(width)]
             for _ in range(rng.randint(1, 10))]
    return dense_image(config, dense, **bases)


ROW_FORMATS = [Format.COO, Format.BITMAP, Format.NM, Format.DENSE]


@pytest.mark.parametrize("fmt", ROW_FORMATS, ids=lambda f: f.name.lower())
@pytest.mark.parametrize("seed", range(3))
def test_format_random_tiles(fmt, seed):
    rng = random.Random(100 * seed + fmt.value)
    image = random_image(fmt, rng)
    tokens, _, error = run(image, stall=0.4, seed=seed)
    assert not error
    assert tokens == image.tokens()


def test_coo_gaps():
    c = CONFIG_ALL
    # Empty rows before the first entry, between entries and after the last.
    rows = [[], [], [(5, 1), (6, 2)], [], [], [(7, 3)], [(8, 4)], [], [(9, 5)], [], []]
    image = coo_image(c, rows, nz_base=3, x_base=10)
    tokens, _, error = run(image, stall=0.3)
    assert not error and tokens == image.tokens()
    assert sum(t[4] for t in tokens) == 7
    # Entries but no rows left after them: only empty rows at the end.
    image = coo_image(c, [[(1, 1)]] + [[]] * 12)
    tokens, _, error = run(image, stall=0.3)
    assert not error and tokens == image.tokens()


def test_bitmap_zero_chunks():
    c = CONFIG_ALL
    width = 80                                         # five chunks
    dense = [[0] * width for _ in range(6)]
    dense[0][3] = 7                                    # chunk 0 only, then four zero chunks
    dense[1][79] = -5                                  # the last chunk's top bit only
    dense[2] = [i + 1 for i in range(width)]           # every bit set
    dense[4][16] = 1
    dense[4][47] = 2                                   # zero chunks between and after
    image = bitmap_image(c, dense, ptr_base=4, nz_base=11, x_base=40)
    tokens, _, error = run(image, stall=0.3)
    assert not error and tokens == image.tokens()
    # Row 3 has no set bit: five empty tokens, the last one ends it.
    assert [t for t in tokens if t[2] == 3] == [(0, 0, 3, 0, 1)] * 4 + [(0, 0, 3, 1, 1)]
    # C = 0: every row is empty.
    image = bitmap_image(c, [[] for _ in range(4)])
    tokens, _, error = run(image)
    assert not error and tokens == [(0, 0, i, 1, 1) for i in range(4)]


def test_nm_padding_and_groups():
    c = CONFIG_ALL
    # 2:4 over three groups; padding slots hold value 0 with any column.
    rows = [[(0, 5), (3, 0), (1, -1), (2, 4), (0, 0), (0, 0)],
            [(1, 1), (2, 2), (3, 3), (0, 4), (2, 5), (3, 6)]]
    image = nm_image(c, rows, 3, 2, 2, nz_base=6, x_base=30)
    tokens, _, error = run(image, stall=0.3)
    assert not error and tokens == image.tokens()
    assert [t[0] - 30 for t in tokens[:6]] == [0, 3, 5, 6, 8, 8]
    # N = 0 or G = 0: every row is empty.
    for groups, big_n in ((0, 2), (3, 0)):
        image = nm_image(c, [[]] * 3, groups, big_n, 2)
        tokens, _, error = run(image)
        assert not error and tokens == [(0, 0, i, 1, 1) for i in range(3)]


@pytest.mark.parametrize("fmt", ROW_FORMATS, ids=lambda f: f.name.lower())
def test_format_throughput_one_token_per_cycle(fmt):
    rng = random.Random(8)
    for _ in range(2):
        image = random_image(fmt, rng)
        tokens, cycles, error = run(image)
        assert not error and tokens == image.tokens()
        assert cycles[-1] - cycles[0] == len(tokens) - 1
        assert cycles[0] == START_LATENCY == FormatDecoder.START_LATENCY


@pytest.mark.parametrize("fmt", ROW_FORMATS, ids=lambda f: f.name.lower())
def test_format_n_zero(fmt):
    c = CONFIG_ALL
    image = Image(c, fmt, ptr_base=c.row_depth - 3, nz_base=c.nz_depth)
    image.put_ptr(0, 0 if fmt is Format.COO else 5, 2 | 1 << 8)
    tokens, _, error = run(image)
    assert not error and tokens == []


def _one_row(fmt, config, **bases):
    """A valid two-row tile of ``fmt`` (used by the error tests)."""
    if fmt is Format.COO:
        return coo_image(config, [[(1, 1), (2, 2)], [(3, 3)]], **bases)
    if fmt is Format.BITMAP:
        return bitmap_image(config, [[1, 0, 2], [0, 3, 0]], **bases)
    if fmt is Format.NM:
        return nm_image(config, [[(0, 1), (1, 2)], [(1, 3), (0, 4)]], 2, 1, 1, **bases)
    return dense_image(config, [[1, 2, 3], [4, 5, 6]], **bases)


@pytest.mark.parametrize("fmt", ROW_FORMATS, ids=lambda f: f.name.lower())
def test_format_header_errors(fmt):
    c = CONFIG_ALL
    header = 3 if fmt is Format.NM else 2
    # The header ends exactly at the top of ptr: fine; one word higher: an error.
    image = _one_row(fmt, c, ptr_base=c.row_depth - header)
    tokens, _, error = run(image)
    assert not error and tokens == image.tokens()
    image = _one_row(fmt, c, ptr_base=c.row_depth - header + 1)
    tokens, _, error = run(image)
    assert error and tokens == []
    # out_base + n > row_depth.
    image = _one_row(fmt, c, out_base=c.row_depth - 2)
    tokens, _, error = run(image)
    assert not error and tokens == image.tokens()
    image = _one_row(fmt, c, out_base=c.row_depth - 1)
    tokens, _, error = run(image)
    assert error and tokens == []
    # nz_base past the memory, even without a row reading it.
    image = Image(c, fmt, nz_base=c.nz_depth + 1)
    image.put_ptr(0, 0, 1)
    tokens, _, error = run(image)
    assert error and tokens == []


def _prefix(tokens, expected):
    return tokens == expected[:len(tokens)]


def test_coo_errors():
    c = CONFIG_ALL
    good = coo_image(c, [[(1, 1)], [(2, 2), (3, 3)], [(4, 4)]], nz_base=4)
    expected = good.tokens()
    # Rows decreasing.
    bad = coo_image(c, [[(1, 1)], [(2, 2), (3, 3)], [(4, 4)]], nz_base=4)
    bad.put_meta(3, 0)
    for stall in (0.0, 0.5):
        tokens, _, error = run(bad, stall=stall)
        assert error and _prefix(tokens, expected) and len(tokens) <= 3
    # A row at n or beyond.
    bad = coo_image(c, [[(1, 1)], [(2, 2), (3, 3)], [(4, 4)]], nz_base=4)
    bad.put_meta(3, 3)
    tokens, _, error = run(bad, stall=0.3)
    # The rows before n still stream (row 2 as an empty row), then the error.
    assert error and tokens[:3] == expected[:3] and tokens[3:] in ([], [(0, 0, 2, 1, 1)])
    # More entries than the memory holds past nz_base (before any token).
    bad = coo_image(c, [[(1, 1)]], nz_base=c.nz_depth - 1)
    bad.put_ptr(1, 2)
    tokens, _, error = run(bad)
    assert error and tokens == []
    # No rows but entries.
    bad = coo_image(c, [], nz_base=2)
    bad.put_ptr(0, 1)
    tokens, _, error = run(bad)
    assert error and tokens == []


def test_bitmap_errors():
    c = CONFIG_ALL
    # Chunks past the meta memory: the last row's chunk is outside.
    image = bitmap_image(c, [[0] * 20, [0] * 20], nz_base=c.nz_depth - 3)
    tokens, _, error = run(image)
    assert error and tokens == image.tokens()[:3]
    image = bitmap_image(c, [[0] * 20, [0] * 20], nz_base=c.nz_depth - 4)
    tokens, _, error = run(image)
    assert not error and tokens == image.tokens()
    # Values past the nz memory (the meta words fit).
    image = bitmap_image(c, [[1] * 16], nz_base=c.nz_depth - 10)
    tokens, _, error = run(image, stall=0.3)
    assert error and tokens == image.tokens()[:10]
    # A column past x.
    image = bitmap_image(c, [[1] * 16, [0] * 15 + [1]], x_base=c.x_depth - 16)
    tokens, _, error = run(image)
    assert not error and tokens == image.tokens()
    image = bitmap_image(c, [[1] * 16, [0] * 15 + [1]], x_base=c.x_depth - 15)
    tokens, _, error = run(image)
    assert error and tokens == image.tokens()[:15]


def test_nm_and_dense_errors():
    c = CONFIG_ALL
    # N:M slots past the nz memory.
    image = nm_image(c, [[(0, 1), (1, 2)], [(1, 3), (0, 4)]], 2, 1, 1, nz_base=c.nz_depth - 3)
    tokens, _, error = run(image)
    assert error and tokens == image.tokens()[:3]
    # A group base past x: M = 2 ** 15 (saturates), group 1 is out of range.
    image = nm_image(c, [[(0, 1), (0, 2)]], 2, 1, 15)
    tokens, _, error = run(image)
    assert error and tokens == [(0, 1, 0, 0, 0)]
    # A stored column past x.
    image = nm_image(c, [[(0, 1), (c.x_depth - 1, 2)]], 2, 1, 0, x_base=0)
    tokens, _, error = run(image)
    assert error and tokens == [(0, 1, 0, 0, 0)]
    # Dense: entries past nz, columns past x.
    image = dense_image(c, [[1, 2, 3], [4, 5, 6]], nz_base=c.nz_depth - 5)
    tokens, _, error = run(image)
    assert error and tokens == image.tokens()[:5]
    image = dense_image(c, [[1, 2, 3], [4, 5, 6]], x_base=c.x_depth - 2)
    tokens, _, error = run(image)
    assert error and tokens == image.tokens()[:2]


def test_error_then_next_format_runs_clean():
    rng = random.Random(4)
    for fmt in ROW_FORMATS:
        image = random_image(fmt, rng)
        tokens, _, error = run(image, stall=0.2)
        assert not error and tokens == image.tokens()
