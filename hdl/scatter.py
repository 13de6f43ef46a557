"""The scatter/reduce network: partial sums routed between lanes and added up.

``REDUCE`` (see :mod:`zeroskip.core.isa`) sends partial sums from every
lane's ``out`` memory to other lanes' ``out`` words and adds them there, so a
row split over several lanes is summed back. Per lane, a
:class:`ReduceSource` walks the lane's route list and reads the partial sums;
the :class:`Scatter` bus delivers them; in the destination lane an
:class:`~zeroskip.hdl.writeback.Accumulator` adds each one to its ``out``
word (a read-modify-write per cycle)::

    ptr, out ─► ReduceSource[p] ─(lane, row, sum)─► Scatter ─(row, sum)─► Accumulator[q] ─► out
                (route list,                        (a shared bus,         (one add per cycle)
                 partial sums)                       round-robin)
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, fifo, stream
from amaranth.lib.wiring import In, Out

from zeroskip.core.isa import ReduceArgs
from zeroskip.hdl.arbiter import next_mask, or_tree, round_robin
from zeroskip.hdl.component import ConfigComponent, check_config
from zeroskip.hdl.layouts import pe_result_layout

__all__ = ["send_layout", "Scatter", "ReduceSource"]


def send_layout(config):
    """A partial sum on its way: destination ``lane``, ``row`` (relative to
    ``dst_base``) and the ``sum``."""
    return data.StructLayout({
        "lane": unsigned(config.lane_width),
        "row": unsigned(config.row_addr_width),
        "sum": signed(config.acc_width),
    })


class Scatter(ConfigComponent):
    """The network of ``REDUCE``: every lane's partial sums to any lane.

    A shared bus: one partial sum moves per cycle, whichever lanes send and
    receive. ``REDUCE`` moves only the pieces of split rows, a few per long
    row, so the bus costs few cycles and a small fraction of the area of a
    full crossbar (a ``pes`` x ``pes`` crossbar of ``acc_width``-bit sums is
    about 8,000 LUTs at 16 lanes on ECP5). Arbitration is the gather's
    round-robin with a single pointer ``rr`` (0 after reset and in the cycle
    after ``rr_reset``): among the lanes offering a sum, the bus grants the
    first at or after ``rr`` (wrapping) and sets ``rr`` to that lane + 1 (mod
    ``pes``). The grant is ``send[p].ready`` in the same cycle. A sum granted
    in cycle ``t`` is offered on ``recv[q]`` of its destination lane ``q`` in
    cycle ``t + 1`` (from registers) as a ``(row, sum, overflow = 0)`` result
    for the destination's accumulator, which must take it (its ``ready`` is
    not looked at).

    Parameters
    ----------
    config : AcceleratorConfig

    Members
    -------
    send : In(stream.Signature(send_layout(config))).array(pes)
    recv : Out(stream.Signature(pe_result_layout(config))).array(pes)
    rr_reset : In(1)
    stall : Out(pes)
        Lane ``p`` offered a sum that was not granted this cycle.
    busy : Out(1)
        A granted sum is still on its way (``recv`` valid somewhere).
    """

    def __init__(self, config):
        check_config(config)
        super().__init__(config, {
            "send": In(stream.Signature(send_layout(config))).array(config.pes),
            "recv": Out(stream.Signature(pe_result_layout(config))).array(config.pes),
            "rr_reset": In(1),
            "stall": Out(config.pes),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        c = self._config
        pes = c.pes
        m = Module()
        requests = Signal(pes)
        mask = Signal(pes)
        grant = Signal(pes)
        m.d.comb += [
            requests.eq(Cat(send.valid for send in self.send)),
            grant.eq(round_robin(requests, mask)),
        ]
        with m.If(self.rr_reset):
            m.d.sync += mask.eq(0)
        with m.Elif(requests.any()):
            m.d.sync += mask.eq(next_mask(grant, pes))

        bus_valid = Signal()
        bus = Signal(send_layout(c))
        m.d.sync += [
            bus_valid.eq(requests.any()),
            bus.eq(or_tree(Mux(grant[p], send.payload.as_value(), 0)
                           for p, send in enumerate(self.send))),
        ]
        for q, recv in enumerate(self.recv):
            m.d.comb += [
                recv.valid.eq(bus_valid & (bus.lane == q)),
                recv.payload.row.eq(bus.row),
                recv.payload.sum.eq(bus.sum),
            ]
        for p, send in enumerate(self.send):
            m.d.comb += [
                send.ready.eq(grant[p]),
                self.stall[p].eq(send.valid & ~grant[p]),
            ]
        m.d.comb += self.busy.eq(bus_valid)
        return m


class ReduceSource(ConfigComponent):
    """One lane's side of ``REDUCE``: reads its route list and partial sums.

    After ``start`` it reads the header ``m = ptr[ptr_base]``, ``s =
    ptr[ptr_base + 1]``, checks it, then reads route ``i`` (``ptr[ptr_base +
    2 + i]``) and ``out[src_base + s + i]`` together, one per cycle while its
    queue has room, and offers ``(lane, row, sum)`` on ``send``.

    Parameters
    ----------
    config : AcceleratorConfig

    Members
    -------
    start : In(1)
        One-cycle pulse; ``desc`` is sampled and ``error`` cleared.
    desc : In(ReduceArgs)
    send : Out(stream.Signature(send_layout(config)))
    busy : Out(1)
        From the cycle after ``start`` until the last sum has been sent (or,
        after an error, until everything before it has been sent).
    error : Out(1)
        Sticky until the next ``start``: the header leaves the ``ptr`` or
        ``out`` memory (nothing is sent), or a route names a lane ``>= pes``
        or a row ``dst_base + r >= row_depth`` (nothing is sent from it on).
    ptr_addr : Out(row_addr_width)
    ptr_data : In(config.ptr_width)
        A synchronous read port of the ``ptr`` memory (always enabled).
    out_addr : Out(row_addr_width)
    out_data : In(signed(acc_width))
        A synchronous read port of the ``out`` memory (always enabled).
    """

    #: Partial sums the source may read ahead of the network.
    QUEUE_DEPTH = 4

    def __init__(self, config):
        check_config(config)
        super().__init__(config, {
            "start": In(1),
            "desc": In(ReduceArgs),
            "send": Out(stream.Signature(send_layout(config))),
            "busy": Out(1),
            "error": Out(1),
            "ptr_addr": Out(config.row_addr_width),
            "ptr_data": In(config.ptr_width),
            "out_addr": Out(config.row_addr_width),
            "out_data": In(signed(config.acc_width)),
        })

    def elaborate(self, platform):
        c = self._config
        m = Module()
        word = c.ptr_width
        m.submodules.queue = queue = fifo.SyncFIFO(
            width=send_layout(c).size, depth=self.QUEUE_DEPTH)

        desc = Signal(ReduceArgs)
        h1, h2, h3 = Signal(), Signal(), Signal()     # 1, 2, 3 cycles after start
        m.d.sync += [h1.eq(self.start), h2.eq(h1), h3.eq(h2)]
        count = Signal(word)                          # m
        first = Signal(word)                          # s
        with m.If(h1):
            m.d.sync += count.eq(self.ptr_data)
        with m.If(h2):
            m.d.sync += first.eq(self.ptr_data)

        active = Signal()                             # routes left to read
        issued = Signal(word)
        route_addr = Signal(c.row_addr_width)
        src_addr = Signal(c.row_addr_width)
        read_valid = Signal()                         # the ports output a route and its sum
        checked_valid = Signal()                      # ``checked`` holds a read route
        kill = Signal()
        issue = Signal()
        m.d.comb += [
            issue.eq(active & (issued != count) &
                     (queue.level + read_valid + checked_valid < self.QUEUE_DEPTH)),
            self.ptr_addr.eq(Mux(self.start, self.desc.ptr_base,
                                 Mux(h1, desc.ptr_base + 1, route_addr))),
            self.out_addr.eq(src_addr),
        ]
        with m.If(issue):
            m.d.sync += [issued.eq(issued + 1), route_addr.eq(route_addr + 1),
                         src_addr.eq(src_addr + 1)]
        m.d.sync += read_valid.eq(issue)

        # The header: both ranges must fit their memory.
        with m.If(h3):
            with m.If((desc.ptr_base + 2 + count > c.row_depth) |
                      (desc.src_base + first + count > c.row_depth)):
                m.d.comb += kill.eq(1)
            with m.Else():
                m.d.sync += [active.eq(1), src_addr.eq(desc.src_base + first)]

        # A route read: registered (the memories' outputs are slow), checked,
        # queued.
        # The lane is checked at the route word's full width (a pointer word
        # may hold more bits than a lane index).
        checked_route = Signal(word)
        checked_sum = Signal(signed(c.acc_width))
        m.d.sync += [
            checked_valid.eq(read_valid & active),
            checked_route.eq(self.ptr_data),
            checked_sum.eq(self.out_data),
        ]
        lane = checked_route[c.row_addr_width:]
        row = checked_route[:c.row_addr_width]
        entry = Signal(send_layout(c))
        m.d.comb += [
            entry.lane.eq(lane),
            entry.row.eq(row),
            entry.sum.eq(checked_sum),
            queue.w_data.eq(entry),
        ]
        with m.If(checked_valid & active):
            with m.If((lane >= c.pes) | (desc.dst_base + row >= c.row_depth)):
                m.d.comb += kill.eq(1)
            with m.Else():
                m.d.comb += queue.w_en.eq(1)
        with m.If(active & (issued == count) & ~read_valid & ~checked_valid):
            m.d.sync += active.eq(0)

        m.d.comb += [
            self.send.valid.eq(queue.r_rdy),
            self.send.payload.eq(queue.r_data),
            queue.r_en.eq(self.send.ready),
        ]
        with m.If(kill):
            m.d.sync += [self.error.eq(1), active.eq(0)]

        with m.If(self.start):
            m.d.sync += [
                desc.eq(self.desc),
                self.error.eq(0),
                active.eq(0),
                issued.eq(0),
                route_addr.eq(self.desc.ptr_base + 2),
                read_valid.eq(0),
                checked_valid.eq(0),
            ]
        m.d.comb += self.busy.eq(h1 | h2 | h3 | active | queue.r_rdy)
        return m
