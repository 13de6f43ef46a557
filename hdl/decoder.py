"""The format decoders: one lane's tile, one token per cycle.

:class:`FormatDecoder` walks a lane's tile in a row format (CSR, COO, BITMAP,
N:M or dense, see :mod:`zeroskip.core.isa`) and emits a
:func:`~zeroskip.hdl.layouts.token_layout` token per stored entry, with
``empty`` tokens where a row (or a BITMAP chunk) holds nothing.
:class:`CscDecoder` walks a column-mode (CSC) tile along the nonzero columns
the :class:`~zeroskip.hdl.nonzero.NonzeroDetector` reports. Neither owns a
memory: the :class:`~zeroskip.hdl.lane.Lane` wires their ``*_addr``/``*_data``
members to synchronous read ports (address in one cycle, data in the next).

Row-mode micro-architecture::

    ptr port ──► header, row ends (CSR) ──┐
                                           ├─► word queue ─► walker ─► nz port ─► output register
    meta port ─► rows (COO), chunks ───────┘    (8 entries)  (stage 0) (stage 1)  (stage 2, tokens)
                 (BITMAP)

The header (``n`` and the format's words) is read in the first cycles. For
CSR the fetcher then reads one row end per cycle, for COO and BITMAP one meta
word per cycle, ahead of the walker, so that the walker finds what it needs
at the head of the queue and never spends a cycle on a pointer. N:M and
dense tiles need no queue: their row ends and columns are arithmetic. The
walker issues one token per cycle: it derives the token's row, ``last`` and
column base from the format and reads the token's ``nz`` word; the output
register adds the stored column where the format has one.
"""

from amaranth.hdl import Array, C, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import stream
from amaranth.lib.wiring import In, Out

from zeroskip.core.isa import BITMAP_CHUNK, META_WIDTH, Format, NmWord, SpmvArgs, nz_entry_layout
from zeroskip.hdl.component import ConfigComponent, check_config
from zeroskip.hdl.formats import row_formats
from zeroskip.hdl.layouts import pe_input_layout, token_layout
from zeroskip.hdl.nonzero import nonzero_column_layout

__all__ = ["FormatDecoder", "CsrDecoder", "CscDecoder"]


class _WordQueue:
    """A small first-word-fall-through queue made of registers.

    ``head`` and ``second`` are the two oldest entries (``second`` is valid
    when ``level >= 2``).
    """

    def __init__(self, width, depth, *, name):
        assert depth & (depth - 1) == 0
        self.depth = depth
        self.din = Signal(width, name=f"{name}_din")
        self.push = Signal(name=f"{name}_push")
        self.pop = Signal(name=f"{name}_pop")
        self.flush = Signal(name=f"{name}_flush")
        self.head = Signal(width, name=f"{name}_head")
        self.second = Signal(width, name=f"{name}_second")
        self.level = Signal(range(depth + 1), name=f"{name}_level")
        self.nonempty = Signal(name=f"{name}_nonempty")
        self._entries = Array(Signal(width, name=f"{name}_{i}") for i in range(depth))
        self._wp = Signal(range(depth), name=f"{name}_wp")
        self._rp = Signal(range(depth), name=f"{name}_rp")

    def elaborate(self, m):
        m.d.comb += [
            self.head.eq(self._entries[self._rp]),
            self.second.eq(self._entries[(self._rp + 1)[:len(self._rp)]]),
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


def _saturating(value, limit):
    """``value`` clamped to ``limit`` (both unsigned)."""
    return Mux(value > limit, limit, value)


class FormatDecoder(ConfigComponent):
    """Walks one lane's tile in a row format and emits its tokens.

    Parameters
    ----------
    config : AcceleratorConfig
    formats : iterable of Format, optional
        The formats to generate logic for; by default the row formats that
        ``config.formats`` enables. The caller starts the decoder only for
        one of them.

    Members
    -------
    start : In(1)
        One-cycle pulse; ``desc`` is sampled in that cycle and ``error``
        cleared.
    desc : In(SpmvArgs)
        The instruction's operands (``fmt``, ``ptr_base``, ``nz_base``,
        ``x_base``, ``out_base`` are used).
    tokens : Out(stream.Signature(token_layout(config)))
        The tile's token sequence (``addr = x_base + column``); an ``empty``
        token (``value = addr = 0``, no product) stands for an empty row,
        and in BITMAP also for an all-zero chunk (``last`` set on the row's
        final chunk). After the start latency the stream carries a token
        every cycle its consumer is ready, across row boundaries.
    busy : Out(1)
        High from the cycle after ``start`` until the last token has been
        transferred (or, after an error, until the output register drained).
    error : Out(1)
        Sticky until the next ``start``: the descriptor reaches outside a
        memory. Found before any token: a header past the row-pointer memory
        (``ptr_base + 1 + n`` words for CSR, 2 for COO, BITMAP and dense, 3
        for N:M, more than ``row_depth``), ``out_base + n > row_depth``, for
        COO ``nz_base + e > nz_depth`` and for the others but CSR
        ``nz_base > nz_depth``. Found while streaming (nothing is emitted
        after the offending item): a CSR row end below the previous one or
        past ``nz_depth - nz_base``; a COO row below the previous entry's or
        at least ``n``; an ``nz`` or ``meta`` index past the memory; a column
        with ``x_base + column >= x_depth``.
    ptr_addr : Out(row_addr_width)
    ptr_data : In(config.ptr_width)
        A synchronous read port of the row-pointer memory (always enabled).
    nz_addr : Out(nz_addr_width)
    nz_en : Out(1)
    nz_data : In(nz_entry_layout(config))
        A synchronous read port of the nonzero memory; ``nz_data`` must hold
        while ``nz_en`` is low.
    meta_addr : Out(nz_addr_width)
    meta_data : In(META_WIDTH)
        A synchronous read port of the meta memory (always enabled).
    """

    #: Row ends the CSR fetcher may run ahead of the walker.
    QUEUE_DEPTH = 4
    #: Meta words the COO and BITMAP fetcher may run ahead of the walker (COO
    #: looks at two entries at once).
    META_QUEUE_DEPTH = 6
    #: Cycles from the ``start`` cycle to the cycle the first token is offered.
    START_LATENCY = 7

    def __init__(self, config, *, formats=None):
        check_config(config)
        self._formats = frozenset(row_formats(config) if formats is None else
                                  (Format(f) for f in formats))
        if Format.CSC in self._formats:
            raise ValueError("CSC is not a row format")
        super().__init__(config, {
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
            "meta_addr": Out(config.nz_addr_width),
            "meta_data": In(META_WIDTH),
        })

    @property
    def formats(self):
        return self._formats

    def elaborate(self, platform):
        c = self._config
        m = Module()
        word_width = c.ptr_width                # a row-pointer word: count, end, descriptor
        index_width = word_width + 1            # nz/meta indices relative to nz_base
        col_limit = 1 << (c.col_width + 1)      # any column at or above it is out of range
        col_sum_width = c.col_width + 3

        def enabled(fmt):
            return fmt in self._formats

        # Operands latched at start, and the limits they imply (registered in
        # the cycle after start, first used two cycles after it).
        fmt = Signal(Format)
        ptr_base = Signal.like(self.desc.ptr_base)
        nz_base = Signal.like(self.desc.nz_base)
        x_base = Signal.like(self.desc.x_base)
        out_base = Signal.like(self.desc.out_base)
        n_max = Signal(signed(15))       # CSR: the largest legal row count (negative: none)
        n_out_max = Signal(signed(15))   # other formats: rows that fit the output
        header_bad = Signal()            # other formats: the header leaves the ptr memory
        nz_max = Signal(signed(18))      # the largest legal row end / entry count
        x_max = Signal(signed(16))       # the largest legal column
        n_by_ptr = c.row_depth - 1 - ptr_base
        n_by_out = c.row_depth - out_base
        header_words = Mux(fmt == Format.NM, 3, 2)
        m.d.sync += [
            n_max.eq(Mux(n_by_ptr < n_by_out, n_by_ptr, n_by_out)),
            n_out_max.eq(n_by_out),
            header_bad.eq(ptr_base + header_words > c.row_depth),
            nz_max.eq(c.nz_depth - nz_base),
            x_max.eq(c.x_depth - 1 - x_base),
        ]

        def is_fmt(f):
            if not enabled(f):
                return C(0)
            return C(1) if len(self._formats) == 1 else fmt == f

        is_csr, is_coo, is_bitmap = is_fmt(Format.CSR), is_fmt(Format.COO), is_fmt(Format.BITMAP)
        is_nm, is_dense = is_fmt(Format.NM), is_fmt(Format.DENSE)
        desc_meta = C(0)
        for f in (Format.COO, Format.BITMAP):
            if enabled(f):
                desc_meta = desc_meta | (self.desc.fmt == f)
        desc_csr = (self.desc.fmt == Format.CSR) if enabled(Format.CSR) else C(0)

        kill = Signal()         # a descriptor error was found this cycle
        finish = Signal()       # a non-CSR walker has issued its last token

        # Header: h1, h2, h3 are high 1, 2, 3 cycles after start. The ptr port
        # reads ptr_base at start, then ptr_base + 1, ptr_base + 2, ...
        h1, h2, h3 = Signal(), Signal(), Signal()
        m.d.sync += [h1.eq(self.start), h2.eq(h1), h3.eq(h2)]
        n_hdr = Signal(word_width)      # ptr[ptr_base]: the row count
        p1 = Signal(word_width)         # ptr[ptr_base + 1]: e, C, G or L
        p2 = Signal(word_width)         # ptr[ptr_base + 2]: the N:M word
        with m.If(h1):
            m.d.sync += n_hdr.eq(self.ptr_data)
        with m.If(h2):
            m.d.sync += p1.eq(self.ptr_data)
        with m.If(h3):
            m.d.sync += p2.eq(self.ptr_data)

        meta_formats = enabled(Format.COO) or enabled(Format.BITMAP)
        queue = _WordQueue(max(word_width, META_WIDTH) if meta_formats else word_width,
                           8 if meta_formats else self.QUEUE_DEPTH, name="queue")
        queue.elaborate(m)

        # ------------------------------------------------------------------
        # CSR row-end fetcher: issue (ptr port) -> A (memory output) -> B
        # (register), where B checks the word and pushes it. The first row-end
        # read is issued before n is known; a word beyond n is dropped at B.
        # For the other formats the port only reads the header words.
        # ------------------------------------------------------------------
        NONE, LEN, ROW = 0, 1, 2
        active = Signal()                        # CSR row ends still to fetch
        f_addr = Signal(c.row_addr_width)        # next row-pointer word to read
        issued = Signal(word_width + 1)          # row-end reads issued
        pushed = Signal(word_width)              # row ends pushed
        a_kind = Signal(2)                       # what the ptr port outputs now
        b_kind = Signal(2)
        b_data = Signal(word_width)
        n_known = Signal()
        n_reg = Signal(word_width)
        prev_end = Signal(word_width)

        b_len = b_kind == LEN
        known = n_known | b_len
        n = Mux(b_len, b_data, n_reg)
        in_flight = (a_kind == ROW) + (b_kind == ROW)
        issue_row = Signal()
        m.d.comb += [
            issue_row.eq((active & ~self.start & (~known | (issued < n)) &
                          (queue.level + in_flight < self.QUEUE_DEPTH)) |
                         (~is_csr & (h1 | h2))),
            self.ptr_addr.eq(Mux(self.start, self.desc.ptr_base, f_addr)),
        ]
        with m.If(issue_row):
            m.d.sync += [f_addr.eq(f_addr + 1), issued.eq(issued + 1)]
        m.d.sync += [
            a_kind.eq(Mux(self.start, LEN, Mux(issue_row, ROW, NONE))),
            b_kind.eq(a_kind),
            b_data.eq(self.ptr_data),
        ]

        csr_push = Signal()
        with m.If(active & b_len):
            m.d.sync += [n_reg.eq(b_data), n_known.eq(1)]
            with m.If(b_data > n_max):
                m.d.comb += kill.eq(1)
        with m.If(active & n_known & (b_kind == ROW) & (pushed < n_reg)):
            with m.If((b_data < prev_end) | (b_data > nz_max)):
                m.d.comb += kill.eq(1)
            with m.Else():
                m.d.comb += csr_push.eq(1)
                m.d.sync += [prev_end.eq(b_data), pushed.eq(pushed + 1)]
        with m.If(n_known & (pushed == n_reg)):
            m.d.sync += active.eq(0)

        # ------------------------------------------------------------------
        # Meta fetcher (COO, BITMAP): reads meta[nz_base + j], j = 0, 1, ...
        # from the start cycle on, as far as the queue has room. Words past
        # the tile are read too and dropped when the walker is done.
        # ------------------------------------------------------------------
        meta_active = Signal()
        meta_j = Signal(c.nz_addr_width)
        meta_a = Signal()               # the meta port outputs a fetched word
        meta_b = Signal()
        meta_b_data = Signal(META_WIDTH)
        issue_meta = Signal()
        meta_in_flight = meta_a + meta_b
        if meta_formats:
            m.d.comb += [
                issue_meta.eq((self.start & desc_meta) |
                              (meta_active & (queue.level + meta_in_flight
                                              < self.META_QUEUE_DEPTH))),
                self.meta_addr.eq(Mux(self.start, self.desc.nz_base, nz_base + meta_j)),
            ]
            with m.If(issue_meta):
                m.d.sync += meta_j.eq(meta_j + 1)
            m.d.sync += [
                meta_a.eq(issue_meta),
                meta_b.eq(meta_a & meta_active),
                meta_b_data.eq(self.meta_data),
            ]
        m.d.comb += [
            # CSR queues row lengths (the row end minus the previous one).
            queue.din.eq(Mux(is_csr, b_data - prev_end, meta_b_data)),
            queue.push.eq(csr_push | (meta_b & meta_active)),
        ]

        # ------------------------------------------------------------------
        # Walker (stage 0), memory stage (1), output register (2).
        # ------------------------------------------------------------------
        walking = Signal()                       # a non-CSR walker is running
        k = Signal(index_width)                  # next nz entry, relative to nz_base
        row = Signal(c.row_addr_width + 1)       # local row of the next token

        v1 = Signal()
        row1 = Signal(c.row_addr_width)
        last1 = Signal()
        empty1 = Signal()
        colbase1 = Signal(col_sum_width)
        usecol1 = Signal()

        # Stage r holds the memory's output in a register (the block RAM's own
        # output register where the FPGA has one), so that no adder follows
        # the memory's clock-to-output in one cycle.
        vr = Signal()
        rowr = Signal(c.row_addr_width)
        lastr = Signal()
        emptyr = Signal()
        colbaser = Signal(col_sum_width)
        usecolr = Signal()
        nzr = Signal.like(self.nz_data)

        out = self.tokens
        adv2 = ~out.valid | out.ready
        advr = ~vr | adv2
        adv1 = ~v1 | advr

        # What the walker offers this cycle (t_*) and does when it issues.
        t_valid = Signal()
        t_empty = Signal()
        t_last = Signal()
        t_colbase = Signal(col_sum_width)
        t_usecol = Signal()
        issue = Signal()
        m.d.comb += issue.eq(t_valid & adv1)

        # Per-format walker state.
        bits = Signal(BITMAP_CHUNK)              # BITMAP: set bits left in the chunk
        loaded = Signal()                        # BITMAP: ``bits`` holds the chunk
        chunk = Signal(word_width)               # BITMAP: chunk of the row
        chunk_j = Signal(index_width)            # BITMAP: meta index, relative to nz_base
        chunk_col = Signal(c.col_width + 2)      # BITMAP: 16 * chunk, saturated
        slot = Signal(8)                         # N:M: slot in the group
        group = Signal(word_width)               # N:M: group of the row
        group_col = Signal(c.col_width + 2)      # N:M: group * M, saturated
        dcol = Signal(word_width)                # DENSE: column of the row

        end_row = Signal()
        m.d.comb += end_row.eq(row == n_hdr)
        with m.If(issue & t_last):
            m.d.sync += row.eq(row + 1)

        # Format helpers, computed outside the walker's decision chain.
        # CSR: entries left in the head row, in a register so that the
        # walker's decision waits neither for the queue's read multiplexer
        # nor for a comparison; loaded with the next row's length on a pop.
        remain = Signal(word_width)
        head_empty = remain == 0
        entries = p1                                     # COO: e
        head_row = queue.head[:META_WIDTH]
        next_row = queue.second[:META_WIDTH]
        no_more = k == entries
        chunks = p1                                      # BITMAP: C
        word = Mux(loaded, bits, queue.head[:BITMAP_CHUNK])
        rest = word & (word - 1)
        low = Signal(range(BITMAP_CHUNK))
        chunk_last = chunk + 1 == chunks
        advance = Signal()                               # BITMAP: the chunk is done
        if enabled(Format.BITMAP):
            for t in reversed(range(BITMAP_CHUNK)):
                with m.If(word[t]):
                    m.d.comb += low.eq(t)
        groups = p1                                      # N:M: G
        nm_word = Signal(NmWord)                         # N:M: the descriptor word
        m.d.comb += nm_word.eq(p2)
        slots = nm_word.n                                # N:M: N
        log2_m = nm_word.log2_m
        m_step = Mux(log2_m > c.col_width + 1, col_limit,
                     Const(1, c.col_width + 2) << log2_m)
        slot_last = slot + 1 == slots
        group_last = group + 1 == groups
        width = p1                                       # DENSE: L
        dense_last = dcol + 1 == width

        # The walker's decision: one branch per enabled format (a chain of
        # only the generated formats, so no branch is constant).
        def walk_csr():
            m.d.comb += [
                t_valid.eq(queue.nonempty),
                t_empty.eq(head_empty),
                t_last.eq(remain[1:] == 0),
                t_usecol.eq(1),
                queue.pop.eq(issue & t_last),
            ]
            with m.If(issue & ~head_empty):
                m.d.sync += k.eq(k + 1)
            with m.If(queue.pop & (queue.level >= 2)):
                m.d.sync += remain.eq(queue.second)
            with m.Elif((queue.pop & (queue.level == 1)) | (queue.level == 0)):
                m.d.sync += remain.eq(queue.din)
            with m.Elif(issue):
                m.d.sync += remain.eq(remain - 1)

        def walk_coo():
            with m.If(end_row):
                # All rows done: an entry left over has a row >= n.
                with m.If(~no_more):
                    m.d.comb += kill.eq(1)
                with m.Else():
                    m.d.comb += finish.eq(1)
            with m.Elif(no_more):
                m.d.comb += [t_valid.eq(1), t_empty.eq(1), t_last.eq(1)]
            with m.Elif(queue.nonempty):
                with m.If(head_row < row):
                    m.d.comb += kill.eq(1)
                with m.Elif(head_row != row):
                    m.d.comb += [t_valid.eq(1), t_empty.eq(1), t_last.eq(1)]
                with m.Elif((k + 1 == entries) | (queue.level >= 2)):
                    m.d.comb += [
                        t_valid.eq(1),
                        t_usecol.eq(1),
                        t_last.eq((k + 1 == entries) | (next_row != row)),
                        queue.pop.eq(issue),
                    ]
                    with m.If(issue):
                        m.d.sync += k.eq(k + 1)

        def walk_bitmap():
            with m.If(end_row):
                m.d.comb += finish.eq(1)
            with m.Elif(chunks == 0):
                m.d.comb += [t_valid.eq(1), t_empty.eq(1), t_last.eq(1)]
            with m.Elif(loaded | queue.nonempty):
                with m.If(~loaded & (chunk_j >= nz_max)):
                    m.d.comb += kill.eq(1)
                with m.Elif(word == 0):
                    m.d.comb += [
                        t_valid.eq(1), t_empty.eq(1), t_last.eq(chunk_last),
                        advance.eq(issue),
                    ]
                with m.Elif(k >= nz_max):
                    m.d.comb += kill.eq(1)
                with m.Else():
                    m.d.comb += [
                        t_valid.eq(1),
                        t_last.eq((rest == 0) & chunk_last),
                        t_colbase.eq(chunk_col + low),
                        advance.eq(issue & (rest == 0)),
                    ]
                    with m.If(issue):
                        m.d.sync += [k.eq(k + 1), bits.eq(rest), loaded.eq(rest != 0)]
                m.d.comb += queue.pop.eq(issue & ~loaded)

        def walk_nm():
            with m.If(end_row):
                m.d.comb += finish.eq(1)
            with m.Elif((groups == 0) | (slots == 0)):
                m.d.comb += [t_valid.eq(1), t_empty.eq(1), t_last.eq(1)]
            with m.Elif(k >= nz_max):
                m.d.comb += kill.eq(1)
            with m.Else():
                m.d.comb += [
                    t_valid.eq(1),
                    t_usecol.eq(1),
                    t_colbase.eq(group_col),
                    t_last.eq(slot_last & group_last),
                ]
                with m.If(issue):
                    m.d.sync += [k.eq(k + 1), slot.eq(slot + 1)]
                    with m.If(slot_last):
                        m.d.sync += slot.eq(0)
                        with m.If(group_last):
                            m.d.sync += [group.eq(0), group_col.eq(0)]
                        with m.Else():
                            m.d.sync += [group.eq(group + 1), group_col.eq(
                                _saturating(group_col + m_step, col_limit))]

        def walk_dense():
            with m.If(end_row):
                m.d.comb += finish.eq(1)
            with m.Elif(width == 0):
                m.d.comb += [t_valid.eq(1), t_empty.eq(1), t_last.eq(1)]
            with m.Elif(k >= nz_max):
                m.d.comb += kill.eq(1)
            with m.Else():
                m.d.comb += [
                    t_valid.eq(1),
                    t_colbase.eq(_saturating(dcol, col_limit)),
                    t_last.eq(dense_last),
                ]
                with m.If(issue):
                    m.d.sync += [k.eq(k + 1), dcol.eq(Mux(dense_last, 0, dcol + 1))]

        branches = [(fmt, cond, walk) for fmt, cond, walk in (
            (Format.CSR, is_csr, walk_csr),
            (Format.COO, is_coo & walking, walk_coo),
            (Format.BITMAP, is_bitmap & walking, walk_bitmap),
            (Format.NM, is_nm & walking, walk_nm),
            (Format.DENSE, is_dense & walking, walk_dense),
        ) if enabled(fmt)]
        for index, (_, cond, walk) in enumerate(branches):
            with (m.If if index == 0 else m.Elif)(cond):
                walk()

        with m.If(advance):
            m.d.sync += chunk_j.eq(chunk_j + 1)
            with m.If(chunk_last):
                m.d.sync += [chunk.eq(0), chunk_col.eq(0)]
            with m.Else():
                m.d.sync += [chunk.eq(chunk + 1),
                             chunk_col.eq(_saturating(chunk_col + BITMAP_CHUNK, col_limit))]

        # The header checks of the non-CSR formats, before any token.
        with m.If(h2 & ~is_csr & ((n_hdr > n_out_max) | header_bad | (nz_max < 0))):
            m.d.comb += kill.eq(1)
        if enabled(Format.COO):
            # COO: the entries must fit, and a tile without rows has no entries.
            with m.If(h3 & is_coo & ((p1 > nz_max) | ((n_hdr == 0) & (p1 != 0)))):
                m.d.comb += kill.eq(1)
        with m.If(h3 & ~is_csr & ~self.error & ~kill & (n_hdr != 0)):
            m.d.sync += walking.eq(1)
        with m.If(finish):
            m.d.sync += [walking.eq(0), meta_active.eq(0)]
            m.d.comb += queue.flush.eq(1)

        m.d.comb += [
            self.nz_en.eq(adv1),
            self.nz_addr.eq(nz_base + k),
        ]
        with m.If(adv1):
            m.d.sync += [
                v1.eq(issue),
                row1.eq(row),
                last1.eq(t_last),
                empty1.eq(t_empty),
                colbase1.eq(t_colbase),
                usecol1.eq(t_usecol),
            ]

        with m.If(advr):
            m.d.sync += [
                vr.eq(v1),
                rowr.eq(row1),
                lastr.eq(last1),
                emptyr.eq(empty1),
                colbaser.eq(colbase1),
                usecolr.eq(usecol1),
                nzr.eq(self.nz_data),
            ]

        # A column past the input vector: the token is dropped here, the rest
        # of the tile in the next cycle (registered, to keep the column's
        # adders off the flush fan-out).
        col = Signal(col_sum_width)
        m.d.comb += col.eq(colbaser + Mux(usecolr, nzr.col, 0))
        x_addr = (x_base + col)[:c.col_width]
        x_error = Signal()
        x_error_q = Signal()
        m.d.comb += x_error.eq(vr & ~emptyr & (col > x_max))
        m.d.sync += x_error_q.eq(x_error)
        with m.If(x_error_q):
            m.d.comb += kill.eq(1)

        with m.If(out.ready):
            m.d.sync += out.valid.eq(0)
        with m.If(adv2 & vr & ~x_error & ~x_error_q):
            m.d.sync += out.valid.eq(1)
        with m.If(adv2 & vr):
            m.d.sync += [
                out.payload.addr.eq(Mux(emptyr, 0, x_addr)),
                out.payload.value.eq(Mux(emptyr, 0, nzr.value)),
                out.payload.row.eq(rowr),
                out.payload.last.eq(lastr),
                out.payload.empty.eq(emptyr),
            ]

        # ------------------------------------------------------------------
        # Start, errors, status.
        # ------------------------------------------------------------------
        with m.If(kill):
            m.d.sync += [
                self.error.eq(1),
                active.eq(0),
                walking.eq(0),
                meta_active.eq(0),
                v1.eq(0),
            ]
            m.d.comb += queue.flush.eq(1)
        # The token in stage r precedes the offending item, unless the
        # offending item is its predecessor's column.
        with m.If(x_error_q):
            m.d.sync += vr.eq(0)

        with m.If(self.start):
            m.d.sync += [
                fmt.eq(self.desc.fmt),
                ptr_base.eq(self.desc.ptr_base),
                nz_base.eq(self.desc.nz_base),
                x_base.eq(self.desc.x_base),
                out_base.eq(self.desc.out_base),
                active.eq(desc_csr),
                meta_active.eq(desc_meta),
                meta_j.eq(1),
                meta_b.eq(0),
                walking.eq(0),
                f_addr.eq(self.desc.ptr_base + 1),
                issued.eq(0),
                pushed.eq(0),
                b_kind.eq(NONE),
                n_known.eq(0),
                prev_end.eq(0),
                k.eq(0),
                row.eq(0),
                bits.eq(0),
                loaded.eq(0),
                chunk.eq(0),
                chunk_j.eq(0),
                chunk_col.eq(0),
                slot.eq(0),
                group.eq(0),
                group_col.eq(0),
                dcol.eq(0),
                v1.eq(0),
                vr.eq(0),
                x_error_q.eq(0),
                self.error.eq(0),
            ]
            m.d.comb += queue.flush.eq(1)

        header = ~is_csr & ~self.error & (h1 | h2 | h3)
        m.d.comb += self.busy.eq(active | (is_csr & queue.nonempty) | header | walking |
                                 v1 | vr | x_error_q | out.valid)
        return m


class CsrDecoder(FormatDecoder):
    """A :class:`FormatDecoder` for the CSR format only."""

    def __init__(self, config):
        super().__init__(config, formats=(Format.CSR,))


class CscDecoder(ConfigComponent):
    """Walks one lane's column-mode (CSC) tile along the nonzero columns.

    The columns arrive from the :class:`~zeroskip.hdl.nonzero.NonzeroDetector`
    (through the lane's column queue) in increasing order, each with its
    activation ``x[x_base + j]``, then an ``end`` entry. For every column the
    decoder reads the column's range from ``ptr`` (both words in one cycle)
    and emits one product per entry, one per cycle: ``a`` the entry's value,
    ``x`` the activation, ``row`` the entry's ``meta`` word, ``last`` set.

    Micro-architecture::

        columns ─► range reader ─► range queue ─► entry walker ─► nz, meta ─► output register
                   (ptr pair)      (4 entries)    (stage 0)       (stage 1)   (stage 2, products)

    The range reader runs ahead (also before ``enable``); the walker spends
    ``max(entries, 1)`` cycles on a column: an entry per cycle, or one cycle
    for a column without entries in this lane (or at or past its ``c``).

    Parameters
    ----------
    config : AcceleratorConfig

    Members
    -------
    start : In(1)
        One-cycle pulse; ``desc`` is sampled in that cycle and ``error``
        cleared.
    desc : In(SpmvArgs)
    columns : In(stream.Signature(nonzero_column_layout(config)))
        The nonzero columns (``col`` relative to ``x_base``), then ``end``.
        Consumed up to and including ``end`` even after an error.
    enable : In(1)
        Entries are issued only while high (the rows are initialised).
    products : Out(stream.Signature(pe_input_layout(config)))
    rows : Out(config.ptr_width)
        ``n``, from ``HEADER_LATENCY`` cycles after ``start``.
    count : Out(config.ptr_width)
        ``c``, or 0 after a header error, from ``HEADER_LATENCY`` cycles
        after ``start``.
    header_ok : Out(1)
        High ``HEADER_LATENCY`` cycles after ``start`` when the header fits.
    unvisited : Out(config.ptr_width + 1)
        Entries of the tile the walker did not visit (those of the columns
        with a zero activation): the last column's end
        ``ptr[ptr_base + 1 + c]`` (0 when ``c = 0``) minus the entries
        walked; final once ``busy`` is low after a run without error.
    released : Out(1)
        Pulses when a column taken from ``columns`` is done with: in the
        cycle of the walker's last step on it, or when ``end`` (or, after an
        error, any entry) is taken.
    busy : Out(1)
        High from the cycle after ``start`` until ``end`` is consumed and the
        last product transferred.
    error : Out(1)
        Sticky until the next ``start``. Found before any product:
        ``ptr_base + 2 + c > row_depth``, ``out_base + n > row_depth`` or
        ``x_base + c > x_depth``. Found while streaming, for a visited column
        ``j`` only: its end below its start (``ptr[ptr_base + 1 + j]``, or 0
        for ``j = 0``) or past ``nz_depth - nz_base``; an entry's row (its
        ``meta`` word) at least ``n``.
    ptr_addr : Out(row_addr_width)
    ptr_data, ptr_data_next : In(config.ptr_width)
        A synchronous read port of the row-pointer memory returning the word
        at ``ptr_addr`` and the one after it.
    nz_addr, meta_addr : Out(nz_addr_width)
    nz_en : Out(1)
    nz_data : In(nz_entry_layout(config))
    meta_data : In(META_WIDTH)
        Synchronous read ports of the nonzero and meta memories (both read
        the same address; their data must hold while ``nz_en`` is low).
    """

    #: Cycles from ``start`` to the cycle ``rows``, ``count``, ``header_ok``
    #: are valid.
    HEADER_LATENCY = 2
    #: Column ranges the reader may run ahead of the walker.
    RANGE_DEPTH = 4

    def __init__(self, config):
        check_config(config)
        word = config.ptr_width
        super().__init__(config, {
            "start": In(1),
            "desc": In(SpmvArgs),
            "columns": In(stream.Signature(nonzero_column_layout(config))),
            "enable": In(1),
            "products": Out(stream.Signature(pe_input_layout(config))),
            "rows": Out(word),
            "count": Out(word),
            "header_ok": Out(1),
            "unvisited": Out(config.ptr_width + 1),
            "released": Out(1),
            "busy": Out(1),
            "error": Out(1),
            "ptr_addr": Out(config.row_addr_width),
            "ptr_data": In(word),
            "ptr_data_next": In(word),
            "nz_addr": Out(config.nz_addr_width),
            "nz_en": Out(1),
            "nz_data": In(nz_entry_layout(config)),
            "meta_addr": Out(config.nz_addr_width),
            "meta_data": In(META_WIDTH),
        })

    def elaborate(self, platform):
        c = self._config
        m = Module()
        word = c.ptr_width

        ptr_base = Signal.like(self.desc.ptr_base)
        nz_base = Signal.like(self.desc.nz_base)
        x_base = Signal.like(self.desc.x_base)
        out_base = Signal.like(self.desc.out_base)
        nz_max = Signal(signed(18))
        n_out_max = Signal(signed(15))
        c_ptr_max = Signal(signed(15))      # columns that fit the ptr memory
        c_x_max = Signal(signed(16))        # columns that fit the input vector
        m.d.sync += [
            nz_max.eq(c.nz_depth - nz_base),
            n_out_max.eq(c.row_depth - out_base),
            c_ptr_max.eq(c.row_depth - 2 - ptr_base),
            c_x_max.eq(c.x_depth - x_base),
        ]

        kill = Signal()
        h1, h2, h3 = Signal(), Signal(), Signal()
        m.d.sync += [h1.eq(self.start), h2.eq(h1), h3.eq(h2)]
        n = Signal(word)
        count = Signal(word)
        with m.If(h1):
            m.d.sync += [n.eq(self.ptr_data), count.eq(self.ptr_data_next)]
        header_bad = (n > n_out_max) | (count > c_ptr_max) | (count > c_x_max)
        running = Signal()          # header fine, no error yet
        m.d.comb += [
            self.rows.eq(n),
            self.count.eq(Mux(self.error | (h2 & header_bad), 0, count)),
            self.header_ok.eq(h2 & ~header_bad),
        ]
        with m.If(h2 & header_bad):
            m.d.comb += kill.eq(1)
        with m.If(h2 & ~header_bad):
            m.d.sync += running.eq(1)

        # ------------------------------------------------------------------
        # Range reader: pops a column, reads its two ptr words (A: data).
        # ------------------------------------------------------------------
        rq_width = 2 * word + c.value_width
        rq = _WordQueue(rq_width, self.RANGE_DEPTH, name="ranges")
        rq.elaborate(m)
        ended = Signal()                # ``end`` consumed
        a_valid = Signal()
        a_first = Signal()              # column 0: starts at 0
        a_outside = Signal()            # column at or past c: no entries here
        a_x = Signal(signed(c.value_width))
        col = self.columns.payload
        take = Signal()
        m.d.comb += [
            take.eq(self.columns.valid & ~ended & (
                self.error | (running & (rq.level + a_valid < self.RANGE_DEPTH)))),
            self.columns.ready.eq(take),
            self.ptr_addr.eq(Mux(self.start, self.desc.ptr_base,
                                 ptr_base + 1 + Mux(h2, count, col.col))),
        ]
        with m.If(take & col.end):
            m.d.sync += ended.eq(1)
        m.d.sync += a_valid.eq(take & ~col.end & running)
        with m.If(take):
            m.d.sync += [
                a_first.eq(col.col == 0),
                a_outside.eq(col.col >= count),
                a_x.eq(col.value),
            ]
        r_start = Mux(a_first | a_outside, 0, self.ptr_data)
        r_end = Mux(a_outside, 0, self.ptr_data_next)
        with m.If(a_valid & running):
            with m.If((r_end < r_start) | (r_end > nz_max)):
                m.d.comb += kill.eq(1)
            with m.Else():
                m.d.comb += [rq.din.eq(Cat(r_start, r_end, a_x)), rq.push.eq(1)]

        # ------------------------------------------------------------------
        # Entry walker (stage 0), memory stage (1), output register (2).
        # ------------------------------------------------------------------
        head_start = rq.head[:word]
        head_end = rq.head[word:2 * word]
        head_x = rq.head[2 * word:]
        fresh = Signal()            # the head range has not been started
        k = Signal(word)            # next entry of the head range
        index = Mux(fresh, head_start, k)

        v1 = Signal()
        x1 = Signal(signed(c.value_width))
        out = self.products
        adv2 = ~out.valid | out.ready
        adv1 = ~v1 | adv2
        offer = rq.nonempty & self.enable & running
        step = offer & adv1
        entry = index != head_end
        m.d.comb += [
            rq.pop.eq(step & (~entry | (index + 1 == head_end))),
            self.nz_en.eq(adv1),
            self.nz_addr.eq(nz_base + index),
            self.meta_addr.eq(nz_base + index),
        ]
        with m.If(step):
            m.d.sync += [k.eq(index + 1), fresh.eq(rq.pop)]

        # Entries of the columns never visited: the tile's entries (the last
        # column's end, read in the cycle after the header) minus those walked.
        total = Signal(word)
        walked = Signal(word)
        with m.If(h3):
            m.d.sync += total.eq(Mux(count == 0, 0, self.ptr_data))
        with m.If(step & entry):
            m.d.sync += walked.eq(walked + 1)
        m.d.comb += self.unvisited.eq(total - walked)
        m.d.comb += self.released.eq(rq.pop | (take & (col.end | self.error)))
        with m.If(adv1):
            m.d.sync += [v1.eq(step & entry), x1.eq(head_x)]

        # A row past n: the product is dropped here, the rest in the next cycle.
        row_error = Signal()
        row_error_q = Signal()
        m.d.comb += row_error.eq(v1 & (self.meta_data >= n))
        m.d.sync += row_error_q.eq(row_error)
        with m.If(row_error_q):
            m.d.comb += kill.eq(1)

        with m.If(out.ready):
            m.d.sync += out.valid.eq(0)
        with m.If(adv2 & v1 & ~row_error & ~row_error_q):
            m.d.sync += out.valid.eq(1)
        with m.If(adv2 & v1):
            m.d.sync += [
                out.payload.a.eq(self.nz_data.value),
                out.payload.x.eq(x1),
                out.payload.row.eq(self.meta_data),
                out.payload.last.eq(1),
                out.payload.empty.eq(0),
            ]

        # ------------------------------------------------------------------
        # Start, errors, status.
        # ------------------------------------------------------------------
        with m.If(kill):
            m.d.sync += [self.error.eq(1), running.eq(0), v1.eq(0), a_valid.eq(0)]
            m.d.comb += rq.flush.eq(1)

        with m.If(self.start):
            m.d.sync += [
                ptr_base.eq(self.desc.ptr_base),
                nz_base.eq(self.desc.nz_base),
                x_base.eq(self.desc.x_base),
                out_base.eq(self.desc.out_base),
                running.eq(0),
                ended.eq(0),
                walked.eq(0),
                a_valid.eq(0),
                fresh.eq(1),
                v1.eq(0),
                row_error_q.eq(0),
                self.error.eq(0),
            ]
            m.d.comb += rq.flush.eq(1)

        started = Signal()
        with m.If(self.start):
            m.d.sync += started.eq(1)
        m.d.comb += self.busy.eq(h1 | (started & ~ended) | a_valid | rq.nonempty | v1 |
                                 row_error_q | out.valid)
        return m
