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
    LoadArgs,
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

    With an external memory (``config.ext_words``), ``LOAD`` is decided in
    its decode cycle: a failing operand check (``load_error``) is
    ``DESCRIPTOR``, a load of no words retires, any other waits there while
    the DMA engine is ``load_full`` and is then pushed to it and retires.
    ``SYNC`` and ``HALT`` wait in their decode cycle while the DMA engine is
    busy. A run that stops with an error waits, busy, until the DMA engine
    has dropped its queued loads (``load_flush``) and finished the one under
    way. Without an external memory ``LOAD`` and ``SYNC`` are illegal.

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
    load_args : Out(LoadArgs)
        The operands of the ``LOAD`` in decode (valid with ``load_push``).
    load_push, load_flush : Out(1)
    load_error, load_full, loads_busy : In(1)
        The DMA engine's ``push``, ``flush``, ``args_error``, ``full`` and ``busy``.
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
            "load_args": Out(LoadArgs), "load_push": Out(1), "load_flush": Out(1),
            "load_error": In(1), "load_full": In(1), "loads_busy": In(1),
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
            if config.ext_words:
                with m.If(self.loads_busy):
                    m.next = "ABORT"
                with m.Else():
                    m.next = "IDLE"
            else:
                m.next = "IDLE"

        def retire():
            m.d.comb += self.retire.eq(1)
            m.d.sync += self.pc.eq(self.pc + 1)
            m.next = "FETCH"

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
                        retire()
                    with m.Case(Opcode.HALT):
                        # Without an external memory no load is ever busy.
                        with m.If(~self.loads_busy if config.ext_words else 1):
                            m.d.comb += self.retire.eq(1)
                            m.d.sync += self.done.eq(1)
                            m.next = "IDLE"
                    with m.Case(Opcode.SET_EPI):
                        m.d.sync += self.epi.eq(insn.args.epi)
                        retire()
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
                    if config.ext_words:
                        self._decode_load(m, insn, fail, retire)
                    with m.Default():
                        fail(ErrorCode.ILLEGAL_INSN)
            with m.State("ABORT"):
                m.d.comb += [self.busy.eq(1), self.load_flush.eq(1)]
                with m.If(~self.loads_busy):
                    m.next = "IDLE"
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
                        retire()
            with m.State("EXECUTE"):
                m.d.comb += self.busy.eq(1)
                with m.If(~self.lanes_busy):
                    with m.If(self.lanes_desc_error):
                        fail(ErrorCode.DESCRIPTOR)
                    with m.Elif(self.lanes_overflow):
                        fail(ErrorCode.OVERFLOW)
                    with m.Else():
                        retire()
        return m

    def _decode_load(self, m, insn, fail, retire):
        """The decode cycle of ``LOAD`` and ``SYNC`` (with an external memory)."""
        with m.Case(Opcode.LOAD):
            m.d.comb += self.load_args.eq(insn.args.load)
            with m.If(self.load_error):
                fail(ErrorCode.DESCRIPTOR)
            with m.Elif(insn.args.load.count == 0):
                retire()
            with m.Elif(~self.load_full):
                m.d.comb += self.load_push.eq(1)
                retire()
        with m.Case(Opcode.SYNC):
            with m.If(~self.loads_busy):
                retire()
