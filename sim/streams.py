"""Stream drivers for Amaranth simulator testbenches, with random stalls.

Every block test feeds its input streams with :func:`send` and drains its
output streams with :func:`receive`; both stall at random (``stall``
probability per cycle, seeded) so that back-pressure paths are exercised.
"""

import random

from amaranth.sim import Simulator

__all__ = ["send", "receive", "simulate"]


async def send(ctx, stream, payloads, *, stall=0.0, rng=None):
    """Send ``payloads`` on ``stream`` (the producer side), one per handshake.

    Parameters
    ----------
    ctx : SimulatorContext
    stream : stream.Interface
        An interface whose ``valid``/``payload`` this testbench drives.
    payloads : iterable
        Values accepted by ``ctx.set(stream.payload, ...)`` (ints, dicts).
    stall : float
        Probability that ``valid`` is held low in a given cycle.
    rng : random.Random, optional
    """
    rng = rng or random.Random(0)
    for payload in payloads:
        while stall and rng.random() < stall:
            ctx.set(stream.valid, 0)
            await ctx.tick()
        ctx.set(stream.payload, payload)
        ctx.set(stream.valid, 1)
        await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def _receive(ctx, stream, count, stall, rng):
    received = []
    while len(received) < count:
        ready = not (stall and rng.random() < stall)
        ctx.set(stream.ready, ready)
        _, _, valid, payload = await ctx.tick().sample(stream.valid, stream.payload)
        if ready and valid:
            received.append(payload)
    ctx.set(stream.ready, 0)
    return received


async def receive(ctx, stream, count, *, stall=0.0, rng=None):
    """Receive ``count`` payloads from ``stream`` (the consumer side).

    Parameters
    ----------
    ctx : SimulatorContext
    stream : stream.Interface
        An interface whose ``ready`` this testbench drives.
    count : int
        Payloads to collect before returning.
    stall : float
        Probability that ``ready`` is held low in a given cycle.
    rng : random.Random, optional

    Returns
    -------
    list
        Payload values sampled at each handshake (struct views for
        struct-shaped payloads).
    """
    return await _receive(ctx, stream, count, stall, rng or random.Random(1))


def simulate(dut, *testbenches, vcd=None, processes=()):
    """Run ``testbenches`` against ``dut`` on a 1 MHz ``sync`` clock.

    Parameters
    ----------
    dut : Elaboratable
    *testbenches : async functions of ``ctx``
        Run concurrently; the simulation ends when all have returned.
    vcd : str or Path, optional
        Write a waveform there (useful when a test fails).
    processes : iterable of async functions
        Background processes (``add_process``) that may run forever.
    """
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for testbench in testbenches:
        sim.add_testbench(testbench)
    for process in processes:
        sim.add_process(process)
    if vcd is not None:
        with sim.write_vcd(str(vcd)):
            sim.run()
    else:
        sim.run()
