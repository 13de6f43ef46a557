"""The gather network: operand reads of every lane from the banked input vector."""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Shape, Signal, signed
from amaranth.lib import data, memory, stream
from amaranth.lib.wiring import In, Out

from zeroskip.hdl.arbiter import next_mask, or_tree, round_robin
from zeroskip.hdl.component import ConfigComponent, check_config
from zeroskip.hdl.layouts import gather_request_layout, gather_response_layout

__all__ = ["Gather"]


class Gather(ConfigComponent):
    """Gather network: each lane reads ``x[addr]`` from ``x_banks`` banks.

    Element ``j`` of the input vector lives in bank ``j % x_banks`` at address
    ``j // x_banks``. Every lane has a request stream (``addr``, ``skip``,
    ``tag``) and a response stream (``data``, ``tag``); responses come back in
    the order their requests were accepted. A request with ``skip`` set reads
    no bank, never conflicts and answers with ``data`` 0.

    Arbitration: bank ``b`` keeps a pointer ``rr[b]`` (0 after reset and in the
    cycle after ``rr_reset``). In every cycle, among the lanes that are *able to
    accept* (see below) and offer a valid, non-skip request for bank ``b``, the
    bank grants the first lane at or after ``rr[b]`` in cyclic order and sets
    ``rr[b]`` to that lane + 1 (mod ``pes``). The grant is ``req[p].ready`` in
    the same cycle as ``req[p].valid``.

    Timing: a request accepted in cycle ``t`` is offered on ``resp[p]`` from
    cycle ``t + LATENCY`` (``LATENCY`` is 2; the response stream is driven from
    registers). A lane whose response stream is always ready sustains one
    accepted request per cycle.

    Able to accept: a lane holds at most ``QUEUE_DEPTH`` (3) requests between
    acceptance and response, counting the one reading its bank (accepted in
    the previous cycle) and those waiting in the lane's output queue. Lane
    ``p`` is able to accept in a cycle when it holds fewer than 3, a condition
    on registers only (``resp[p].ready`` does not reach ``req[p].ready``). A
    lane that is not able to accept is not ready, takes no part in arbitration
    and is not counted in ``stall``. With ``resp[p].ready`` always high a lane
    holds at most 2 and is always able to accept.

    Parameters
    ----------
    config : AcceleratorConfig
        Number of lanes (``pes``), value width, input-vector depth and banks.
    tag_shape : shape-castable
        Shape of the tag that travels with each request to its response.

    Raises
    ------
    TypeError
        If ``config`` is not an :class:`AcceleratorConfig` or ``tag_shape``
        is not shape-castable.

    Attributes
    ----------
    req : In(stream.Signature(gather_request_layout(config, tag_shape))).array(pes)
        Requests of each lane.
    resp : Out(stream.Signature(gather_response_layout(config, tag_shape))).array(pes)
        Responses of each lane.
    stall : Out(pes)
        Bit ``p`` is high in a cycle where lane ``p`` offers a non-skip request
        and is able to accept, but another lane won its bank.
    rr_reset : In(1)
        Resets every round-robin pointer to 0 (at the next clock edge).
    host_addr : In(col_width)
        Host write address into the input vector.
    host_wdata : In(signed(value_width))
        Host write data.
    host_we : In(1)
        Host write enable: ``x[host_addr] := host_wdata``.
    scan_en : In(1)
    scan_addr : In(bank_addr_width)
        Column mode's read of a whole bank row: every bank reads its word
        ``scan_addr`` (elements ``scan_addr * x_banks + b``). Only while no
        lane offers a request (the lanes are in column mode); low otherwise.
    scan_data : Out(data.ArrayLayout(signed(value_width), x_banks))
        The bank row read by ``scan_en`` in the previous cycle.
    """

    #: Cycles from the acceptance of a request to its response.
    LATENCY = 2
    #: Requests a lane may hold between acceptance and response.
    QUEUE_DEPTH = 3

    def __init__(self, config, *, tag_shape):
        check_config(config)
        try:
            Shape.cast(tag_shape)
        except (TypeError, ValueError):
            raise TypeError(f"tag_shape must be a shape, not {tag_shape!r}") from None
        self._tag_shape = tag_shape
        pes = config.pes
        super().__init__(config, {
            "req": In(stream.Signature(gather_request_layout(config, tag_shape))).array(pes),
            "resp": Out(stream.Signature(gather_response_layout(config, tag_shape))).array(pes),
            "stall": Out(pes),
            "rr_reset": In(1),
            "host_addr": In(config.col_width),
            "host_wdata": In(signed(config.value_width)),
            "host_we": In(1),
            "scan_en": In(1),
            "scan_addr": In(config.bank_addr_width),
            "scan_data": Out(data.ArrayLayout(signed(config.value_width), config.x_banks)),
        })

    @property
    def tag_shape(self):
        return self._tag_shape

    def elaborate(self, platform):
        config = self._config
        pes = config.pes
        banks = config.x_banks
        sel_bits = (banks - 1).bit_length()
        depth = config.x_depth // banks
        m = Module()

        # Banks: one sync read port for the lanes, one write port for the host.
        read_ports = []
        for b in range(banks):
            mem = memory.Memory(shape=signed(config.value_width), depth=depth, init=[])
            m.submodules[f"bank{b}"] = mem
            wp = mem.write_port()
            m.d.comb += [
                wp.addr.eq(self.host_addr[sel_bits:]),
                wp.data.eq(self.host_wdata),
                wp.en.eq(self.host_we & (self.host_addr[:sel_bits] == b)),
            ]
            read_ports.append(mem.read_port())

        # Per lane: "able to accept" from registered occupancy, bank requests.
        able = Signal(pes)
        want = [Signal(banks, name=f"want{p}") for p in range(pes)]
        for p in range(pes):
            req = self.req[p].payload
            bank = req.addr[:sel_bits]
            bids = self.req[p].valid & ~req.skip & able[p]
            m.d.comb += want[p].eq(Cat(bids & (bank == b) for b in range(banks)))

        # Round-robin arbitration, one arbiter per bank.
        grants = []
        for b in range(banks):
            requests = Signal(pes, name=f"bank{b}_requests")
            mask = Signal(pes, name=f"bank{b}_rr_mask")
            grant = Signal(pes, name=f"bank{b}_grant")
            m.d.comb += [
                requests.eq(Cat(want[p][b] for p in range(pes))),
                grant.eq(round_robin(requests, mask)),
            ]
            with m.If(self.rr_reset):
                m.d.sync += mask.eq(0)
            with m.Elif(requests.any()):
                # Lanes after the granted one: the new pointer is grant + 1.
                m.d.sync += mask.eq(next_mask(grant, pes))
            port = read_ports[b]
            m.d.comb += [
                port.en.eq(requests.any() | self.scan_en),
                port.addr.eq(Mux(self.scan_en, self.scan_addr, or_tree(
                    Mux(grant[p], self.req[p].payload.addr[sel_bits:], 0)
                    for p in range(pes)))),
                self.scan_data[b].eq(port.data),
            ]
            grants.append(grant)

        rdata = Array(port.data for port in read_ports)
        data_shape = signed(config.value_width)
        for p in range(pes):
            req = self.req[p]
            resp = self.resp[p]
            granted = Signal(name=f"granted{p}")
            m.d.comb += [
                granted.eq(or_tree(grant[p] for grant in grants)),
                req.ready.eq(able[p] & (req.payload.skip | granted)),
                self.stall[p].eq(req.valid & ~req.payload.skip & able[p] & ~granted),
            ]

            # Stage 1: the request reading its bank.
            s1_valid = Signal(name=f"lane{p}_s1_valid")
            s1_skip = Signal(name=f"lane{p}_s1_skip")
            s1_bank = Signal(range(banks), name=f"lane{p}_s1_bank")
            s1_tag = Signal(self._tag_shape, name=f"lane{p}_s1_tag")
            m.d.sync += s1_valid.eq(req.valid & req.ready)
            with m.If(req.valid & req.ready):
                m.d.sync += [
                    s1_skip.eq(req.payload.skip),
                    s1_bank.eq(req.payload.addr[:sel_bits]),
                    s1_tag.eq(req.payload.tag),
                ]

            # Stage 2: the lane's output queue; its head drives the response.
            count = Signal(range(self.QUEUE_DEPTH + 1), name=f"lane{p}_count")
            entries = [Signal(resp.payload.shape(), name=f"lane{p}_entry{i}")
                       for i in range(self.QUEUE_DEPTH)]
            incoming = Signal(resp.payload.shape(), name=f"lane{p}_incoming")
            pop = Signal(name=f"lane{p}_pop")
            windex = Signal(range(self.QUEUE_DEPTH + 1), name=f"lane{p}_windex")
            m.d.comb += [
                able[p].eq(count + s1_valid < self.QUEUE_DEPTH),
                incoming.data.eq(Mux(s1_skip, Const(0, data_shape), rdata[s1_bank])),
                incoming.tag.eq(s1_tag),
                resp.valid.eq(count != 0),
                resp.payload.eq(entries[0]),
                pop.eq(resp.valid & resp.ready),
                windex.eq(count - pop),
            ]
            m.d.sync += count.eq(count + s1_valid - pop)
            for i, entry in enumerate(entries):
                with m.If(s1_valid & (windex == i)):
                    m.d.sync += entry.eq(incoming)
                if i + 1 < len(entries):
                    with m.Elif(pop):
                        m.d.sync += entry.eq(entries[i + 1])

        return m
