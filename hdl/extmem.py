"""The external-memory port: the streams between the accelerator and a board's memory.

The accelerator is the initiator. Three :mod:`amaranth.lib.stream` streams with
full valid/ready back-pressure:

- ``read_req``: a read of ``len`` consecutive 32-bit words from word address
  ``addr`` (``len`` >= 1);
- ``read_data``: the words read, one per transfer, in the order of the
  requests and, within a request, of the addresses;
- ``write``: one 32-bit word ``data`` to word address ``addr``.

A memory answers the requests in order; it may take any number of cycles. A
write and a later read of the same word are ordered only if the write was
taken before the read request (the accelerator never has both outstanding:
the host writes while no ``LOAD`` runs). A board attaches its controller
(LiteDRAM, an SDR controller) behind these streams;
:class:`zeroskip.sim.extmem.SimulatedExtMemory` is the simulators' memory.
"""

from amaranth.hdl import unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["EXT_WORD_WIDTH", "ext_len_width", "ExtReadRequest", "ExtWrite",
           "ExtMemorySignature"]

#: Bits of an external-memory word.
EXT_WORD_WIDTH = 32


def ext_len_width(config):
    """Bits of a read request's ``len``: one ``LOAD``'s ``pes * count`` words at most."""
    return (config.pes * 0xFFFF).bit_length()


class ExtReadRequest(data.StructLayout):
    """A read request: ``len`` words from word ``addr``."""

    def __init__(self, config):
        super().__init__({"addr": unsigned(config.ext_addr_width),
                          "len": unsigned(ext_len_width(config))})


class ExtWrite(data.StructLayout):
    """A write request: word ``data`` to word ``addr``."""

    def __init__(self, config):
        super().__init__({"addr": unsigned(config.ext_addr_width),
                          "data": unsigned(EXT_WORD_WIDTH)})


class ExtMemorySignature(wiring.Signature):
    """The external-memory port, from the accelerator's (the initiator's) side.

    Parameters
    ----------
    config : AcceleratorConfig
        With an external memory (``ext_words`` > 0): the widths of the
        addresses and lengths.
    """

    def __init__(self, config):
        if not config.ext_words:
            raise ValueError("the external-memory port needs ext_words > 0")
        self.config = config
        super().__init__({
            "read_req": Out(stream.Signature(ExtReadRequest(config))),
            "read_data": In(stream.Signature(unsigned(EXT_WORD_WIDTH))),
            "write": Out(stream.Signature(ExtWrite(config))),
        })
