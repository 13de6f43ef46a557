"""Sequencer: fetches, decodes and dispatches microcode; owns the status."""

from amaranth import Cat, Module, Signal
from amaranth.lib import memory
from amaranth.lib.wiring import In, Out

from zeroskip.core import formatspec
from zeroskip.core.isa import (
    INSN_WIDTH,
    EpiArgs,
    ErrorCode,
    Format,
    Insn,
    MoveArgs,
    Opcode,
    ReduceArgs,
    SpmvArgs,
)
from zeroskip.hdl.component import ConfigComponent, check_config

__all__ = ["Sequencer"]


class Sequencer(ConfigComponent):
    """Instruction memory, fetch/decode/dispatch and the status register.

    A run starts at instruction 0 and ends at ``HALT`` (``done``) or at the
    first error (``error`` holds its :class:`ErrorCode`, ``pc`` the failing
    instruction). An ``SPMV`` in a format the configuration does not enable,
    a ``REDUCE`` without ``config.reduce`` or a ``MOVE`` without ``config.move``,
    is an illegal instruction.
    Every instruction takes two cycles to fetch and decode; ``SPMV`` and
    ``REDUCE`` then start all lanes and wait until none is busy, ``MOVE``
    starts the move engine and waits until it is not busy.

    Parameters
    ----------
    config : AcceleratorConfig

    Attributes
    ----------
    start : In(1)
        Begin a run (ignored while busy).
    clear : In(1)
        Clear ``done`` and ``error`` (ignored while busy).
    busy, done : Out(1)
    error : Out(ErrorCode)
    pc : Out
        The instruction executing, or the one that ended the run.
    retire : Out(1)
        Pulses when an instruction completes without error.
    host_addr : In
        Instruction-memory word address (32-bit halves: bit 0 selects the half).
    host_wdata, host_we : In
        Host write of one 32-bit half of an instruction.
    lane_start : Out(1)
        Starts every lane on ``desc``/``epi`` (``SPMV``).
    reduce_start : Out(1)
        Starts every lane on ``rdesc`` (``REDUCE``, with ``config.reduce``).
    lanes_busy, lanes_desc_error, lanes_overflow : In(1)
        OR of the lanes' ``busy``, ``desc_error`` and ``overflow``.
    move_start : Out(1)
        Starts the move engine on ``mdesc`` (``MOVE``).
    mdesc : Out(MoveArgs)
    move_busy, move_error : In(1)
        The move engine's ``busy`` and ``desc_error``.
    """

    def __init__(self, config):
        check_config(config)
        pc_width = config.imem_depth.bit_length()
        super().__init__(config, {
            "start": In(1), "clear": In(1),
            "busy": Out(1), "done": Out(1), "error": Out(ErrorCode), "pc": Out(pc_width),
            "retire": Out(1),
            "host_addr": In(pc_width), "host_wdata": In(32), "host_we": In(1),
            "lane_start": Out(1), "desc": Out(SpmvArgs), "epi": Out(EpiArgs),
            "reduce_start": Out(1), "rdesc": Out(ReduceArgs),
            "lanes_busy": In(1), "lanes_desc_error": In(1), "lanes_overflow": In(1),
            "move_start": Out(1), "mdesc": Out(MoveArgs),
            "move_busy": In(1), "move_error": In(1),
        })

    def elaborate(self, platform):
        config = self._config
        m = Module()

        m.submodules.imem = imem = memory.Memory(
            shape=INSN_WIDTH, depth=config.imem_depth, init=[])
        fetch = imem.read_port()
        host = imem.write_port(granularity=32)
        m.d.comb += [
            host.addr.eq(self.host_addr[1:]),
            host.data.eq(self.host_wdata.replicate(2)),
            host.en.eq(self.host_we << self.host_addr[0]),
        ]

        insn = Signal(Insn)
        m.d.comb += [insn.eq(fetch.data), fetch.addr.eq(self.pc)]

        def fail(code):
            m.d.sync += self.error.eq(code)
            m.next = "IDLE"

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [self.pc.eq(0), self.done.eq(0), self.error.eq(ErrorCode.NONE)]
                    m.next = "FETCH"
                with m.Elif(self.clear):
                    m.d.sync += [self.done.eq(0), self.error.eq(ErrorCode.NONE)]
            with m.State("FETCH"):
                m.d.comb += self.busy.eq(1)
                with m.If(self.pc == config.imem_depth):
                    fail(ErrorCode.PC_OVERRUN)
                with m.Else():
                    m.next = "DECODE"
            with m.State("DECODE"):
                m.d.comb += self.busy.eq(1)
                with m.Switch(insn.opcode):
                    with m.Case(Opcode.NOP):
                        m.d.comb += self.retire.eq(1)
                        m.d.sync += self.pc.eq(self.pc + 1)
                        m.next = "FETCH"
                    with m.Case(Opcode.HALT):
                        m.d.comb += self.retire.eq(1)
                        m.d.sync += self.done.eq(1)
                        m.next = "IDLE"
                    with m.Case(Opcode.SET_EPI):
                        m.d.comb += self.retire.eq(1)
                        m.d.sync += [self.epi.eq(insn.args.epi), self.pc.eq(self.pc + 1)]
                        m.next = "FETCH"
                    with m.Case(Opcode.SPMV):
                        enabled = Cat(insn.args.spmv.fmt == Format[formatspec.get(name).member]
                                      for name in config.formats).any()
                        with m.If(enabled):
                            m.d.sync += self.desc.eq(insn.args.spmv)
                            m.next = "DISPATCH"
                        with m.Else():
                            fail(ErrorCode.ILLEGAL_INSN)
                    if config.reduce:
                        with m.Case(Opcode.REDUCE):
                            m.d.sync += self.rdesc.eq(insn.args.reduce)
                            m.next = "DISPATCH_REDUCE"
                    if config.move:
                        with m.Case(Opcode.MOVE):
                            m.d.sync += self.mdesc.eq(insn.args.move)
                            m.next = "DISPATCH_MOVE"
                    with m.Default():
                        fail(ErrorCode.ILLEGAL_INSN)
            with m.State("DISPATCH"):
                m.d.comb += [self.busy.eq(1), self.lane_start.eq(1)]
                m.next = "EXECUTE"
            with m.State("DISPATCH_REDUCE"):
                m.d.comb += [self.busy.eq(1), self.reduce_start.eq(1)]
                m.next = "EXECUTE"
            with m.State("DISPATCH_MOVE"):
                m.d.comb += [self.busy.eq(1), self.move_start.eq(1)]
                m.next = "EXECUTE_MOVE"
            with m.State("EXECUTE_MOVE"):
                # The lanes' sticky flags belong to their last instruction, not to MOVE.
                m.d.comb += self.busy.eq(1)
                with m.If(~self.move_busy):
                    with m.If(self.move_error):
                        fail(ErrorCode.DESCRIPTOR)
                    with m.Else():
                        m.d.comb += self.retire.eq(1)
                        m.d.sync += self.pc.eq(self.pc + 1)
                        m.next = "FETCH"
            with m.State("EXECUTE"):
                m.d.comb += self.busy.eq(1)
                with m.If(~self.lanes_busy):
                    with m.If(self.lanes_desc_error):
                        fail(ErrorCode.DESCRIPTOR)
                    with m.Elif(self.lanes_overflow):
                        fail(ErrorCode.OVERFLOW)
                    with m.Else():
                        m.d.comb += self.retire.eq(1)
                        m.d.sync += self.pc.eq(self.pc + 1)
                        m.next = "FETCH"
        return m
