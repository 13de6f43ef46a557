# amaranth: UnusedElaboratable=no

"""Gather network: data, order, round-robin arbitration, throughput, parameters."""

import random

import pytest
from amaranth.back import verilog
from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from zeroskip.core import timing
from zeroskip.core.config import AcceleratorConfig
from zeroskip.hdl.gather import Gather
from zeroskip.hdl.layouts import operand_tag_layout
from zeroskip.sim.streams import receive, send, simulate

TAG = unsigned(16)


# A reference of the arbitration rule (the ISA model implements the same).

def reference_schedule(pes, banks, lanes, *, cluster_lanes=None, rr_resets=()):
    """Cycle-by-cycle grants for lanes offering their requests back to back.

    ``lanes[p]`` is a list of ``(addr, skip)``; every response stream is always
    ready. Lanes form clusters of ``cluster_lanes`` (all lanes by default),
    each with its own banks and cluster-local pointers. ``rr_resets`` are the
    cycles in which ``rr_reset`` is high (the pointers are 0 from the next
    cycle on).

    Returns ``(accepted, stalls)``: ``accepted[p]`` the cycle of each of lane
    ``p``'s requests, ``stalls`` the ``stall`` bit vector of every cycle.
    """
    size = cluster_lanes or pes
    rr = {}
    heads = [0] * pes
    accepted = [[] for _ in range(pes)]
    stalls = []
    cycle = 0
    while any(head < len(lane) for head, lane in zip(heads, lanes, strict=True)):
        granted = set()
        bidders = {}
        for p in range(pes):
            if heads[p] < len(lanes[p]):
                addr, skip = lanes[p][heads[p]]
                if skip:
                    granted.add(p)
                else:
                    bidders.setdefault((p // size, addr % banks), []).append(p)
        for bank, lanes_of_bank in bidders.items():
            pointer = rr.get(bank, 0)
            winner = min(lanes_of_bank, key=lambda p: (p % size - pointer) % size)
            granted.add(winner)
            rr[bank] = (winner % size + 1) % size
        stall = 0
        for lanes_of_bank in bidders.values():
            for p in lanes_of_bank:
                if p not in granted:
                    stall |= 1 << p
        stalls.append(stall)
        for p in granted:
            accepted[p].append(cycle)
            heads[p] += 1
        if cycle in rr_resets:
            rr = {}
        cycle += 1
    return accepted, stalls


def test_reference_schedule_rule():
    # Three lanes on one bank: lane 0, then 1, then 2, then 0 again.
    accepted, stalls = reference_schedule(3, 1, [[(0, 0)] * 2, [(0, 0)], [(0, 0)]])
    assert accepted == [[0, 3], [1], [2]]
    assert stalls == [0b110, 0b101, 0b001, 0]
    # A skip is accepted at once and never stalls; the pointer passes lane 0.
    accepted, stalls = reference_schedule(3, 1, [[(0, 0)], [(1, 1), (0, 0)], [(0, 0)]])
    assert accepted == [[0], [0, 1], [2]]
    assert stalls == [0b100, 0b100, 0]
    # Clusters of two: lanes 0 and 1 share banks, lanes 2 and 3 share others.
    accepted, stalls = reference_schedule(4, 1, [[(0, 0)] * 2] * 4, cluster_lanes=2)
    assert accepted == [[0, 2], [1, 3], [0, 2], [1, 3]]
    assert stalls == [0b1010, 0b0101, 0b1010, 0]
    # One lane per cluster never waits.
    accepted, stalls = reference_schedule(3, 1, [[(0, 0)] * 2] * 3, cluster_lanes=1)
    assert accepted == [[0, 1]] * 3 and stalls == [0, 0]


# Helpers.

def host_write(ctx, dut, x):
    """Write ``x`` into the banks through the host port (one word per cycle)."""
    async def run():
        ctx.set(dut.host_we, 1)
        for addr, value in enumerate(x):
            ctx.set(dut.host_addr, addr)
            ctx.set(dut.host_wdata, value)
            await ctx.tick()
        ctx.set(dut.host_we, 0)
    return run()


def random_x(config, rng, count=None):
    count = config.x_depth if count is None else count
    return [rng.randint(config.value_min, config.value_max) for _ in range(count)]


def tag_bits(shape, value):
    """The bits of a tag given as an int or (struct tag) as a dict."""
    if isinstance(shape, data.Layout):
        return shape.const(value).as_bits()
    return value


def received_tag_bits(tag):
    return tag.as_bits() if isinstance(tag, data.Const) else tag


# 1. Bit-exact data and order under random stalls.

DATA_CASES = [
    # (pes, x_banks, x_depth, struct tag, cluster_lanes)
    (1, 0, 64, False, 1),
    (3, 0, 64, True, 3),
    (4, 0, 64, False, 4),
    (4, 2, 64, False, 4),
    (4, 1, 16, False, 4),
    (4, 0, 16, True, 1),
    (8, 0, 128, False, 8),
    (8, 1, 64, False, 2),
    (8, 16, 16, False, 8),
]


@pytest.mark.parametrize("pes,x_banks,x_depth,struct_tag,cluster_lanes", DATA_CASES)
def test_data_in_order_under_stalls(pes, x_banks, x_depth, struct_tag, cluster_lanes):
    config = AcceleratorConfig(pes=pes, x_banks=x_banks, x_depth=x_depth,
                               cluster_lanes=cluster_lanes)
    tag_shape = operand_tag_layout(config) if struct_tag else TAG
    dut = Gather(config, tag_shape=tag_shape)
    rng = random.Random(pes * 100 + config.x_banks)
    x = random_x(config, rng)
    count = 60

    requests = []
    for p in range(pes):
        lane = []
        for i in range(count):
            addr = rng.randrange(config.x_depth)
            skip = int(rng.random() < 0.2)
            if struct_tag:
                tag = {"value": rng.randint(config.value_min, config.value_max),
                       "row": rng.randrange(config.row_depth),
                       "last": rng.randrange(2), "empty": skip}
            else:
                tag = (p << 8) | i
            lane.append({"addr": addr, "skip": skip, "tag": tag})
        requests.append(lane)

    results = [None] * pes
    stall_counts = [0] * pes

    async def host(ctx):
        await host_write(ctx, dut, x)

    def sender(p):
        async def run(ctx):
            await ctx.tick().repeat(len(x) + 1)
            await send(ctx, dut.req[p], requests[p], stall=0.3 + 0.05 * (p % 5),
                       rng=random.Random(10 + p))
        return run

    def receiver(p):
        async def run(ctx):
            await ctx.tick().repeat(len(x) + 1)
            results[p] = await receive(ctx, dut.resp[p], count, stall=0.5 - 0.05 * (p % 5),
                                       rng=random.Random(20 + p))
        return run

    async def monitor(ctx):
        cycles = 0
        async for _, _, stall in ctx.tick().sample(dut.stall):
            for p in range(pes):
                stall_counts[p] += stall >> p & 1
            cycles += 1
            assert cycles < 100 * count * pes, "responses lost or no progress"

    simulate(dut, host, *(sender(p) for p in range(pes)), *(receiver(p) for p in range(pes)),
             processes=[monitor])

    for p in range(pes):
        got = [(r.data, received_tag_bits(r.tag)) for r in results[p]]
        want = [(0 if req["skip"] else x[req["addr"]], tag_bits(tag_shape, req["tag"]))
                for req in requests[p]]
        assert got == want, f"lane {p}"
    if config.x_banks < cluster_lanes:
        assert sum(stall_counts) > 0
    if cluster_lanes == 1:
        assert sum(stall_counts) == 0


# 2. The arbitration contract, cycle by cycle.

def run_schedule(config, lanes, *, rr_resets=()):
    """Offer ``lanes`` back to back with every response ready; record everything.

    Returns ``(accepted, stalls, responses)``: the acceptance cycles per lane,
    the ``stall`` vector of every cycle until the last acceptance, and per lane
    the ``(cycle, data, tag)`` of each response.
    """
    pes = config.pes
    dut = Gather(config, tag_shape=TAG)
    x = [config.value_min + (7 * j) % (config.value_max - config.value_min) for j in
         range(config.x_depth)]
    accepted = [[] for _ in range(pes)]
    stalls = []
    responses = [[] for _ in range(pes)]
    total = sum(len(lane) for lane in lanes)

    async def bench(ctx):
        await host_write(ctx, dut, x)
        for p in range(pes):
            ctx.set(dut.resp[p].ready, 1)
        heads = [0] * pes
        cycle = 0
        while sum(len(r) for r in responses) < total:
            for p in range(pes):
                if heads[p] < len(lanes[p]):
                    addr, skip = lanes[p][heads[p]]
                    ctx.set(dut.req[p].payload, {"addr": addr, "skip": skip,
                                                 "tag": (p << 8) | heads[p]})
                    ctx.set(dut.req[p].valid, 1)
                else:
                    ctx.set(dut.req[p].valid, 0)
            ctx.set(dut.rr_reset, int(cycle in rr_resets))
            if any(head < len(lane) for head, lane in zip(heads, lanes, strict=True)):
                stalls.append(ctx.get(dut.stall))
            for p in range(pes):
                if ctx.get(dut.resp[p].valid):
                    payload = ctx.get(dut.resp[p].payload)
                    responses[p].append((cycle, payload.data, payload.tag))
                if heads[p] < len(lanes[p]) and ctx.get(dut.req[p].ready):
                    accepted[p].append(cycle)
                    heads[p] += 1
            await ctx.tick()
            cycle += 1
            assert cycle < 10 * total + 20, "no progress"

    simulate(dut, bench)
    return accepted, stalls, responses, x


def random_lanes(config, rng, count, *, skip=0.15):
    return [[(rng.randrange(config.x_depth), int(rng.random() < skip)) for _ in range(count)]
            for _ in range(config.pes)]


@pytest.mark.parametrize("pes,x_banks,cluster_lanes,seed",
                         [(4, 2, 4, 1), (4, 2, 4, 2), (8, 0, 8, 3), (3, 1, 3, 4), (8, 2, 4, 5),
                          (4, 1, 2, 6)])
def test_arbitration_matches_reference(pes, x_banks, cluster_lanes, seed):
    config = AcceleratorConfig(pes=pes, x_banks=x_banks, x_depth=64, cluster_lanes=cluster_lanes)
    rng = random.Random(seed)
    lanes = random_lanes(config, rng, 40)
    if pes == 8:
        # Crowd a few banks so that the default banking conflicts too.
        lanes = [[(addr % 4 + 16 * (addr % 3), skip) for addr, skip in lane] for lane in lanes]
    lanes[0] = lanes[0][:25]  # uneven lengths
    resets = (7, 30)
    accepted, stalls, responses, x = run_schedule(config, lanes, rr_resets=resets)
    ref_accepted, ref_stalls = reference_schedule(pes, config.x_banks, lanes,
                                                  cluster_lanes=cluster_lanes, rr_resets=resets)
    assert accepted == ref_accepted
    assert stalls == ref_stalls
    assert sum(bin(s).count("1") for s in stalls) > 0
    # Fixed latency, data and order.
    for p in range(pes):
        assert [c for c, _, _ in responses[p]] == [c + Gather.LATENCY for c in accepted[p]]
        assert [(d, t) for _, d, t in responses[p]] == [
            (0 if skip else x[addr], (p << 8) | i) for i, (addr, skip) in enumerate(lanes[p])]


def test_round_robin_rotates_over_one_bank():
    config = AcceleratorConfig(pes=4, x_banks=2, x_depth=16, cluster_lanes=4)
    lanes = [[(0, 0)] * 3, [(2, 0)] * 3, [(4, 0)] * 3, [(6, 0)] * 3]
    accepted, stalls, _, _ = run_schedule(config, lanes)
    assert accepted == [[0, 4, 8], [1, 5, 9], [2, 6, 10], [3, 7, 11]]
    assert stalls[:4] == [0b1110, 0b1101, 0b1011, 0b0111]
    assert (accepted, stalls) == reference_schedule(4, 2, lanes)


# 3. Throughput and back-pressure.

def test_one_lane_one_request_per_cycle():
    config = AcceleratorConfig(pes=1, x_depth=64)
    lanes = [[(j % 64, int(j % 5 == 4)) for j in range(50)]]
    accepted, stalls, responses, _ = run_schedule(config, lanes)
    assert accepted[0] == list(range(accepted[0][0], accepted[0][0] + 50))
    assert [c for c, _, _ in responses[0]] == [c + Gather.LATENCY for c in accepted[0]]
    assert not any(stalls)


@pytest.mark.parametrize("cluster_lanes", [1, 4, 8])
def test_lanes_on_distinct_banks_all_run_at_full_rate(cluster_lanes):
    config = AcceleratorConfig(pes=8, x_depth=128, cluster_lanes=cluster_lanes)
    banks = config.x_banks
    lanes = [[((p + 3 * i * banks) % 128, 0) for i in range(30)] for p in range(8)]
    accepted, stalls, _, _ = run_schedule(config, lanes)
    start = accepted[0][0]
    assert accepted == [list(range(start, start + 30))] * 8
    assert not any(stalls)


def test_back_pressure_holds_off_without_stall():
    config = AcceleratorConfig(pes=3, x_banks=2, x_depth=16, cluster_lanes=3)
    dut = Gather(config, tag_shape=TAG)

    async def bench(ctx):
        # Lane 0 offers requests to bank 0 and its responses are never taken.
        for p in (1, 2):
            ctx.set(dut.resp[p].ready, 1)
        ctx.set(dut.req[0].payload, {"addr": 2, "skip": 0, "tag": 0})
        ctx.set(dut.req[0].valid, 1)
        readies = []
        for _ in range(8):
            readies.append(ctx.get(dut.req[0].ready))
            assert ctx.get(dut.stall) == 0
            await ctx.tick()
        assert readies == [1] * Gather.QUEUE_DEPTH + [0] * (8 - Gather.QUEUE_DEPTH)
        # A held-off lane takes no part in arbitration: lane 2 gets bank 0 every
        # cycle, although after its first grant the pointer favours lane 0.
        ctx.set(dut.req[2].payload, {"addr": 4, "skip": 0, "tag": 0})
        ctx.set(dut.req[2].valid, 1)
        for _ in range(3):
            assert ctx.get(dut.req[2].ready) == 1
            assert ctx.get(dut.stall) == 0
            await ctx.tick()
        ctx.set(dut.req[0].payload, {"addr": 2, "skip": 1, "tag": 0})
        assert ctx.get(dut.req[0].ready) == 0  # a skip is held off too
        assert ctx.get(dut.stall) == 0
        ctx.set(dut.req[2].valid, 0)
        ctx.set(dut.req[0].payload, {"addr": 2, "skip": 0, "tag": 0})
        # Draining lane 0 lets it accept again, one request per response.
        ctx.set(dut.resp[0].ready, 1)
        assert ctx.get(dut.resp[0].valid) == 1
        assert ctx.get(dut.req[0].ready) == 0  # able depends on registers only
        await ctx.tick()
        assert ctx.get(dut.req[0].ready) == 1
        # Now lanes 0 and 2 compete again for bank 0: the pointer says lane 0.
        ctx.set(dut.req[2].valid, 1)
        assert ctx.get(dut.req[0].ready) == 1
        assert ctx.get(dut.req[2].ready) == 0
        assert ctx.get(dut.stall) == 0b100

    simulate(dut, bench)


@pytest.mark.parametrize("cluster_lanes", [1, 2])
def test_host_write_selects_bank_and_address(cluster_lanes):
    config = AcceleratorConfig(pes=2, x_banks=4, x_depth=16, cluster_lanes=cluster_lanes)
    dut = Gather(config, tag_shape=TAG)
    x = list(range(-8, 8))
    order = [5, 0, 15, 3, 12, 9, 1, 14, 2, 7, 10, 4, 13, 6, 11, 8]

    async def host(ctx):
        ctx.set(dut.host_we, 1)
        for addr in order:
            ctx.set(dut.host_addr, addr)
            ctx.set(dut.host_wdata, x[addr])
            await ctx.tick()
        ctx.set(dut.host_we, 0)
        # A cycle without write enable writes nothing.
        ctx.set(dut.host_addr, 0)
        ctx.set(dut.host_wdata, 99)
        await ctx.tick()

    results = {}

    # Every cluster's copy holds the whole vector (the write is a broadcast).
    def lane(p):
        async def run(ctx):
            await ctx.tick().repeat(len(order) + 2)
            await send(ctx, dut.req[p], [{"addr": a, "skip": 0, "tag": a} for a in range(16)])
        return run

    def sink(p):
        async def run(ctx):
            await ctx.tick().repeat(len(order) + 2)
            results[p] = await receive(ctx, dut.resp[p], 16)
        return run

    simulate(dut, host, lane(0), lane(1), sink(0), sink(1))
    for p in range(2):
        assert [(r.data, r.tag) for r in results[p]] == [(x[a], a) for a in range(16)]


# 4. Parameters and elaboration.

def test_parameter_validation():
    config = AcceleratorConfig(pes=2)
    with pytest.raises(TypeError, match=r"^config must be an AcceleratorConfig, not 4$"):
        Gather(4, tag_shape=TAG)
    with pytest.raises(TypeError,
                       match=r"^tag_shape must be a shape, not 'tag'$"):
        Gather(config, tag_shape="tag")
    with pytest.raises(TypeError, match=r"^tag_shape must be a shape, not -1$"):
        Gather(config, tag_shape=-1)
    with pytest.raises(TypeError):
        Gather(config, TAG)  # tag_shape is keyword-only


def test_signature():
    config = AcceleratorConfig(pes=3, value_width=8, x_depth=256)
    tag = operand_tag_layout(config)
    dut = Gather(config, tag_shape=tag)
    assert dut.config is config
    assert dut.tag_shape is tag
    assert len(dut.req) == 3 and len(dut.resp) == 3
    assert dut.req[0].payload.shape()["tag"].shape == tag
    assert dut.resp[2].payload.shape()["data"].shape == signed(8)
    assert dut.stall.shape() == unsigned(3)
    assert dut.host_addr.shape() == unsigned(8)
    assert dut.host_wdata.shape() == signed(8)
    assert Gather(config, tag_shape=5).tag_shape == 5


@pytest.mark.parametrize("pes,x_banks,x_depth,cluster_lanes",
                         [(32, 0, 1024, 1), (32, 0, 1024, 8), (2, 16, 16, 2), (4, 1, 16, 4)])
def test_converts_to_verilog(pes, x_banks, x_depth, cluster_lanes):
    config = AcceleratorConfig(pes=pes, x_banks=x_banks, x_depth=x_depth,
                               cluster_lanes=cluster_lanes)
    dut = Gather(config, tag_shape=operand_tag_layout(config))
    text = verilog.convert(dut, name="gather")
    assert "module gather" in text


# 5. The ISA model's schedule (zeroskip.core.timing) follows the same rule.

@pytest.mark.parametrize("pes,banks,cluster_lanes,seed",
                         [(8, 2, 4, 1), (6, 1, 3, 2), (4, 2, 1, 3), (5, 4, 5, 4)])
def test_model_schedule_matches_reference(pes, banks, cluster_lanes, seed):
    rng = random.Random(seed)
    lanes = [[(rng.randrange(16), int(rng.random() < 0.2)) for _ in range(rng.randrange(5, 40))]
             for _ in range(pes)]
    accepted, stalls = reference_schedule(pes, banks, lanes, cluster_lanes=cluster_lanes)
    tokens = [[-1 if skip else addr % banks for addr, skip in lane] for lane in lanes]
    result = timing.schedule(tokens, banks, cluster_lanes=cluster_lanes)
    assert result.cycles == len(stalls) == max(lane[-1] for lane in accepted) + 1
    assert result.stalls_per_lane == [sum(s >> p & 1 for s in stalls) for p in range(pes)]
    assert result.busy_per_lane == [sum(1 for _, skip in lane if not skip) for lane in lanes]
    if cluster_lanes == 1:
        assert result.stalls == 0
    else:
        assert result.stalls > 0


def test_closed_form_equals_the_cycle_rule():
    # One lane per cluster: the closed form equals the general replay of the
    # same lanes on disjoint banks, grant order and pointers included.
    rng = random.Random(9)
    banks, pes = 2, 5
    tokens = [[rng.choice([-1, 0, 1]) for _ in range(rng.randrange(0, 30))] for _ in range(pes)]
    closed = timing.schedule(tokens, banks, cluster_lanes=1, trace=True)
    disjoint = [[-1 if t < 0 else p * banks + t for t in lane] for p, lane in enumerate(tokens)]
    general = timing.schedule(disjoint, banks * pes, trace=True)
    assert closed == general
    assert closed.grants.tolist() == general.grants.tolist()
