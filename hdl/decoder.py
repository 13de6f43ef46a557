"""The CSR format decoder: one lane's tile, one token per cycle.

The decoder walks a lane's CSR tile (see :mod:`zeroskip.firmware.isa`) and
emits a :func:`~zeroskip.hdl.layouts.token_layout` token per stored nonzero and
one ``empty`` token per empty row. It owns no memory: the :class:`Lane` wires
its ``ptr_*`` and ``nz_*`` members to synchronous read ports (address in one
cycle, data in the next).

Micro-architecture::

    ptr port ─► row-end fetcher ─► row-end queue ─► nonzero walker ─► nz port ─► output register
                (n, checks)        (4 entries)      (k, row)          (stage 1)   (stage 2, tokens)

The fetcher reads ``n`` and then one row end per cycle, ahead of the walker,
so that the walker always finds the next row's end at the head of the queue
and never spends a cycle on a pointer. The walker issues one token per cycle:
an ``nz`` read for a stored nonzero, or an empty token (no read) for an empty
row; it pops the row end with the row's last token.
"""

from amaranth.hdl import Array, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..firmware.isa import SpmvArgs, nz_entry_layout
from .layouts import token_layout

__all__ = ["CsrDecoder"]


class _RowEndQueue:
    """A small first-word-fall-through queue made of registers."""

    def __init__(self, width, depth):
        assert depth & (depth - 1) == 0
        self.depth = depth
        self.din = Signal(width)
        self.push = Signal()
        self.pop = Signal()
        self.flush = Signal()
        self.head = Signal(width)
        self.level = Signal(range(depth + 1))
        self.nonempty = Signal()
        self._entries = Array(Signal(width, name=f"row_end_{i}") for i in range(depth))
        self._wp = Signal(range(depth))
        self._rp = Signal(range(depth))

    def elaborate(self, m):
        m.d.comb += [
            self.head.eq(self._entries[self._rp]),
            self.nonempty.eq(self.level != 0),
        ]
        with m.If(self.push):
            m.d.sync += self._wp.eq(self._wp + 1)
        for index, entry in enumerate(self._entries):
            with m.If(self.push & (self._wp == index)):
                m.d.sync += entry.eq(self.din)
        with m.If(self.pop):
            m.d.sync += self._rp.eq(self._rp + 1)
        m.d.sync += self.level.eq(self.level + self.push - self.pop)
        with m.If(self.flush):
            m.d.sync += [self._wp.eq(0), self._rp.eq(0), self.level.eq(0)]


class CsrDecoder(wiring.Component):
    """Walks one lane's CSR tile and emits its tokens.

    Parameters
    ----------
    config : AcceleratorConfig

    Members
    -------
    start : In(1)
        One-cycle pulse; ``desc`` is sampled in that cycle and ``error``
        cleared.
    desc : In(SpmvArgs)
        The instruction's operands (``ptr_base``, ``nz_base``, ``x_base``,
        ``out_base`` are used).
    tokens : Out(stream.Signature(token_layout(config)))
        One token per stored nonzero (``addr = x_base + col``), one ``empty``
        token (``value = addr = 0``, ``last = 1``) per empty row. After the
        start latency the stream carries a token every cycle its consumer is
        ready, across row boundaries and empty rows.
    busy : Out(1)
        High from the cycle after ``start`` until the last token has been
        transferred (or, after an error, until the output register drained).
    error : Out(1)
        Sticky until the next ``start``: the descriptor reaches outside a
        memory (``ptr_base + n >= row_depth``, ``out_base + n > row_depth``,
        a row end below the previous one, ``nz_base + end > nz_depth``, or
        ``x_base + col >= x_depth``). Nothing is emitted after the offending
        item; tokens before it may have been emitted.
    ptr_addr : Out(row_addr_width)
    ptr_data : In(ptr_width)
        A synchronous read port of the row-pointer memory (always enabled).
    nz_addr : Out(nz_addr_width)
    nz_en : Out(1)
    nz_data : In(nz_entry_layout(config))
        A synchronous read port of the nonzero memory; ``nz_data`` must hold
        while ``nz_en`` is low.
    """

    #: Row ends the fetcher may run ahead of the walker.
    QUEUE_DEPTH = 4
    #: Cycles from the ``start`` cycle to the cycle the first token is offered.
    START_LATENCY = 6

    def __init__(self, config):
        self._config = config
        super().__init__({
            "start": In(1),
            "desc": In(SpmvArgs),
            "tokens": Out(stream.Signature(token_layout(config))),
            "busy": Out(1),
            "error": Out(1),
            "ptr_addr": Out(config.row_addr_width),
            "ptr_data": In(config.ptr_width),
            "nz_addr": Out(config.nz_addr_width),
            "nz_en": Out(1),
            "nz_data": In(nz_entry_layout(config)),
        })

    @property
    def config(self):
        return self._config

    def elaborate(self, platform):
        c = self._config
        m = Module()
        end_width = c.ptr_width

        # Operands latched at start, and the limits they imply (registered in
        # the cycle after start, first used two cycles after it).
        ptr_base = Signal.like(self.desc.ptr_base)
        nz_base = Signal.like(self.desc.nz_base)
        x_base = Signal.like(self.desc.x_base)
        out_base = Signal.like(self.desc.out_base)
        n_max = Signal(signed(15))       # the largest legal row count (negative: none)
        nz_max = Signal(signed(18))      # the largest legal row end
        x_max = Signal(signed(16))       # the largest legal column
        n_by_ptr = c.row_depth - 1 - ptr_base
        n_by_out = c.row_depth - out_base
        m.d.sync += [
            n_max.eq(Mux(n_by_ptr < n_by_out, n_by_ptr, n_by_out)),
            nz_max.eq(c.nz_depth - nz_base),
            x_max.eq(c.x_depth - 1 - x_base),
        ]

        kill = Signal()         # a descriptor error was found this cycle

        # ------------------------------------------------------------------
        # Row-end fetcher: issue (ptr port) -> A (memory output) -> B (register),
        # where B checks the word and pushes it. The first row-end read is
        # issued before n is known; a word beyond n is dropped at B.
        # ------------------------------------------------------------------
        NONE, LEN, ROW = 0, 1, 2
        active = Signal()                        # row ends still to fetch
        f_addr = Signal(c.row_addr_width)        # next row-pointer word to read
        issued = Signal(end_width + 1)           # row-end reads issued
        pushed = Signal(end_width)               # row ends pushed
        a_kind = Signal(2)                       # what the ptr port outputs now
        b_kind = Signal(2)
        b_data = Signal(end_width)
        n_known = Signal()
        n_reg = Signal(end_width)
        prev_end = Signal(end_width)

        queue = _RowEndQueue(end_width, self.QUEUE_DEPTH)
        queue.elaborate(m)

        b_len = b_kind == LEN
        known = n_known | b_len
        n = Mux(b_len, b_data, n_reg)
        in_flight = (a_kind == ROW) + (b_kind == ROW)
        issue_row = Signal()
        m.d.comb += [
            issue_row.eq(active & ~self.start & (~known | (issued < n)) &
                         (queue.level + in_flight < self.QUEUE_DEPTH)),
            self.ptr_addr.eq(Mux(self.start, self.desc.ptr_base, f_addr)),
        ]
        with m.If(issue_row):
            m.d.sync += [f_addr.eq(f_addr + 1), issued.eq(issued + 1)]
        m.d.sync += [
            a_kind.eq(Mux(self.start, LEN, Mux(issue_row, ROW, NONE))),
            b_kind.eq(a_kind),
            b_data.eq(self.ptr_data),
        ]

        with m.If(active & b_len):
            m.d.sync += [n_reg.eq(b_data), n_known.eq(1)]
            with m.If(b_data > n_max):
                m.d.comb += kill.eq(1)
        with m.If(active & n_known & (b_kind == ROW) & (pushed < n_reg)):
            with m.If((b_data < prev_end) | (b_data > nz_max)):
                m.d.comb += kill.eq(1)
            with m.Else():
                m.d.comb += [queue.din.eq(b_data), queue.push.eq(1)]
                m.d.sync += [prev_end.eq(b_data), pushed.eq(pushed + 1)]
        with m.If(n_known & (pushed == n_reg)):
            m.d.sync += active.eq(0)

        # ------------------------------------------------------------------
        # Nonzero walker (stage 0), memory stage (1), output register (2).
        # ------------------------------------------------------------------
        k = Signal(end_width)                    # next nonzero, relative to nz_base
        row = Signal(c.row_addr_width)           # local row at the head of the queue

        v1 = Signal()
        row1 = Signal(c.row_addr_width)
        last1 = Signal()
        empty1 = Signal()

        out = self.tokens
        adv2 = ~out.valid | out.ready
        adv1 = ~v1 | adv2

        head_empty = k == queue.head
        head_last = head_empty | (k + 1 == queue.head)
        issue = Signal()
        m.d.comb += [
            issue.eq(queue.nonempty & adv1),
            queue.pop.eq(issue & head_last),
            self.nz_en.eq(adv1),
            self.nz_addr.eq(nz_base + k),
        ]
        with m.If(adv1):
            m.d.sync += [
                v1.eq(issue),
                row1.eq(row),
                last1.eq(head_last),
                empty1.eq(head_empty),
            ]
        with m.If(issue):
            with m.If(~head_empty):
                m.d.sync += k.eq(k + 1)
            with m.If(head_last):
                m.d.sync += row.eq(row + 1)

        # A column past the input vector: the token is dropped here, the rest
        # of the tile in the next cycle (registered, to keep the memory's
        # output off the flush fan-out).
        x_addr = x_base + self.nz_data.col
        x_error = Signal()
        x_error_q = Signal()
        m.d.comb += x_error.eq(v1 & ~empty1 & (self.nz_data.col > x_max))
        m.d.sync += x_error_q.eq(x_error)
        with m.If(x_error_q):
            m.d.comb += kill.eq(1)

        with m.If(out.ready):
            m.d.sync += out.valid.eq(0)
        with m.If(adv2 & v1 & ~x_error & ~x_error_q):
            m.d.sync += out.valid.eq(1)
        with m.If(adv2 & v1):
            m.d.sync += [
                out.payload.addr.eq(Mux(empty1, 0, x_addr)),
                out.payload.value.eq(Mux(empty1, 0, self.nz_data.value)),
                out.payload.row.eq(row1),
                out.payload.last.eq(last1),
                out.payload.empty.eq(empty1),
            ]

        # ------------------------------------------------------------------
        # Start, errors, status.
        # ------------------------------------------------------------------
        with m.If(kill):
            m.d.sync += [
                self.error.eq(1),
                active.eq(0),
                v1.eq(0),
            ]
            m.d.comb += queue.flush.eq(1)

        with m.If(self.start):
            m.d.sync += [
                ptr_base.eq(self.desc.ptr_base),
                nz_base.eq(self.desc.nz_base),
                x_base.eq(self.desc.x_base),
                out_base.eq(self.desc.out_base),
                active.eq(1),
                f_addr.eq(self.desc.ptr_base + 1),
                issued.eq(0),
                pushed.eq(0),
                b_kind.eq(NONE),
                n_known.eq(0),
                prev_end.eq(0),
                k.eq(0),
                row.eq(0),
                v1.eq(0),
                x_error_q.eq(0),
                self.error.eq(0),
            ]
            m.d.comb += queue.flush.eq(1)

        m.d.comb += self.busy.eq(active | queue.nonempty | v1 | x_error_q | out.valid)
        return m
