r"""The zeroskip instruction set and host memory map, defined once.

The sequencer decodes ``Signal(Insn)``, the assembler encodes with
``Insn.const({...}).as_bits()`` and the disassembler decodes with
``Insn.from_bits()``. The driver and the AXI4-Lite slave both take register
offsets and window addresses from :class:`MemoryMap`. Nothing else in the
project spells out an encoding.

Execution semantics (the ISA model implements them bit-exactly):

``SPMV`` runs one tile of ``y = A @ x`` on every lane at once. For lane ``p``
the tile descriptor lives in that lane's row-pointer memory ``ptr``:
``ptr[ptr_base]`` is the lane's row count ``n`` and ``ptr[ptr_base + 1 + i]``
the end (exclusive, relative to ``nz_base``) of local row ``i``'s nonzeros;
row ``i`` starts where row ``i - 1`` ended (row 0 at 0). Each nonzero entry in
``nz[nz_base + k]`` holds a column ``col`` and a value ``a``; the operand is
``x[x_base + col]``. Row ``i``'s result goes to ``out[out_base + i]``:

1. ``s = sum(a * x)`` over the row, in stored order (zero products are
   skipped, not computed);
2. if ``accumulate``: ``s += out[out_base + i]`` (a partial sum of an earlier
   column tile);
3. if ``bias``: ``s += bias[out_base + i]``;
4. if ``epilogue``: ``s = (s + round) >> shift`` (arithmetic, ``round`` is
   ``1 << (shift - 1)`` or 0 when ``shift`` is 0), then ``max(s, 0)`` if
   ``relu``, then clamped to ``[clamp_lo, clamp_hi]`` and saturated to the
   value width; the epilogue parameters are those of the last ``SET_EPI``.
   :func:`zeroskip.core.arith.epilogue` is this rule in NumPy (the one definition
   the ISA model, the references and the compiler use).

``SPMV.fmt`` (:class:`Format`) selects how the lane's tile is stored. Every
format starts with ``ptr[ptr_base] = n`` (the lane's rows); ``meta`` is a
second per-lane memory of 16-bit words indexed like ``nz``. The formats and
their layouts are defined once, in :data:`zeroskip.core.formatspec.SPECS`
(:attr:`~zeroskip.core.formatspec.FormatSpec.layout`). A row format (dataflow
``row`` or ``dense``) streams row after row; a column-mode format (CSC,
activation zero-skipping) visits only the columns with ``x[x_base + j] != 0``
and sums a row's products in column order. Steps 2 to 4 then apply as above.

A format the hardware was generated without is an illegal instruction.

``REDUCE`` (the scatter/reduce network, present when ``config.reduce``) adds
partial sums across lanes, so that a row split over several lanes can be
summed back. Lane ``p``'s route list lives in its ``ptr`` memory:
``ptr[ptr_base] = m`` routes, ``ptr[ptr_base + 1] = s`` the lane's first
source row, and route ``i`` is ``ptr[ptr_base + 2 + i] = r | q <<
row_addr_width`` (:func:`route_word`). For every lane ``p`` and ``i < m``::

    out[q][dst_base + r] += out[p][src_base + s + i]

Destination words must not be source words of the same ``REDUCE`` (then the
order of the additions does not matter). A sum that leaves ``acc_width``
signed bits stops the program with :attr:`ErrorCode.OVERFLOW`;
``ptr_base + 2 + m > row_depth`` or ``src_base + s + m > row_depth`` (found
before any addition), a destination lane ``q >= pes`` or ``dst_base + r >=
row_depth`` (found while streaming) with :attr:`ErrorCode.DESCRIPTOR`. The
bias and the epilogue are not applied: a program that splits rows runs the
row pieces with neither, adds them up with ``REDUCE`` and then finishes the rows with an
``SPMV`` over empty rows with ``accumulate`` set (steps 2 to 4 on the sums).
``REDUCE`` without ``config.reduce`` is an illegal instruction, as is ``MOVE``
without ``config.move``.

``MOVE`` copies every lane's outputs into the input vector, so that the next
layer reads them without the host. For every lane ``p`` and ``i < count``::

    x[dst_base + p * count + i] = saturate(out[p][src_base + i])

(lane-major: lane ``p``'s ``count`` words form the ``p``-th block of X; the
next layer's columns are ordered to match). ``saturate`` clamps an
output word to the signed value width; the epilogue already leaves values
in it, so ``MOVE`` after an ``SPMV`` with ``epilogue`` copies its results
unchanged. Every copy of x (one per gather cluster) takes the word.
``src_base + count > row_depth`` or ``dst_base + pes * count > x_depth``
stops the program with :attr:`ErrorCode.DESCRIPTOR` before anything is
written. ``MOVE`` changes no counter but ``CYCLES`` and ``INSNS``; every
configuration has it.

``LOAD`` (present when ``config.ext_words`` is nonzero; without an external
memory it is an illegal instruction) copies lane images from the external
memory ``ext`` (``ext_words`` 32-bit words, filled by the host through
``EXT_ADDR``/``EXT_DATA``) into one lane memory of every lane, lane-major
like ``MOVE``: for every lane ``p`` and ``i < count``::

    mem[p][dst_base + i] = ext[src + p * count + i]

where ``mem`` is the ``ptr``, ``nz``, ``meta`` or ``bias`` memory
(``LOAD.region``, :class:`LoadRegion`) and each word is taken as a host write
of the same word to that window takes it (``ptr`` keeps its low
``ptr_width`` bits, ``nz`` the packed entry, ``meta`` 16 bits, ``bias`` is
sign-extended from ``acc_width`` bits). ``dst_base + count`` above the
region's depth or ``src + pes * count > ext_words`` stops the program with
:attr:`ErrorCode.DESCRIPTOR` before anything is written. One ``LOAD`` carries
up to 65,535 words per lane; ``src`` addresses ``2 ** 26`` words.

``LOAD`` runs in the background: the DMA engine performs the loads one after
another in the order they were issued, while the sequencer goes on with the
next instructions, so that the next tile's images stream in while the
current tile computes (double buffering: two halves of the lane memories).
``SYNC`` waits until every ``LOAD`` issued before it has completed; ``HALT``
waits the same way, so a run ends with its loads done. An instruction that
reads lane words a ``LOAD`` writes must come after a ``SYNC`` that follows
that ``LOAD``; before it, what it reads is undefined (the ISA model gives it
the loaded words). Only ``LOAD`` and the host write the four memories, and
every other instruction finishes before the next is fetched, so a ``LOAD``
never overwrites words an earlier instruction still reads. The DMA engine
holds :data:`zeroskip.core.timing.LOAD_QUEUE` loads; the cycles are the
rule of :mod:`zeroskip.core.timing` (:func:`~zeroskip.core.timing.load_cycles`).
``SYNC`` without an external memory is an illegal instruction too. The
generated hardware's DMA engine is ``zeroskip.hdl.dma``, on the
external-memory port of ``zeroskip.hdl.extmem``.
``LOAD`` and ``SYNC`` change no counter but ``CYCLES`` and ``INSNS``. After
an error, the words of loads that had not completed are undefined.

Why an explicit ``SYNC`` rather than an implicit wait when an instruction
reads a region with a pending load: double buffering keeps both halves of a
region in one memory, so a per-region wait would also stall on the half that
is being computed from; a per-word wait needs address comparators in every
lane. One wait instruction, placed by the compiler, is the simplest rule that
lets a load overlap compute.

Every partial sum in steps 1 to 3 must fit ``acc_width`` signed bits; one that
does not stops the program with :attr:`ErrorCode.OVERFLOW` after the
instruction. A descriptor reaching outside a memory stops it with
:attr:`ErrorCode.DESCRIPTOR`: a row count or output range that does not fit is
found before anything is written; a row end or column found out of range
while streaming stops the instruction there. After any error the ``out``
words and the counters of the failing instruction are undefined; ``STATUS``
and ``PC`` are exact.
"""


import types

from amaranth.hdl import signed, unsigned
from amaranth.lib import data, enum

from zeroskip.core.config import AcceleratorConfig
from zeroskip.core.formatspec import NM_WORD_BITS, SPECS

__all__ = [
    "INSN_WIDTH", "Opcode", "ErrorCode", "Format", "META_WIDTH", "BITMAP_CHUNK", "SpmvArgs",
    "EpiArgs", "ReduceArgs", "MoveArgs", "LoadRegion", "LoadArgs", "InsnArgs", "route_word",
    "Insn", "nz_entry_layout", "NmWord", "Reg",
    "Region", "MemoryMap", "EXT_BURST", "LOAD_REGIONS", "HARDWARE_ID", "STATUS_LAYOUT",
    "status_word", "status_code",
]

#: Bits of one instruction; the host writes it as two 32-bit words, low first.
INSN_WIDTH = 64

#: Value of the ``ID`` register: ``"ZS"`` and the ISA version.
HARDWARE_ID = 0x5A53_0001


class Opcode(enum.Enum, shape=4):
    """Instruction opcodes; every other value is an illegal instruction."""
    NOP = 0
    HALT = 1
    SET_EPI = 2
    SPMV = 3
    REDUCE = 4
    MOVE = 5
    LOAD = 6
    SYNC = 7


class ErrorCode(enum.Enum, shape=8):
    """Error codes reported in ``STATUS[15:8]``."""
    NONE = 0
    #: The fetched word does not decode to an instruction.
    ILLEGAL_INSN = 1
    #: A tile descriptor reaches outside a buffer.
    DESCRIPTOR = 2
    #: A partial sum did not fit the accumulator.
    OVERFLOW = 3
    #: The program counter ran past the instruction memory without ``HALT``.
    PC_OVERRUN = 4


def _format_members(namespace):
    namespace.update({"__module__": __name__, "__qualname__": "Format",
                      "__doc__": "Storage formats of a tile, selected by ``SPMV.fmt``: one "
                                 "member per :data:`zeroskip.core.formatspec.SPECS` entry."})
    namespace.update({spec.member: spec.code for spec in SPECS})


#: Storage formats of a tile, selected by ``SPMV.fmt`` (``Format.CSR`` ... ``Format.CSC``):
#: one member per :data:`zeroskip.core.formatspec.SPECS` entry, named ``spec.member``.
Format = types.new_class("Format", (enum.Enum,), {"shape": 3}, _format_members)


#: Bits of a ``meta`` word (COO and CSC rows, BITMAP chunks).
META_WIDTH = 16
#: Columns described by one BITMAP chunk.
BITMAP_CHUNK = META_WIDTH


class SpmvArgs(data.Struct):
    """Operands of ``SPMV`` (see the module documentation)."""
    accumulate: unsigned(1)
    epilogue: unsigned(1)
    bias: unsigned(1)
    fmt: Format
    ptr_base: unsigned(12)
    nz_base: unsigned(16)
    x_base: unsigned(14)
    out_base: unsigned(12)


class ReduceArgs(data.Struct):
    """Operands of ``REDUCE`` (see the module documentation)."""
    ptr_base: unsigned(12)
    src_base: unsigned(12)
    dst_base: unsigned(12)


class MoveArgs(data.Struct):
    """Operands of ``MOVE`` (see the module documentation): ``count`` words per
    lane from ``out[src_base]`` into X from ``dst_base``, lane-major."""
    src_base: unsigned(12)
    dst_base: unsigned(14)
    count: unsigned(13)


class LoadRegion(enum.Enum, shape=2):
    """The lane memory a ``LOAD`` writes (``LOAD.region``)."""
    PTR = 0
    NZ = 1
    META = 2
    BIAS = 3


class LoadArgs(data.Struct):
    """Operands of ``LOAD`` (see the module documentation): ``count`` words per lane
    from ``ext[src]`` (lane-major) into ``region`` from ``dst_base`` on every lane."""
    region: LoadRegion
    dst_base: unsigned(16)
    count: unsigned(16)
    src: unsigned(26)


class EpiArgs(data.Struct):
    """Operands of ``SET_EPI``: the epilogue applied by later ``SPMV``."""
    shift: unsigned(5)
    relu: unsigned(1)
    clamp_lo: signed(16)
    clamp_hi: signed(16)


class InsnArgs(data.Union):
    spmv: SpmvArgs
    epi: EpiArgs
    reduce: ReduceArgs
    move: MoveArgs
    load: LoadArgs


class Insn(data.Struct):
    """One 64-bit instruction: opcode in the low 4 bits, then operands."""
    opcode: Opcode
    args: InsnArgs


assert Insn.as_shape().size == INSN_WIDTH


def nz_entry_layout(config: AcceleratorConfig):
    """Layout of one word of a lane's nonzero memory: column, then value."""
    return data.StructLayout({
        "col": unsigned(config.col_width),
        "value": signed(config.value_width),
    })


class NmWord(data.Struct):
    """The descriptor word of an ``NM`` tile, ``ptr[ptr_base + 2]``: ``N | log2(M) << 8``.

    The compiler encodes it with ``NmWord.const({...}).as_bits()``, the ISA
    model reads its fields and the format decoder views the pointer word as
    ``NmWord``; the bits of a pointer word above it are ignored.
    """
    #: Slots of a group (nonzeros kept of every ``M`` columns).
    n: unsigned(8)
    #: ``log2(M)``: a group covers ``M`` columns (up to ``2 ** 15``).
    log2_m: unsigned(4)


assert NmWord.as_shape().size == NM_WORD_BITS


def route_word(config: AcceleratorConfig, lane, row):
    """The ``REDUCE`` route to ``out[lane][dst_base + row]`` (a ``ptr`` word)."""
    return row | lane << config.row_addr_width


class Reg(enum.IntEnum):
    """Byte offsets of the control and status registers (region ``CSR``)."""
    #: Read: :data:`HARDWARE_ID`.
    ID = 0x00
    #: Read: ``pes | value_width << 8 | acc_width << 16``.
    CONFIG = 0x04
    #: Read: the first 32 bits of :attr:`AcceleratorConfig.fingerprint`.
    FINGERPRINT = 0x08
    #: Write: bit 0 starts at instruction 0 (ignored while busy); bit 1 clears
    #: status and counters.
    CTRL = 0x10
    #: Read: bit 0 busy, bit 1 done, bit 2 error, bits 15:8 :class:`ErrorCode`.
    STATUS = 0x14
    #: Read: address of the instruction executing, or of the one that failed.
    PC = 0x18
    CYCLES = 0x20
    INSNS = 0x24
    MACS = 0x28
    SKIPPED = 0x2C
    GATHER_STALLS = 0x30
    #: Cycles in which a lane offered a ``REDUCE`` partial sum the scatter
    #: network did not take (its destination lane took another lane's).
    SCATTER_STALLS = 0x34
    #: Read/write: the external-memory word address the next ``EXT_DATA`` access
    #: reaches (a write of an address at or past ``ext_words`` answers ``SLVERR``).
    EXT_ADDR = 0x38
    #: Read/write: ``ext[EXT_ADDR]``, after which ``EXT_ADDR`` increments. The
    #: :data:`EXT_BURST` words from here are all this port, so a burst to
    #: consecutive addresses streams consecutive words; accesses while busy answer
    #: ``SLVERR``. Without an external memory both registers are unassigned (they
    #: read 0, writes answer ``SLVERR``).
    EXT_DATA = 0x400
    #: ``PE_BUSY + 4 * p``: cycles in which PE ``p`` consumed a nonzero.
    PE_BUSY = 0x100


#: Words from :attr:`Reg.EXT_DATA` that all reach the ``EXT_DATA`` port.
EXT_BURST = 256

assert Reg.PE_BUSY + 4 * 64 <= Reg.EXT_DATA


#: The ``STATUS`` register's bits, low first (the rest of the word reads 0).
STATUS_LAYOUT = data.StructLayout({"busy": 1, "done": 1, "error": 1, "reserved": 5,
                                   "code": ErrorCode})
STATUS_BUSY = 1 << STATUS_LAYOUT["busy"].offset
STATUS_DONE = 1 << STATUS_LAYOUT["done"].offset
STATUS_ERROR = 1 << STATUS_LAYOUT["error"].offset


def status_word(*, busy, done, code):
    """The ``STATUS`` word of a machine that is ``busy``/``done`` with error ``code``."""
    code = ErrorCode(code)
    return ((STATUS_BUSY if busy else 0) | (STATUS_DONE if done else 0)
            | (STATUS_ERROR if code != ErrorCode.NONE else 0)
            | code.value << STATUS_LAYOUT["code"].offset)


def status_code(status):
    """The error-code field of a ``STATUS`` word, as an int (it may name no :class:`ErrorCode`)."""
    field = STATUS_LAYOUT["code"]
    return (int(status) >> field.offset) & ((1 << field.width) - 1)


CTRL_START = 1 << 0
CTRL_CLEAR = 1 << 1


class Region(enum.IntEnum):
    """Windows of the host address space, selected by address bits 27:24."""
    CSR = 0
    IMEM = 1  # write: instruction i at 8*i (low word) and 8*i+4 (high word)
    X = 2     # write: x[j] at 4*j (the hardware spreads it over the banks)
    PTR = 3   # write, per lane: row-pointer word i
    NZ = 4    # write, per lane: nonzero entry i (nz_entry_layout, packed)
    BIAS = 5  # write, per lane: bias of local row i (acc_width, signed)
    OUT = 6   # read, per lane: output word of local row i (acc_width, signed)
    META = 7  # write, per lane: meta word i (META_WIDTH bits)


#: The host window of each :class:`LoadRegion` (a ``LOAD`` word is that window's word).
LOAD_REGIONS = {LoadRegion.PTR: Region.PTR, LoadRegion.NZ: Region.NZ,
                LoadRegion.META: Region.META, LoadRegion.BIAS: Region.BIAS}


class MemoryMap:
    """Byte addresses of everything the host reads or writes.

    Addresses are 28 bits: ``region << 24``; per-lane windows add
    ``lane << 18``; words are 4 bytes apart. Writes to memory windows while
    the accelerator is busy, accesses outside any window and reads of
    write-only windows answer ``SLVERR``.
    """

    ADDR_WIDTH = 28
    REGION_SHIFT = 24
    LANE_SHIFT = 18

    def __init__(self, config: AcceleratorConfig):
        self.config = config

    @staticmethod
    def reg(reg):
        return int(reg)

    @staticmethod
    def pe_busy(pe):
        return int(Reg.PE_BUSY) + 4 * pe

    def imem(self, index):
        """Address of the low word of instruction ``index``."""
        return (Region.IMEM << self.REGION_SHIFT) + 8 * index

    def x(self, index):
        return (Region.X << self.REGION_SHIFT) + 4 * index

    def lane(self, region, lane, index):
        """Address of word ``index`` of ``lane``'s memory in ``region``."""
        return (region << self.REGION_SHIFT) + (lane << self.LANE_SHIFT) + 4 * index

    def depth(self, region):
        """Words in one window (per lane for per-lane regions)."""
        c = self.config
        return {
            Region.IMEM: 2 * c.imem_depth,
            Region.X: c.x_depth,
            Region.PTR: c.row_depth,
            Region.NZ: c.nz_depth,
            Region.BIAS: c.row_depth,
            Region.OUT: c.row_depth,
            Region.META: c.nz_depth,
        }[Region(region)]

    def ext(self):
        """Addresses of the external memory's port: ``(EXT_ADDR, EXT_DATA)``."""
        return int(Reg.EXT_ADDR), int(Reg.EXT_DATA)

    def fingerprint_word(self):
        return int(self.config.fingerprint[:8], 16)

    def config_word(self):
        c = self.config
        return c.pes | c.value_width << 8 | c.acc_width << 16
