"""The gather network: operand reads of every lane from its cluster's copy of x.

The lanes form clusters of ``config.cluster_lanes`` lanes. Each cluster owns a
copy of the input vector in ``x_banks`` block-RAM banks, written by one
broadcast from the host port, and arbitrates those banks among its own lanes
only: the wiring grows linearly with the lanes (a cluster's crossbar is
``cluster_lanes`` x ``x_banks``). The grant and the bank address are
registered before the read, so no arbitration path reaches a memory.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Shape, Signal, signed
from amaranth.lib import data, memory, stream
from amaranth.lib.wiring import In, Out

from zeroskip.hdl.arbiter import next_mask, or_tree, round_robin
from zeroskip.hdl.component import ConfigComponent, check_config
from zeroskip.hdl.formats import column_mode
from zeroskip.hdl.layouts import gather_request_layout, gather_response_layout

__all__ = ["Gather"]


class Gather(ConfigComponent):
    """Gather network: each lane reads ``x[addr]`` from its cluster's copy of x.

    Lane ``p`` belongs to cluster ``p // cluster_lanes``. Every cluster holds
    the whole input vector in ``x_banks`` banks: element ``j`` lives in bank
    ``j % x_banks`` at address ``j // x_banks``; a host write goes to every
    cluster. Every lane has a request stream (``addr``, ``skip``,
    ``tag``) and a response stream (``data``, ``tag``); responses come back in
    the order their requests were accepted. A request with ``skip`` set reads
    no bank, never conflicts and answers with ``data`` 0.

    Arbitration: each bank of a cluster keeps a pointer ``rr`` to a lane of
    the cluster (0 after reset and in the cycle after ``rr_reset``). In every
    cycle, among the cluster's lanes that are *able to accept* (see below) and
    offer a valid, non-skip request for the bank, the bank grants the first
    lane at or after ``rr`` in cyclic order (within the cluster) and moves
    ``rr`` to the lane after it. The grant is ``req[p].ready`` in the same
    cycle as ``req[p].valid``. With ``cluster_lanes`` 1 a lane never waits.

    Timing: a request accepted in cycle ``t`` sets its bank's address
    register; the bank reads in cycle ``t + 1``; the data enters the lane's
    output queue at the end of cycle ``t + 2`` and is offered on ``resp[p]``
    from cycle ``t + LATENCY`` (``LATENCY`` is 3). A lane whose response
    stream is always ready sustains one accepted request per cycle.

    Able to accept: a lane holds at most ``QUEUE_DEPTH`` (4) requests between
    acceptance and response, counting the two in the read pipeline and those
    waiting in the lane's output queue. Lane ``p`` is able to accept in a
    cycle when it holds fewer than 4, a condition on registers only
    (``resp[p].ready`` does not reach ``req[p].ready``). A lane that is not
    able to accept is not ready, takes no part in arbitration and is not
    counted in ``stall``. With ``resp[p].ready`` always high a lane holds at
    most 3 and is always able to accept.

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
        Column mode's read of a whole bank row: every bank of cluster 0
        reads its word ``scan_addr`` (elements ``scan_addr * x_banks + b``).
        Only while no lane offers a request (the lanes are in column mode);
        low otherwise. Generated with column mode only.
    scan_data : Out(data.ArrayLayout(signed(value_width), x_banks))
        The bank row read by ``scan_en`` in the previous cycle.
    """

    #: Cycles from the acceptance of a request to its response.
    LATENCY = 3
    #: Requests a lane may hold between acceptance and response.
    QUEUE_DEPTH = 4

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
            **({
                "scan_en": In(1),
                "scan_addr": In(config.bank_addr_width),
                "scan_data": Out(data.ArrayLayout(signed(config.value_width), config.x_banks)),
            } if column_mode(config) else {}),
        })

    @property
    def tag_shape(self):
        return self._tag_shape

    def elaborate(self, platform):
        config = self._config
        m = Module()
        able = Signal(config.pes)
        lanes = config.cluster_lanes
        for k in range(config.clusters):
            members = range(k * lanes, (k + 1) * lanes)
            ports, granted = self._cluster(m, k, members, able)
            for p in members:
                self._lane(m, p, ports, granted[p - k * lanes], able)
        return m

    def _bank_of(self, p):
        return self.req[p].payload.addr[:(self._config.x_banks - 1).bit_length()]

    def _cluster(self, m, k, members, able):
        """The banks of cluster ``k`` and their arbiters; returns the banks'
        read ports and, per lane of the cluster, its grant."""
        config = self._config
        banks = config.x_banks
        sel_bits = (banks - 1).bit_length()
        scan = k == 0 and column_mode(config)
        wants = []
        for p in members:
            req = self.req[p]
            want = Signal(banks, name=f"want{p}")
            bids = req.valid & ~req.payload.skip & able[p]
            m.d.comb += want.eq(Cat(bids & (self._bank_of(p) == b) for b in range(banks)))
            wants.append(want)
        ports, grants = [], []
        for b in range(banks):
            mem = memory.Memory(shape=signed(config.value_width), depth=config.x_depth // banks,
                                init=[])
            m.submodules[f"x{k}_bank{b}"] = mem
            wp = mem.write_port()
            m.d.comb += [
                wp.addr.eq(self.host_addr[sel_bits:]),
                wp.data.eq(self.host_wdata),
                wp.en.eq(self.host_we & (self.host_addr[:sel_bits] == b)),
            ]
            requests = Signal(len(members), name=f"x{k}_bank{b}_requests")
            m.d.comb += requests.eq(Cat(want[b] for want in wants))
            grant = self._arbiter(m, f"x{k}_bank{b}", requests)
            # The grant and the address are registered; the bank reads next cycle.
            rd_addr = Signal(config.bank_addr_width, name=f"x{k}_bank{b}_rd_addr")
            rd_en = Signal(name=f"x{k}_bank{b}_rd_en")
            m.d.sync += [
                rd_en.eq(requests.any()),
                rd_addr.eq(or_tree(Mux(grant[q], self.req[p].payload.addr[sel_bits:], 0)
                                   for q, p in enumerate(members))),
            ]
            port = mem.read_port()
            if scan:
                m.d.comb += [
                    port.en.eq(rd_en | self.scan_en),
                    port.addr.eq(Mux(self.scan_en, self.scan_addr, rd_addr)),
                    self.scan_data[b].eq(port.data),
                ]
            else:
                m.d.comb += [port.en.eq(rd_en), port.addr.eq(rd_addr)]
            ports.append(port)
            grants.append(grant)
        granted = [or_tree(grant[q] for grant in grants) for q in range(len(members))]
        return ports, granted

    def _arbiter(self, m, name, requests):
        """One bank's round-robin grant (one-hot over the cluster's lanes)."""
        if len(requests) == 1:
            return requests
        mask = Signal(len(requests), name=f"{name}_rr_mask")
        grant = Signal(len(requests), name=f"{name}_grant")
        m.d.comb += grant.eq(round_robin(requests, mask))
        with m.If(self.rr_reset):
            m.d.sync += mask.eq(0)
        with m.Elif(requests.any()):
            # Lanes after the granted one: the new pointer is grant + 1.
            m.d.sync += mask.eq(next_mask(grant, len(requests)))
        return grant

    def _lane(self, m, p, ports, granted, able):
        """Lane ``p``'s handshake, read pipeline and output queue."""
        config = self._config
        req, resp = self.req[p], self.resp[p]
        m.d.comb += [
            req.ready.eq(able[p] & (req.payload.skip | granted)),
            self.stall[p].eq(req.valid & ~req.payload.skip & able[p] & ~granted),
        ]
        # Stage 1: the bank address is in its register; stage 2: the data is
        # at the bank's read port.
        # (With a single bank the bank number has no bits: not generated.)
        stages = []
        for i in (1, 2):
            bank = (Signal(range(config.x_banks), name=f"lane{p}_s{i}_bank")
                    if config.x_banks > 1 else Const(0, 1))
            stages.append((Signal(name=f"lane{p}_s{i}_valid"), Signal(name=f"lane{p}_s{i}_skip"),
                           bank, Signal(self._tag_shape, name=f"lane{p}_s{i}_tag")))
        (s1_valid, s1_skip, s1_bank, s1_tag), (s2_valid, s2_skip, s2_bank, s2_tag) = stages
        accepted = req.valid & req.ready
        m.d.sync += [
            s1_valid.eq(accepted),
            s1_skip.eq(req.payload.skip),
            s1_tag.eq(req.payload.tag),
            s2_valid.eq(s1_valid),
            s2_skip.eq(s1_skip),
            s2_tag.eq(s1_tag),
        ]
        if config.x_banks > 1:
            m.d.sync += [s1_bank.eq(self._bank_of(p)), s2_bank.eq(s1_bank)]

        # The output queue: a small memory (distributed RAM) with pointers.
        depth = self.QUEUE_DEPTH
        queue = memory.Memory(shape=resp.payload.shape(), depth=depth, init=[])
        m.submodules[f"queue{p}"] = queue
        wr = queue.write_port()
        rd = queue.read_port(domain="comb")
        count = Signal(range(depth + 1), name=f"lane{p}_count")
        head = Signal(range(depth), name=f"lane{p}_head")
        tail = Signal(range(depth), name=f"lane{p}_tail")
        pop = Signal(name=f"lane{p}_pop")
        data = Array(port.data for port in ports)[s2_bank] if len(ports) > 1 else ports[0].data
        m.d.comb += [
            able[p].eq(count + s1_valid + s2_valid < depth),
            wr.en.eq(s2_valid),
            wr.addr.eq(tail),
            wr.data.data.eq(Mux(s2_skip, Const(0, signed(config.value_width)), data)),
            wr.data.tag.eq(s2_tag),
            rd.addr.eq(head),
            resp.valid.eq(count != 0),
            resp.payload.eq(rd.data),
            pop.eq(resp.valid & resp.ready),
        ]
        m.d.sync += [
            count.eq(count + s2_valid - pop),
            tail.eq(tail + s2_valid),
            head.eq(head + pop),
        ]
