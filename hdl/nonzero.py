"""Activation zero-skipping: the nonzero detector and the lanes' column queues.

In column mode (``Format.CSC``) the :class:`NonzeroDetector` scans the input
vector ``x[x_base .. x_base + count)`` one bank row (``x_banks`` elements) at
a time and emits the nonzero columns ``(j, x[x_base + j])`` in increasing
order, then an ``end`` entry. The top level broadcasts every entry to all
lanes at once, into one :class:`ColumnQueue` per lane, so that a lane with
few entries in a column can run ahead of one with many (EIE's activation
queues)::

    x banks ──(scan port)──► NonzeroDetector ──► broadcast ─┬─► ColumnQueue ─► lane 0
                             (window, priority     (when every ├─► ColumnQueue ─► lane 1
                              encoder)              queue has  └─► ...
                                                    room)
"""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from zeroskip.core.isa import SpmvArgs
from zeroskip.hdl.component import ConfigComponent, check_config

__all__ = ["nonzero_column_layout", "NonzeroDetector", "ColumnQueue"]


def nonzero_column_layout(config):
    """A column whose activation is nonzero, or the end of the columns.

    ``col`` is relative to ``x_base``; ``value`` is ``x[x_base + col]``;
    ``end`` marks the entry after the last column (``col`` and ``value`` 0).
    """
    return data.StructLayout({
        "col": unsigned(config.col_width),
        "value": signed(config.value_width),
        "end": unsigned(1),
    })


class NonzeroDetector(ConfigComponent):
    """Scans the input vector and emits its nonzero columns, one per cycle.

    A *step* is a cycle in which the output register is free or being taken.
    The detector holds one bank row (a *window*) and in each step emits its
    lowest nonzero element in range, or, for a window without one, moves on:
    a window with ``m`` nonzero elements in range takes ``max(m, 1)`` steps,
    back to back with the next (the windows are read ahead through
    ``scan_*``). After the last window one step emits ``end``.

    Timing: with ``start`` in cycle 0 and every output taken at once, the
    first window is read in cycle 1 and its first step is cycle 3; the entry
    of step ``s`` (counted from 0) is offered from cycle ``4 + s``. With
    ``count`` 0, ``end`` is offered from cycle 2.

    Parameters
    ----------
    config : AcceleratorConfig

    Members
    -------
    start : In(1)
        Starts a scan; ``x_base`` and ``count`` are sampled in that cycle.
        Ignored while ``busy``.
    x_base : In(SpmvArgs x_base)
    count : In(range(x_depth + 1))
        Columns to scan; ``x_base + count <= x_depth`` is the caller's duty.
    scan_en : Out(1)
    scan_addr : Out(bank_addr_width)
        Read of bank row ``scan_addr`` (element ``scan_addr * x_banks + b`` in
        bank ``b``) when ``scan_en``; its data is expected in ``scan_data``
        in the next cycle.
    scan_data : In(data.ArrayLayout(signed(value_width), x_banks))
    columns : Out(stream.Signature(nonzero_column_layout(config)))
    busy : Out(1)
        From the cycle after ``start`` until ``end`` has been taken.
    """

    def __init__(self, config):
        check_config(config)
        super().__init__(config, {
            "start": In(1),
            "x_base": In(SpmvArgs.as_shape()["x_base"].shape),
            "count": In(range(config.x_depth + 1)),
            "scan_en": Out(1),
            "scan_addr": Out(config.bank_addr_width),
            "scan_data": In(data.ArrayLayout(signed(config.value_width), config.x_banks)),
            "columns": Out(stream.Signature(nonzero_column_layout(config))),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        c = self._config
        banks = c.x_banks
        sel = (banks - 1).bit_length()
        window_width = max(1, (c.x_depth // banks - 1).bit_length())
        lane_width = max(1, sel)            # a bank index (one bit even for one bank)
        m = Module()

        x_base = Signal(len(self.x_base))
        running = Signal()
        left = Signal(range(c.x_depth // banks + 1))    # windows still to read
        addr = Signal(window_width)                       # next window to read
        first = Signal(window_width)
        final = Signal(window_width)
        lo_first = Signal(lane_width)
        hi_final = Signal(lane_width)

        # Window registers: A (the read in flight), N (staged), W (current).
        def window(name):
            return (Signal(name=f"{name}_valid"), Signal(banks, name=f"{name}_mask"),
                    Signal(data.ArrayLayout(signed(c.value_width), banks), name=f"{name}_values"),
                    Signal(window_width, name=f"{name}_row"))

        a_valid = Signal()
        a_row = Signal(window_width)
        a_lo = Signal(lane_width)
        a_hi = Signal(lane_width)
        n_valid, n_mask, n_values, n_row = window("staged")
        w_valid, w_mask, w_values, w_row = window("current")

        out = self.columns
        go = ~out.valid | out.ready

        # The read data of A, masked to the scanned range.
        a_mask = Signal(banks)
        for b in range(banks):
            in_range = self.scan_data[b] != 0
            if b < banks - 1:
                in_range &= a_lo <= b
            if b > 0:
                in_range &= a_hi >= b
            m.d.comb += a_mask[b].eq(in_range)

        # The current window's step.
        low = Signal(lane_width)
        for b in reversed(range(banks)):
            with m.If(w_mask[b]):
                m.d.comb += low.eq(b)
        rest = w_mask & (w_mask - 1)
        emit = w_valid & go & (w_mask != 0)
        finishing = w_valid & go & (rest == 0)      # the window's last step
        load = Signal()                             # W takes the next window
        m.d.comb += load.eq((~w_valid | finishing) & (n_valid | a_valid))
        with m.If(emit):
            m.d.sync += w_mask.eq(rest)
        with m.If(finishing):
            m.d.sync += w_valid.eq(0)
        with m.If(load):
            m.d.sync += [
                w_valid.eq(1),
                w_mask.eq(Mux(n_valid, n_mask, a_mask)),
                w_values.eq(Mux(n_valid, n_values, self.scan_data)),
                w_row.eq(Mux(n_valid, n_row, a_row)),
            ]
        # N takes A unless W took A directly.
        with m.If(load & n_valid):
            m.d.sync += n_valid.eq(0)
        with m.If(a_valid & ~(load & ~n_valid)):
            m.d.sync += [n_valid.eq(1), n_mask.eq(a_mask), n_values.eq(self.scan_data),
                         n_row.eq(a_row)]

        # Reads: one window per cycle while everything read has a place.
        issue = Signal()
        m.d.comb += [
            issue.eq(running & (left != 0) & (n_valid + a_valid - load == 0)),
            self.scan_en.eq(issue),
            self.scan_addr.eq(addr),
        ]
        m.d.sync += a_valid.eq(issue)
        with m.If(issue):
            m.d.sync += [
                addr.eq(addr + 1),
                left.eq(left - 1),
                a_row.eq(addr),
                a_lo.eq(Mux(addr == first, lo_first, 0)),
                a_hi.eq(Mux(addr == final, hi_final, banks - 1)),
            ]

        # Output register: a column, or ``end`` once everything is scanned.
        done_scanning = running & (left == 0) & ~a_valid & ~n_valid & ~w_valid
        with m.If(out.ready):
            m.d.sync += out.valid.eq(0)
        with m.If(emit):
            absolute = (w_row << sel) | low if sel else w_row
            m.d.sync += [
                out.valid.eq(1),
                out.payload.col.eq(absolute - x_base),
                out.payload.value.eq(w_values[low] if banks > 1 else w_values[0]),
                out.payload.end.eq(0),
            ]
        with m.Elif(go & done_scanning):
            m.d.sync += [
                out.valid.eq(1),
                out.payload.col.eq(0),
                out.payload.value.eq(0),
                out.payload.end.eq(1),
                running.eq(0),
            ]

        with m.If(self.start & ~self.busy):
            last_col = self.x_base + self.count - 1
            m.d.sync += [
                running.eq(1),
                x_base.eq(self.x_base),
                addr.eq(self.x_base >> sel),
                first.eq(self.x_base >> sel),
                final.eq(last_col >> sel),
                lo_first.eq(self.x_base[:sel] if sel else 0),
                hi_final.eq(last_col[:sel] if sel else 0),
                left.eq(Mux(self.count == 0, 0, (last_col >> sel) - (self.x_base >> sel) + 1)),
                a_valid.eq(0),
                n_valid.eq(0),
                w_valid.eq(0),
            ]

        m.d.comb += self.busy.eq(running | out.valid)
        return m


class ColumnQueue(ConfigComponent):
    """A lane's queue of nonzero columns (first in, first out).

    ``input.ready`` depends on registers only (the queue's level), so the
    broadcast can AND the readiness of every lane without a path through
    the lanes' logic. An entry written in cycle ``t`` is offered on
    ``output`` from cycle ``t + 1``.

    Parameters
    ----------
    config : AcceleratorConfig
    depth : int
        Entries the queue holds (a power of two).

    Members
    -------
    input : In(stream.Signature(nonzero_column_layout(config)))
    output : Out(stream.Signature(nonzero_column_layout(config)))
    flush : In(1)
        Empties the queue (at the next clock edge).
    level : Out(range(depth + 1))
    """

    def __init__(self, config, *, depth):
        check_config(config)
        if not isinstance(depth, int) or depth < 2 or depth & (depth - 1):
            raise ValueError(f"depth must be a power of two of at least 2, not {depth!r}")
        self._depth = depth
        layout = nonzero_column_layout(config)
        super().__init__(config, {
            "input": In(stream.Signature(layout)),
            "output": Out(stream.Signature(layout)),
            "flush": In(1),
            "level": Out(range(depth + 1)),
        })

    @property
    def depth(self):
        return self._depth

    def elaborate(self, platform):
        m = Module()
        depth = self._depth
        m.submodules.storage = storage = Memory(
            shape=nonzero_column_layout(self._config), depth=depth, init=[])
        wr = storage.write_port()
        rd = storage.read_port(domain="comb")
        wp = Signal(range(depth))
        rp = Signal(range(depth))
        push = self.input.valid & self.input.ready
        pop = self.output.valid & self.output.ready
        m.d.comb += [
            self.input.ready.eq(self.level != depth),
            self.output.valid.eq(self.level != 0),
            self.output.payload.eq(rd.data),
            rd.addr.eq(rp),
            wr.addr.eq(wp),
            wr.data.eq(self.input.payload),
            wr.en.eq(push),
        ]
        with m.If(push):
            m.d.sync += wp.eq(wp + 1)
        with m.If(pop):
            m.d.sync += rp.eq(rp + 1)
        m.d.sync += self.level.eq(self.level + push - pop)
        with m.If(self.flush):
            m.d.sync += [wp.eq(0), rp.eq(0), self.level.eq(0)]
        return m
