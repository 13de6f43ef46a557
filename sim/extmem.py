"""The simulators' external memory, and the accelerator with it attached.

:class:`SimulatedExtMemory` answers the external-memory port
(:class:`zeroskip.hdl.extmem.ExtMemorySignature`) with the timing of the
configuration: a read request taken in cycle ``a`` offers its first word in
cycle ``a + ext_latency`` and the next ones one per cycle (each as soon as the
one before is taken); it takes the next request in the cycle after its last
word. It takes a write in any cycle it serves no read. Its storage is the
image the host writes through ``EXT_ADDR``/``EXT_DATA``.
:class:`SimulationTop` is :class:`~zeroskip.hdl.top.ZeroskipTop` with the
memory attached, what the simulation backends run when ``ext_words`` > 0.
"""

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from zeroskip.core.config import check_generated
from zeroskip.core.isa import MemoryMap
from zeroskip.hdl.axil import AxiLiteSignature
from zeroskip.hdl.component import ConfigComponent, check_config
from zeroskip.hdl.extmem import EXT_WORD_WIDTH, ExtMemorySignature, ext_len_width
from zeroskip.hdl.top import ZeroskipTop

__all__ = ["SimulatedExtMemory", "SimulationTop"]


class SimulatedExtMemory(ConfigComponent):
    """``ext_words`` words behind the external-memory port, ``ext_latency`` cycles away.

    Parameters
    ----------
    config : AcceleratorConfig
        With an external memory of ``ext_latency`` >= 1 and
        ``ext_words_per_cycle`` = 1 (:func:`~zeroskip.core.config.check_generated`).

    Attributes
    ----------
    port : In(ExtMemorySignature)
    """

    def __init__(self, config):
        check_generated(check_config(config), ext_port=True)
        super().__init__(config, {"port": In(ExtMemorySignature(config))})

    def elaborate(self, platform):
        c = self._config
        m = Module()
        port = self.port
        m.submodules.storage = storage = memory.Memory(
            shape=unsigned(EXT_WORD_WIDTH), depth=c.ext_words, init=[])
        rd = storage.read_port(domain="comb")
        wr = storage.write_port()

        serving = Signal()
        addr = Signal(c.ext_addr_width)
        left = Signal(ext_len_width(c))
        wait = Signal(range(c.ext_latency + 1))
        m.d.comb += [
            port.read_req.ready.eq(~serving),
            port.write.ready.eq(~serving),
            wr.addr.eq(port.write.payload.addr),
            wr.data.eq(port.write.payload.data),
            wr.en.eq(port.write.valid & port.write.ready),
            rd.addr.eq(addr),
            port.read_data.payload.eq(rd.data),
            port.read_data.valid.eq(serving & (wait == 0) & (left != 0)),
        ]
        with m.If(port.read_req.valid & port.read_req.ready):
            m.d.sync += [serving.eq(1), addr.eq(port.read_req.payload.addr),
                         left.eq(port.read_req.payload.len), wait.eq(c.ext_latency - 1)]
        with m.Elif(serving & (wait != 0)):
            m.d.sync += wait.eq(wait - 1)
        with m.If(port.read_data.valid & port.read_data.ready):
            m.d.sync += [addr.eq(addr + 1), left.eq(left - 1)]
            with m.If(left == 1):
                m.d.sync += serving.eq(0)
        return m


class SimulationTop(ConfigComponent):
    """The accelerator with :class:`SimulatedExtMemory` on its external-memory port.

    Attributes
    ----------
    axil : In(AxiLiteSignature)
    irq : Out(1)
        As :class:`~zeroskip.hdl.top.ZeroskipTop`'s.
    """

    def __init__(self, config):
        check_generated(check_config(config), ext_port=True)
        self.memory_map = MemoryMap(config)
        super().__init__(config, {
            "axil": In(AxiLiteSignature(addr_width=MemoryMap.ADDR_WIDTH)),
            "irq": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.top = top = ZeroskipTop(self._config)
        m.submodules.ext = ext = SimulatedExtMemory(self._config)
        wiring.connect(m, wiring.flipped(self.axil), top.axil)
        wiring.connect(m, top.ext, ext.port)
        m.d.comb += self.irq.eq(top.irq)
        return m
