"""Data movement between the host and the accelerator, counted and timed.

:func:`count_program` counts the words one run of a program moves by running
the host driver itself (:class:`~zeroskip.sim.driver.Driver`) against a bus
that answers like an idle accelerator and records every transaction: what the
driver does is what is counted, for ``run`` and for every layer of ``infer``.
Each transaction is classed by the window it addresses:

``code``
    microcode (two 32-bit words per instruction), written before each tile;
``weights``
    the lane images (row pointers, nonzeros, meta words, biases), or a
    streamed program's external-memory image (through ``EXT_DATA``, once);
``inputs``
    words written to X;
``results``
    words read from the lanes' ``out``;
``control``
    identification, start, one status read per tile (the fewest: a run that
    ends before the first poll) and the counters.

:func:`link_seconds` converts a count to time on a link (:data:`LINKS`):

``axi4-lite``
    the simulators' host port, :class:`~zeroskip.hdl.axil.AxiLiteSlave`:
    :data:`AXIL_WRITE_CYCLES` cycles per word written and
    :data:`AXIL_READ_CYCLES` per word read (its state machine, with a manager
    that keeps its valid and ready signals up), at the accelerator's clock;
``uart``
    a board's UART bridge (:mod:`zeroskip.boards.protocol`): every bus
    transaction is split into bursts of at most ``MAX_BURST`` words; a write
    burst of n words sends ``COMMAND_HEADER + 4n + 2`` bytes and receives a
    ``RESPONSE_HEADER + RESPONSE_TRAILER`` byte acknowledgement, a read burst
    sends ``COMMAND_HEADER + 2`` bytes and receives ``RESPONSE_HEADER + 4n +
    RESPONSE_TRAILER``; each byte is 10 bits on the line (8N1) at
    ``DEFAULT_BAUDRATE``. The USB adapter's latency and the bridge's turn
    around are not counted, so the time is a lower bound.

The driver runs the link in turn with the accelerator (load, run, read), so an
end-to-end time is the compute time plus the transfer time.
"""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np

from zeroskip.boards import protocol
from zeroskip.core.isa import EXT_BURST, HARDWARE_ID, MemoryMap, Reg, Region
from zeroskip.hdl import axil
from zeroskip.sim.driver import Driver, Session

__all__ = ["KINDS", "LINKS", "AXIL_WRITE_CYCLES", "AXIL_READ_CYCLES", "UART_BITS_PER_BYTE",
           "Transfers", "count_program", "count_resident", "count_ext_load", "link_seconds",
           "link_for_backend"]

#: Kinds of transfer, in the order they are shown.
KINDS = ("code", "weights", "inputs", "activations", "results", "control")
#: Links a count can be timed on.
LINKS = ("axi4-lite", "uart")
#: Accelerator cycles per AXI4-Lite word (hdl/axil.py: IDLE, WRITE, WRITE_RESP).
AXIL_WRITE_CYCLES = 3
#: IDLE, READ, ``READ_LATENCY - 1`` cycles waiting for the register bus's
#: answer, READ_DATA, READ_RESP.
AXIL_READ_CYCLES = 3 + axil.READ_LATENCY
#: Start bit, 8 data bits, stop bit.
UART_BITS_PER_BYTE = 10

_REGION_KIND = {Region.IMEM: "code", Region.PTR: "weights", Region.NZ: "weights",
                Region.META: "weights", Region.BIAS: "weights", Region.X: "inputs",
                Region.OUT: "results", Region.CSR: "control"}


@dataclasses.dataclass
class Transfers:
    """Transactions, as ``{(kind, op, words): count}`` (``op`` ``"write"`` or ``"read"``)."""

    transactions: dict = dataclasses.field(default_factory=dict)

    def add(self, kind, op, words, count=1):
        key = (kind, op, int(words))
        self.transactions[key] = self.transactions.get(key, 0) + count

    def scaled(self, factor, *, rename=None):
        """These transactions ``factor`` times, kinds renamed by ``rename`` (a dict)."""
        out = Transfers()
        for (kind, op, words), count in self.transactions.items():
            out.add((rename or {}).get(kind, kind), op, words, count * factor)
        return out

    def __iadd__(self, other):
        for (kind, op, words), count in other.transactions.items():
            self.add(kind, op, words, count)
        return self

    def words(self, kind=None):
        """Words moved (of one kind, or all)."""
        return sum(words * count for (k, _, words), count in self.transactions.items()
                   if kind is None or k == kind)

    def kinds(self):
        return [kind for kind in KINDS if any(k == kind for k, _, _ in self.transactions)]


class _CountingBus:
    """A bus that answers like an idle accelerator of ``config`` and counts every transaction."""

    def __init__(self, config):
        self.map = MemoryMap(config)
        self.transfers = Transfers()

    @staticmethod
    def _kind(addr):
        if int(Reg.EXT_DATA) <= addr < int(Reg.EXT_DATA) + 4 * EXT_BURST:
            return "weights"        # a streamed program's lane images, into the external memory
        return _REGION_KIND[Region(addr >> MemoryMap.REGION_SHIFT)]

    async def write(self, addr, words):
        self.transfers.add(self._kind(addr), "write", len(words))

    async def read(self, addr, count):
        self.transfers.add(self._kind(addr), "read", count)
        if addr == int(Reg.ID):
            return [HARDWARE_ID]
        if addr == int(Reg.FINGERPRINT):
            return [self.map.fingerprint_word()]
        return [0] * count      # STATUS 0: not busy, no error


def _zero_operand(program):
    rows, cols = program.shape
    k = getattr(program, "rhs_columns", None) if getattr(program, "is_matrix", False) else None
    return np.zeros((cols, k) if k else cols, dtype=np.int64)


def count_program(program):
    """The :class:`Transfers` of one run of ``program`` by the host driver."""
    bus = _CountingBus(program.config)
    driver = Driver(bus, program.config)
    asyncio.run(driver.run(program, _zero_operand(program)))
    return bus.transfers


def count_ext_load(ext, config):
    """The :class:`Transfers` of the host writing the external-memory image ``ext``
    once (``EXT_ADDR``, then ``EXT_DATA`` bursts: ``weights``)."""
    bus = _CountingBus(config)
    asyncio.run(Driver(bus, config).write_ext(0, ext))
    return bus.transfers


def count_resident(program):
    """``(load, batch)``: the :class:`Transfers` of a resident
    :class:`~zeroskip.sim.driver.Session` of ``program``, its one load
    (identification, code, weights) and each run after it (X, start, poll,
    counters, results)."""
    bus = _CountingBus(program.config)
    session = Session(Driver(bus, program.config), program)
    asyncio.run(session.load())
    load, bus.transfers = bus.transfers, Transfers()
    asyncio.run(session.run(_zero_operand(program)))
    return load, bus.transfers


def _uart_bytes(op, words):
    """Bytes on the line (both directions) of one transaction of ``words`` words."""
    total = 0
    p = protocol
    for start in range(0, words, p.MAX_BURST):
        n = min(p.MAX_BURST, words - start)
        if op == "write":
            total += p.COMMAND_HEADER + 4 * n + 2 + p.RESPONSE_HEADER + p.RESPONSE_TRAILER
        else:
            total += p.COMMAND_HEADER + 2 + p.RESPONSE_HEADER + 4 * n + p.RESPONSE_TRAILER
    return total


def link_seconds(transfers, link, *, clock_hz=None, baudrate=protocol.DEFAULT_BAUDRATE):
    """``{kind: seconds}`` of ``transfers`` on ``link`` (``clock_hz`` for AXI4-Lite)."""
    if link not in LINKS:
        raise ValueError(f"unknown link {link!r}; choose one of {', '.join(LINKS)}")
    seconds = {}
    for (kind, op, words), count in transfers.transactions.items():
        if link == "axi4-lite":
            cycles = words * (AXIL_WRITE_CYCLES if op == "write" else AXIL_READ_CYCLES)
            time = cycles / clock_hz
        else:
            time = _uart_bytes(op, words) * UART_BITS_PER_BYTE / baudrate
        seconds[kind] = seconds.get(kind, 0.0) + time * count
    return seconds


def link_for_backend(backend):
    """The link a backend's host port is: the UART for a board, AXI4-Lite otherwise."""
    return "uart" if backend == "board" else "axi4-lite"


def describe_link(link, *, clock_mhz=None, baudrate=protocol.DEFAULT_BAUDRATE):
    """One line stating a link's rate."""
    if link == "axi4-lite":
        return (f"AXI4-Lite at the accelerator's {clock_mhz:.4g} MHz clock, "
                f"{AXIL_WRITE_CYCLES} cycles per word written, {AXIL_READ_CYCLES} per word "
                f"read (hdl/axil.py)")
    return (f"UART at {baudrate:,} baud, 8N1 ({UART_BITS_PER_BYTE} bits a byte), bursts of at "
            f"most {protocol.MAX_BURST} words: a write of n words {protocol.COMMAND_HEADER} + "
            f"4n + 2 bytes out and {protocol.RESPONSE_HEADER + protocol.RESPONSE_TRAILER} back, "
            f"a read {protocol.COMMAND_HEADER + 2} out and "
            f"{protocol.RESPONSE_HEADER + protocol.RESPONSE_TRAILER} + 4n back "
            f"(boards/protocol.py); USB latency not counted")


def count_network(compiled, run):
    """The :class:`Transfers` of a whole network run (:func:`zeroskip.app.nn.compile.run_network`).

    Every layer's programs run once per batch (the driver loads each tile's
    code and weights before it runs it), so a layer's count is one program
    run's times its batches. The words the host copies between layers (a
    layer's results read, the next layer's X written) are ``activations``;
    the first layer's X is ``inputs``, the last layer's results ``results``.
    A chained run (``run.chained``) is its one program's count times the batches;
    a resident one (``run.resident``) its session's one load and its runs, one per batch.
    A streamed network (``compiled.ext``) writes its external-memory image once
    (:func:`count_ext_load`) and no program writes it again: its batches move
    code, activations, results and control only (:func:`count_streamed`).
    """
    total = Transfers()
    if getattr(run, "chained", None) is not None:
        # One program per batch: the host moves no activation.
        batches = run.padded // compiled.batch
        if getattr(run, "resident", False):
            load, batch = count_resident(run.chained.program)
            total += load
            total += batch.scaled(batches)
            return total
        return count_program(run.chained.program).scaled(batches)
    if getattr(compiled, "ext", None) is not None:
        load, batches = count_streamed(compiled, run)
        total += load
        total += batches
        return total
    return _count_layers(compiled, run)


def count_streamed(compiled, run):
    """``(load, batches)`` of a streamed network's run: the :class:`Transfers` of the
    one write of its external-memory image and of every batch of every layer after
    it (each program run without writing the image)."""
    load = count_ext_load(compiled.ext, compiled.config)
    return load, _count_layers(compiled, run, without_ext=True)


def _count_layers(compiled, run, *, without_ext=False):
    """Every layer's programs, once per batch (their ``ext`` left out ``without_ext``)."""
    total = Transfers()
    last = len(compiled.layers) - 1
    for index, layer in enumerate(compiled.layers):
        batches = run.padded_per_layer[index] // compiled.batch
        rename = {}
        if index > 0:
            rename["inputs"] = "activations"
        if index < last:
            rename["results"] = "activations"
        for _, program in layer.groups:
            if without_ext:
                program = dataclasses.replace(program, ext=None)
            total += count_program(program).scaled(batches, rename=rename)
    return total


#: Kinds loaded once for the inputs a run serves (amortised over them).
ONE_OFF = ("code", "weights")


def data_movement(transfers, *, inferences, clock_mhz, backend, compute_seconds, amortisation,
                  baudrate=protocol.DEFAULT_BAUDRATE):
    """The ``data_movement`` report of a run that served ``inferences`` inferences.

    Parameters
    ----------
    transfers : Transfers
        Everything the run moved.
    inferences : int
        Inferences served (the count is divided by it: one-off loads are
        amortised over them).
    clock_mhz : float
        The accelerator's clock (AXI4-Lite's rate).
    backend : str
        Picks the link of ``end_to_end_seconds_per_inference`` (:func:`link_for_backend`).
    compute_seconds : float
        Compute time per inference.
    amortisation : str
        The rule by which one-off loads are shared, stated in the report.

    Returns
    -------
    dict
    """
    kinds = transfers.kinds()
    words = {kind: transfers.words(kind) / inferences for kind in kinds}
    links = {}
    for link in LINKS:
        seconds = link_seconds(transfers, link, clock_hz=clock_mhz * 1e6, baudrate=baudrate)
        per = {kind: seconds.get(kind, 0.0) / inferences for kind in kinds}
        moved = sum(per.values())
        links[link] = {
            "rate": describe_link(link, clock_mhz=clock_mhz, baudrate=baudrate),
            "seconds_per_inference": per,
            "transfer_seconds_per_inference": moved,
            "end_to_end_seconds_per_inference": compute_seconds + moved,
        }
    link = link_for_backend(backend)
    return {
        "link": link,
        "words_per_inference": words,
        "total_words_per_inference": sum(words.values()),
        "one_off": [kind for kind in kinds if kind in ONE_OFF],
        "per_inference": [kind for kind in kinds if kind not in ONE_OFF],
        "amortisation": amortisation,
        "counted": "by running the host driver against a counting bus (zeroskip.app.transfers)",
        "compute_seconds_per_inference": compute_seconds,
        "end_to_end_seconds_per_inference": links[link]["end_to_end_seconds_per_inference"],
        "links": links,
    }
