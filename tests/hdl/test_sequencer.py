"""Sequencer: fetch/decode/dispatch, status and error codes, with stub lanes."""

import pytest

from zeroskip import AcceleratorConfig
from zeroskip.core.isa import ErrorCode, Insn, Opcode
from zeroskip.hdl.sequencer import Sequencer
from zeroskip.sim.streams import simulate

CONFIG = AcceleratorConfig(pes=1, imem_depth=8)


def encode(opcode, **args):
    if opcode == Opcode.SPMV:
        payload = {"spmv": args}
    elif opcode == Opcode.SET_EPI:
        payload = {"epi": args}
    else:
        payload = {}
    return Insn.const({"opcode": opcode, "args": payload}).as_bits()


def run(program, *, lane_cycles=5, desc_error=False, overflow=False):
    """Load ``program``, start, emulate lanes busy for ``lane_cycles``; return the trace."""
    dut = Sequencer(CONFIG)
    trace = {"starts": [], "retired": 0, "cycles": 0}

    async def testbench(ctx):
        for index, word in enumerate(program):
            for half in range(2):
                ctx.set(dut.host_addr, 2 * index + half)
                ctx.set(dut.host_wdata, (word >> (32 * half)) & 0xFFFF_FFFF)
                ctx.set(dut.host_we, 1)
                await ctx.tick()
        ctx.set(dut.host_we, 0)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        busy_left = 0
        for _ in range(200):
            if ctx.get(dut.lane_start):
                trace["starts"].append((ctx.get(dut.desc.nz_base), ctx.get(dut.epi.shift)))
                busy_left = lane_cycles
            ctx.set(dut.lanes_busy, busy_left > 0)
            ctx.set(dut.lanes_desc_error, desc_error and busy_left == 0)
            ctx.set(dut.lanes_overflow, overflow and busy_left == 0)
            trace["retired"] += ctx.get(dut.retire)
            trace["cycles"] += ctx.get(dut.busy)
            if not ctx.get(dut.busy) and trace["cycles"]:
                break
            await ctx.tick()
            busy_left = max(0, busy_left - 1)
        trace.update(done=ctx.get(dut.done), error=ctx.get(dut.error), pc=ctx.get(dut.pc))

    simulate(dut, testbench)
    return trace


def test_program_runs_to_halt():
    program = [
        encode(Opcode.NOP),
        encode(Opcode.SET_EPI, shift=3),
        encode(Opcode.SPMV, nz_base=7),
        encode(Opcode.HALT),
    ]
    trace = run(program, lane_cycles=5)
    assert trace["starts"] == [(7, 3)]
    assert trace["retired"] == 4
    assert (trace["done"], trace["error"], trace["pc"]) == (1, ErrorCode.NONE, 3)
    # Fetch and decode of four instructions, dispatch, then the lanes' busy
    # cycles after dispatch (4) and the cycle that sees them idle.
    assert trace["cycles"] == 2 * 4 + 1 + 4 + 1


@pytest.mark.parametrize("program, kwargs, code, pc", [
    ([encode(Opcode.NOP), 0xF], {}, ErrorCode.ILLEGAL_INSN, 1),
    ([encode(Opcode.NOP)] * 8, {}, ErrorCode.PC_OVERRUN, 8),
    ([encode(Opcode.SPMV), encode(Opcode.HALT)], {"desc_error": True}, ErrorCode.DESCRIPTOR, 0),
    ([encode(Opcode.NOP), encode(Opcode.SPMV), encode(Opcode.HALT)], {"overflow": True},
     ErrorCode.OVERFLOW, 1),
])
def test_errors_stop_with_code_and_pc(program, kwargs, code, pc):
    trace = run(program, **kwargs)
    assert (trace["done"], trace["error"], trace["pc"]) == (0, code, pc)
