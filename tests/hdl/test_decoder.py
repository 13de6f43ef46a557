"""CsrDecoder: tokens against a Python expansion of the tile, throughput, errors."""

import random

import pytest
from amaranth.hdl import Elaboratable, Module, unsigned
from amaranth.lib.memory import Memory

from zeroskip.config import AcceleratorConfig
from zeroskip.firmware.isa import nz_entry_layout
from zeroskip.hdl.decoder import CsrDecoder
from zeroskip.sim.streams import simulate

CONFIG = AcceleratorConfig(pes=1, value_width=16, acc_width=32, x_depth=256,
                           nz_depth=256, row_depth=64)


class Harness(Elaboratable):
    """The decoder with its two memories, initialized from Python lists."""

    def __init__(self, config, ptr, nz):
        self.config = config
        self.dut = CsrDecoder(config)
        self.ptr = Memory(shape=unsigned(config.nz_addr_width + 1), depth=config.row_depth,
                          init=ptr)
        self.nz = Memory(shape=nz_entry_layout(config), depth=config.nz_depth,
                         init=[{"col": col, "value": value} for col, value in nz])

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        m.submodules.ptr = self.ptr
        m.submodules.nz = self.nz
        ptr_rd = self.ptr.read_port()
        nz_rd = self.nz.read_port()
        m.d.comb += [
            ptr_rd.addr.eq(dut.ptr_addr),
            dut.ptr_data.eq(ptr_rd.data),
            nz_rd.addr.eq(dut.nz_addr),
            nz_rd.en.eq(dut.nz_en),
            dut.nz_data.eq(nz_rd.data),
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
    """Run one instruction; returns (tokens, handshake cycles, error, start cycle)."""
    harness = Harness(tile.config, tile.ptr, tile.nz)
    dut = harness.dut
    result = {}
    timeout = timeout or 50 + 4 * (len(tile.tokens()) + 10) * (1 + int(stall > 0) * 3)

    async def bench(ctx):
        rng = random.Random(seed)
        ctx.set(dut.desc, {**tile.desc, "accumulate": 0, "epilogue": 0, "bias": 0})
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
START_LATENCY = 6


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
