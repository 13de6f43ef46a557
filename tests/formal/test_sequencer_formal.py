"""The sequencer's status, proved with any program in its instruction memory
(written by the host at any time) and any answers from the lanes and the move
engine, both assumed to drop ``lanes_busy`` (``move_busy``) within
``LANE_BOUND`` cycles:

- ``done`` and ``error`` never lost: outside a run they change only by
  ``start`` or ``clear``; a run clears them when it starts;
- a run always ends with ``done`` or an error, never both;
- it never hangs: a run lasts at most ``RUN_BOUND`` cycles (every
  instruction takes at most ``4 + LANE_BOUND`` cycles and the program counter
  only grows until ``HALT``, an error or ``PC_OVERRUN``), after which the
  sequencer is idle.

A bounded model check from reset of more than ``RUN_BOUND`` cycles, so every
run the design can make is covered from its start to its end. It runs with
the yices solver (``SOLVER``): seconds, where z3 takes about 15 minutes.
"""

from amaranth.hdl import Assert, Assume, Signal

from zeroskip.core.config import AcceleratorConfig
from zeroskip.core.isa import ErrorCode
from zeroskip.hdl.sequencer import Sequencer
from zeroskip.sim.formal import mutant, past

CONFIG = AcceleratorConfig(pes=2, value_width=8, acc_width=16, x_depth=16, row_depth=4,
                           imem_depth=4)
LANE_BOUND = 2
RUN_BOUND = CONFIG.imem_depth * (4 + LANE_BOUND) + 1
DEPTH = RUN_BOUND + 4
SOLVER = "yices"


def sequencer_properties(m, dut):
    for name, waits in (("lanes", dut.lanes_busy), ("move", dut.move_busy)):
        waited = Signal(range(LANE_BOUND + 2), name=f"{name}_waited")
        with m.If(waits):
            m.d.sync += waited.eq(waited + 1)
        with m.Else():
            m.d.sync += waited.eq(0)
        m.d.comb += Assume(waited <= LANE_BOUND)

    busy, done, error = past(m, dut.busy), past(m, dut.done), past(m, dut.error)
    start, clear = past(m, dut.start), past(m, dut.clear)
    error_now = dut.error.as_value() != ErrorCode.NONE
    m.d.comb += Assert(~(dut.done & error_now), "done and error together")
    with m.If(~busy & ~start & ~clear):
        m.d.comb += Assert((dut.done == done) & (dut.error.as_value() == error),
                           "status changed outside a run")
    with m.If(dut.busy & ~busy):
        m.d.comb += Assert(~dut.done & ~error_now, "a run started with an old status")
    with m.If(busy & ~dut.busy):
        m.d.comb += Assert(dut.done | error_now, "a run ended with neither done nor error")
    run = Signal(range(RUN_BOUND + 2))
    with m.If(dut.busy):
        m.d.sync += run.eq(run + 1)
    with m.Else():
        m.d.sync += run.eq(0)
    m.d.comb += Assert(run <= RUN_BOUND, f"a run longer than {RUN_BOUND} cycles")


def test_sequencer_bmc(run_proof):
    run_proof(Sequencer(CONFIG), sequencer_properties, name="sequencer", mode="bmc",
              depth=DEPTH, solver=SOLVER)


def test_sequencer_mutant_halt_loses_done(refute):
    Mutant = mutant(Sequencer, "m.d.sync += self.done.eq(1)", "m.d.sync += self.done.eq(0)")
    refute(Mutant(CONFIG), sequencer_properties,
           expect="a run ended with neither done nor error", name="sequencer_mutant",
           mode="bmc", depth=DEPTH, solver=SOLVER)
