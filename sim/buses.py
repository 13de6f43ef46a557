"""Bus adapters: the ISA model, the Amaranth simulator and cocotbext-axi.

Each adapter gives :class:`~zeroskip.sim.driver.Driver` the two coroutines it
needs, ``write(addr, words)`` and ``read(addr, count)``.
"""

from zeroskip.core.errors import DeviceError

__all__ = ["ModelBus", "PysimBus", "CocotbBus", "RecordingBus"]

_SLVERR = 2


def _is_slverr(resp):
    return getattr(resp, "value", resp) == _SLVERR


def _bus_error(kind, addr):
    return DeviceError(f"the accelerator rejected the {kind} of address 0x{addr:07x} (SLVERR)")


class ModelBus:
    """The bus of the ISA model (:class:`~zeroskip.firmware.model.Machine`)."""

    def __init__(self, machine):
        from zeroskip.firmware.model import BusError
        self.machine = machine
        self._bus_error_type = BusError

    async def write(self, addr, words):
        try:
            self.machine.write_words(addr, words)
        except self._bus_error_type as error:
            raise _bus_error("write", error.address) from None

    async def read(self, addr, count):
        try:
            return self.machine.read_words(addr, count).tolist()
        except self._bus_error_type as error:
            raise _bus_error("read", error.address) from None


class PysimBus:
    """AXI4-Lite manager inside an Amaranth simulator testbench.

    Parameters
    ----------
    ctx : SimulatorContext
    axil : the ``axil`` port of :class:`~zeroskip.hdl.top.ZeroskipTop`
    """

    def __init__(self, ctx, axil):
        self.ctx = ctx
        self.axil = axil

    async def write(self, addr, words):
        ctx, axil = self.ctx, self.axil
        for index, word in enumerate(int(w) for w in words):
            ctx.set(axil.awaddr, addr + 4 * index)
            ctx.set(axil.wdata, word)
            ctx.set(axil.wstrb, 0b1111)
            ctx.set(axil.awvalid, 1)
            ctx.set(axil.wvalid, 1)
            await ctx.tick().until(axil.awready)
            ctx.set(axil.awvalid, 0)
            ctx.set(axil.wvalid, 0)
            ctx.set(axil.bready, 1)
            *_, resp = await ctx.tick().sample(axil.bresp).until(axil.bvalid)
            ctx.set(axil.bready, 0)
            if _is_slverr(resp):
                raise _bus_error("write", addr + 4 * index)

    async def read(self, addr, count):
        ctx, axil = self.ctx, self.axil
        words = []
        for index in range(count):
            ctx.set(axil.araddr, addr + 4 * index)
            ctx.set(axil.arvalid, 1)
            await ctx.tick().until(axil.arready)
            ctx.set(axil.arvalid, 0)
            ctx.set(axil.rready, 1)
            *_, data, resp = await ctx.tick().sample(axil.rdata, axil.rresp).until(axil.rvalid)
            ctx.set(axil.rready, 0)
            if _is_slverr(resp):
                raise _bus_error("read", addr + 4 * index)
            words.append(data)
        return words


class CocotbBus:
    """AXI4-Lite through cocotbext-axi's ``AxiLiteMaster``."""

    def __init__(self, master):
        self.master = master

    async def write(self, addr, words):
        data = b"".join(int(w).to_bytes(4, "little") for w in words)
        resp = await self.master.write(addr, data)
        if int(resp.resp) != 0:
            raise _bus_error("write", addr)

    async def read(self, addr, count):
        resp = await self.master.read(addr, 4 * count)
        if int(resp.resp) != 0:
            raise _bus_error("read", addr)
        data = bytes(resp.data)
        return [int.from_bytes(data[4 * i:4 * i + 4], "little") for i in range(count)]


class RecordingBus:
    """Passes every access on to ``bus`` and remembers every word written through it,
    as ``(byte address, word)`` in ``writes``."""

    def __init__(self, bus):
        self.bus = bus
        self.writes = []

    async def write(self, addr, words):
        self.writes.extend((addr + 4 * i, int(w) & 0xFFFF_FFFF) for i, w in enumerate(words))
        await self.bus.write(addr, words)

    async def read(self, addr, count):
        return await self.bus.read(addr, count)
