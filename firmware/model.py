"""The ISA model: a register-level twin of the accelerator.

:class:`Machine` has the hardware's memories and registers behind the same
host memory map (:class:`~.isa.MemoryMap`), executes instructions with the
semantics of :mod:`.isa` bit-exactly (vectorized with NumPy) and counts
cycles with the timing contract (:mod:`.timing`). It has no notion of wall
time: writing ``CTRL.start`` runs the program to ``HALT`` or an error at once.
"""

from __future__ import annotations

import numpy as np

from zeroskip.core.arith import epilogue, sign_extend
from zeroskip.core.config import AcceleratorConfig
from zeroskip.core.isa import (
    CTRL_CLEAR,
    CTRL_START,
    EXT_BURST,
    HARDWARE_ID,
    LOAD_REGIONS,
    META_WIDTH,
    ErrorCode,
    Format,
    LoadRegion,
    MemoryMap,
    Opcode,
    Reg,
    Region,
    nz_entry_layout,
    status_word,
)
from zeroskip.firmware.asm import decode
from zeroskip.firmware.cycles import RunCycles
from zeroskip.firmware.formats import (
    DescriptorFault,
    decode_csr_lanes,
    decode_lane,
    format_name,
)
from zeroskip.firmware.operands import check_load, check_move, decode_routes

__all__ = ["BusError", "Machine"]

_MASK32 = 0xFFFF_FFFF
_REGIONS = {region.value: region for region in Region}
#: The instructions that run on the data path: their method, which charges
#: their cycles and returns whether a sum overflowed.
_EXECUTE = {Opcode.SPMV: "_spmv", Opcode.REDUCE: "_reduce", Opcode.MOVE: "_move",
            Opcode.LOAD: "_load"}
_COUNTERS = {Reg.CYCLES: "cycles", Reg.INSNS: "insns", Reg.MACS: "macs",
             Reg.SKIPPED: "skipped", Reg.GATHER_STALLS: "gather_stalls",
             Reg.SCATTER_STALLS: "scatter_stalls"}


class BusError(Exception):
    """A bus access the hardware answers with ``SLVERR``.

    Attributes
    ----------
    address : int
        The byte address of the access.
    """

    def __init__(self, message, *, address):
        super().__init__(message)
        self.address = address


class _Fault(Exception):
    def __init__(self, code):
        self.code = code


class Machine:
    """Register-level model of one accelerator.

    Parameters
    ----------
    config : AcceleratorConfig

    Attributes
    ----------
    imem : numpy.ndarray of uint64
    x : numpy.ndarray of int64
    ptr, nz, meta : numpy.ndarray of int64, shape (pes, depth)
        Row-pointer words, packed nonzero words and meta words.
    bias, out : numpy.ndarray of int64, shape (pes, row_depth)
        Signed accumulator-width values.
    ext : numpy.ndarray of uint32, shape (ext_words,)
        The external memory (empty without one); ``ext_addr`` is ``EXT_ADDR``.
    """

    def __init__(self, config):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
        self.config = config
        self.map = MemoryMap(config)
        c = config
        self.imem = np.zeros(c.imem_depth, dtype=np.uint64)
        self.x = np.zeros(c.x_depth, dtype=np.int64)
        self.ptr = np.zeros((c.pes, c.row_depth), dtype=np.int64)
        self.nz = np.zeros((c.pes, c.nz_depth), dtype=np.int64)
        self.meta = np.zeros((c.pes, c.nz_depth), dtype=np.int64)
        # Decoded lane images by descriptor, emptied by every write of ptr, nz or meta.
        self._decoded = {}
        self.bias = np.zeros((c.pes, c.row_depth), dtype=np.int64)
        self.out = np.zeros((c.pes, c.row_depth), dtype=np.int64)
        self.ext = np.zeros(c.ext_words, dtype=np.uint32)
        self.ext_addr = 0
        self._ptr_mask = (1 << c.ptr_width) - 1
        self._nz_mask = (1 << nz_entry_layout(c).size) - 1
        self._meta_mask = (1 << META_WIDTH) - 1
        self._formats = {fmt for fmt in Format if format_name(fmt) in c.formats}
        self._depths = {region: self.map.depth(region) for region in Region
                        if region != Region.CSR}
        # Epilogue registers: reset to 0, set only by SET_EPI (they outlive runs).
        self.epi_shift, self.epi_relu, self.epi_lo, self.epi_hi = 0, False, 0, 0
        self.busy = False
        self.pc = 0
        self._clear()

    def _clear(self):
        self.done = False
        self.error = ErrorCode.NONE
        self.counters = dict.fromkeys(_COUNTERS.values(), 0)
        self.pe_busy = [0] * self.config.pes

    # Host bus.

    def _decode_address(self, address):
        if not isinstance(address, (int, np.integer)) or not 0 <= address < 1 << 32:
            raise BusError(f"address {address!r} is not a 32-bit address", address=address)
        address = int(address)
        if address & 3 or address >> MemoryMap.ADDR_WIDTH:
            raise BusError(f"address {address:#x} is not a word of the memory map",
                           address=address)
        region = address >> MemoryMap.REGION_SHIFT
        offset = address & ((1 << MemoryMap.REGION_SHIFT) - 1)
        region = _REGIONS.get(region)
        if region is None:
            raise BusError(f"address {address:#x} is outside every window",
                           address=address)
        if region in (Region.CSR, Region.IMEM, Region.X):
            return region, None, offset // 4
        lane = offset >> MemoryMap.LANE_SHIFT
        index = (offset & ((1 << MemoryMap.LANE_SHIFT) - 1)) // 4
        if lane >= self.config.pes or index >= self._depths[region]:
            raise BusError(f"address {address:#x} is outside the {region.name} window",
                           address=address)
        return region, lane, index

    def write_word(self, address, value):
        """Write one 32-bit word.

        Raises
        ------
        BusError
            For an address outside every window, a read-only register or
            window, or a memory write while busy.
        """
        value = int(value)
        if not 0 <= value <= _MASK32:
            raise ValueError(f"bus word {value:#x} does not fit 32 bits")
        region, lane, index = self._decode_address(address)
        if region == Region.CSR:
            if self.config.ext_words and self._ext_offset(index * 4) is not None:
                self._write_ext(address, index * 4, np.array([value], dtype=np.int64))
                return
            if index * 4 != Reg.CTRL:
                raise BusError(f"register at {address:#x} is not writable", address=address)
            self._ctrl(value)
            return
        if self.busy:
            raise BusError(f"write to {region.name} at {address:#x} while busy",
                           address=address)
        if region == Region.IMEM:
            if index >= 2 * self.config.imem_depth:
                raise BusError(f"address {address:#x} is outside the IMEM window",
                               address=address)
            word = int(self.imem[index // 2])
            shift = 32 * (index & 1)
            word = word & ~(_MASK32 << shift) | value << shift
            self.imem[index // 2] = word
        elif region == Region.X:
            if index >= self.config.x_depth:
                raise BusError(f"address {address:#x} is outside the X window",
                               address=address)
            self.x[index] = sign_extend(value, self.config.value_width)
        elif region == Region.PTR:
            self.ptr[lane, index] = value & self._ptr_mask
            self._decoded.clear()
        elif region == Region.NZ:
            self.nz[lane, index] = value & self._nz_mask
            self._decoded.clear()
        elif region == Region.META:
            self.meta[lane, index] = value & self._meta_mask
            self._decoded.clear()
        elif region == Region.BIAS:
            self.bias[lane, index] = sign_extend(value, self.config.acc_width)
        else:
            raise BusError(f"{region.name} window at {address:#x} is read-only",
                           address=address)

    def read_word(self, address):
        """Read one 32-bit word.

        Unassigned register offsets read 0.

        Raises
        ------
        BusError
            For an address outside every window or a write-only window.
        """
        region, lane, index = self._decode_address(address)
        if region == Region.OUT:
            return int(self.out[lane, index]) & _MASK32
        if region != Region.CSR:
            raise BusError(f"{region.name} window at {address:#x} is write-only",
                           address=address)
        offset = index * 4
        if self.config.ext_words and self._ext_offset(offset) is not None:
            return int(self._read_ext(address, offset, 1)[0])
        if offset >= Reg.PE_BUSY:
            pe = (offset - Reg.PE_BUSY) // 4
            return self.pe_busy[pe] & _MASK32 if pe < self.config.pes else 0
        if offset in _COUNTERS:
            return self.counters[_COUNTERS[offset]] & _MASK32
        elif offset == Reg.ID:
            return HARDWARE_ID
        elif offset == Reg.CONFIG:
            return self.map.config_word()
        elif offset == Reg.FINGERPRINT:
            return self.map.fingerprint_word()
        elif offset == Reg.STATUS:
            return self.status
        elif offset == Reg.PC:
            return self.pc & _MASK32
        return 0

    def write_words(self, address, words):
        """Write consecutive words from ``address`` (a bulk :meth:`write_word`)."""
        words = np.asarray(words, dtype=np.int64).reshape(-1)
        if len(words) == 0:
            return
        if words.min() < 0 or words.max() > _MASK32:
            raise ValueError("bus words must fit 32 bits")
        region, lane, index = self._decode_address(address)
        last = address + 4 * (len(words) - 1)
        if region == Region.CSR and self.config.ext_words and \
                self._ext_offset(index * 4) == "data" and \
                self._ext_offset(index * 4 + 4 * (len(words) - 1)) == "data":
            self._write_ext(address, index * 4, words)
            return
        if (region == Region.IMEM and not self.busy and index % 2 == 0 and len(words) % 2 == 0
                and index + len(words) <= 2 * self.config.imem_depth):
            # Whole instructions: low word, then high word.
            pairs = words.reshape(-1, 2).astype(np.uint64)
            self.imem[index // 2:index // 2 + len(pairs)] = pairs[:, 0] | pairs[:, 1] << 32
            return
        if (region in (Region.CSR, Region.IMEM) or self._decode_address(last)[:2]
                != (region, lane)):
            for k, word in enumerate(words.tolist()):
                self.write_word(address + 4 * k, word)
            return
        if region == Region.X and index + len(words) > self.config.x_depth:
            raise BusError(f"address {last:#x} is outside the X window", address=last)
        if self.busy:
            raise BusError(f"write to {region.name} at {address:#x} while busy",
                           address=address)
        span = slice(index, index + len(words))
        if region == Region.X:
            self.x[span] = sign_extend(words, self.config.value_width)
        elif region == Region.PTR:
            self.ptr[lane, span] = words & self._ptr_mask
            self._decoded.clear()
        elif region == Region.NZ:
            self.nz[lane, span] = words & self._nz_mask
            self._decoded.clear()
        elif region == Region.META:
            self.meta[lane, span] = words & self._meta_mask
            self._decoded.clear()
        elif region == Region.BIAS:
            self.bias[lane, span] = sign_extend(words, self.config.acc_width)
        else:
            raise BusError(f"{region.name} window at {address:#x} is read-only",
                           address=address)

    def read_words(self, address, count):
        """Read ``count`` consecutive words from ``address``."""
        if count <= 0:
            return np.zeros(0, dtype=np.int64)
        region, lane, index = self._decode_address(address)
        last = address + 4 * (count - 1)
        if region == Region.CSR and self.config.ext_words and \
                self._ext_offset(index * 4) == "data" and \
                self._ext_offset(index * 4 + 4 * (count - 1)) == "data":
            return self._read_ext(address, index * 4, count).astype(np.int64)
        if region == Region.OUT and self._decode_address(last)[:2] == (region, lane):
            return self.out[lane, index:index + count] & _MASK32
        return np.array([self.read_word(address + 4 * k) for k in range(count)],
                        dtype=np.int64)

    # The external memory's port (EXT_ADDR, EXT_DATA).

    @staticmethod
    def _ext_offset(offset):
        """``"addr"``, ``"data"`` or ``None``: what the CSR byte ``offset`` is of the port."""
        if offset == Reg.EXT_ADDR:
            return "addr"
        if Reg.EXT_DATA <= offset < Reg.EXT_DATA + 4 * EXT_BURST:
            return "data"
        return None

    def _ext_span(self, address, count):
        """Refuse an ``EXT_DATA`` access of ``count`` words while busy or past the memory."""
        if self.busy:
            raise BusError(f"access to EXT_DATA at {address:#x} while busy", address=address)
        if self.ext_addr + count > self.config.ext_words:
            raise BusError(f"EXT_DATA at {address:#x}: external word "
                           f"{min(self.ext_addr + count, self.config.ext_words)} is past the "
                           f"external memory ({self.config.ext_words} words)", address=address)

    def _write_ext(self, address, offset, words):
        if self._ext_offset(offset) == "addr":
            value = int(words[0])
            if value >= self.config.ext_words:
                raise BusError(f"EXT_ADDR {value} is past the external memory "
                               f"({self.config.ext_words} words)", address=address)
            self.ext_addr = value
            return
        self._ext_span(address, len(words))
        self.ext[self.ext_addr:self.ext_addr + len(words)] = words
        self.ext_addr += len(words)

    def _read_ext(self, address, offset, count):
        if self._ext_offset(offset) == "addr":
            return np.array([self.ext_addr], dtype=np.int64)
        self._ext_span(address, count)
        words = self.ext[self.ext_addr:self.ext_addr + count].astype(np.int64)
        self.ext_addr += count
        return words

    # Control.

    @property
    def status(self):
        """The ``STATUS`` register."""
        return status_word(busy=self.busy, done=self.done, code=self.error)

    def _ctrl(self, value):
        if self.busy:
            return
        if value & CTRL_CLEAR:
            self._clear()
        if value & CTRL_START:
            self.run()

    def run(self):
        """Run from instruction 0 to ``HALT`` or an error (``CTRL.start``)."""
        self.done = False
        self.error = ErrorCode.NONE
        self.busy = True
        run = RunCycles(self.config)
        pc = 0
        try:
            while True:
                if pc >= self.config.imem_depth:
                    self.pc = pc
                    self._charge(run.overrun())
                    raise _Fault(ErrorCode.PC_OVERRUN)
                self.pc = pc
                opcode, args = decode(int(self.imem[pc]))
                disabled = (opcode == Opcode.SPMV and Format(args["fmt"]) not in self._formats
                            or opcode == Opcode.REDUCE and not self.config.reduce
                            or opcode == Opcode.MOVE and not self.config.move
                            or opcode in (Opcode.LOAD, Opcode.SYNC)
                            and not self.config.ext_words)
                if opcode is None or disabled:
                    self._charge(run.other())
                    raise _Fault(ErrorCode.ILLEGAL_INSN)
                if opcode in _EXECUTE:
                    try:
                        overflow = getattr(self, _EXECUTE[opcode])(args, run)
                    except _Fault:
                        self._charge(run.other())
                        raise
                    if overflow:
                        raise _Fault(ErrorCode.OVERFLOW)
                    self._count("insns", 1)
                else:
                    waits = opcode in (Opcode.HALT, Opcode.SYNC)
                    self._charge(run.sync() if waits else run.other())
                    self._count("insns", 1)
                    if opcode == Opcode.HALT:
                        break
                    if opcode == Opcode.SET_EPI:
                        self.epi_shift, self.epi_relu = args["shift"], bool(args["relu"])
                        self.epi_lo, self.epi_hi = args["clamp_lo"], args["clamp_hi"]
                pc += 1
            self.done = True
        except _Fault as fault:
            self.error = fault.code
        finally:
            self.busy = False

    def _count(self, name, amount):
        self.counters[name] = (self.counters[name] + int(amount)) & _MASK32

    def _charge(self, cost):
        """Add one instruction's :class:`~.cycles.Cost` to the counters."""
        self._count("cycles", cost.cycles)
        self._count("gather_stalls", cost.gather_stalls)
        self._count("scatter_stalls", cost.scatter_stalls)
        if cost.busy is not None:
            for p, busy in enumerate(cost.busy):
                self.pe_busy[p] = (self.pe_busy[p] + int(busy)) & _MASK32

    # SPMV.

    def _decode(self, key, decode):
        """``decode()`` of the lane images, once per descriptor ``key`` until they change."""
        if key not in self._decoded:
            try:
                self._decoded[key] = decode()
            except DescriptorFault:
                raise _Fault(ErrorCode.DESCRIPTOR) from None
        return self._decoded[key]

    def _lane_stream(self, p, args):
        def decode():
            return decode_lane(Format(args["fmt"]), self.ptr[p], self.nz[p], self.meta[p],
                               ptr_base=args["ptr_base"], nz_base=args["nz_base"],
                               x_base=0, out_base=0, config=self.config)
        # Decoding does not depend on the bases: decode once, check the bases each time.
        stream = self._decode((p, args["fmt"], args["ptr_base"], args["nz_base"]), decode)
        try:
            stream.check_bases(args["x_base"], args["out_base"], self.config)
        except DescriptorFault:
            raise _Fault(ErrorCode.DESCRIPTOR) from None
        return stream

    def _spmv(self, args, run):
        if Format(args["fmt"]) is Format.CSR:
            return self._spmv_csr(args, run)
        c = self.config
        streams = [self._lane_stream(p, args) for p in range(c.pes)]
        x_base = args["x_base"]
        column_mode = Format(args["fmt"]) is Format.CSC
        overflow = False
        tokens, busy = [], []
        for p, stream in enumerate(streams):
            n = stream.n
            if column_mode:
                # Only columns with a nonzero activation are visited.
                columns = len(stream.col_ends)
                visited = self.x[x_base:x_base + columns] != 0
                take = visited[stream.cols]
                rows, values = stream.rows[take], stream.values[take]
                operands = self.x[x_base + stream.cols[take]]
                # A row sums its products in column order.
                order = np.argsort(rows, kind="stable")
                rows, products = rows[order], (values * operands)[order]
                ends = np.cumsum(np.bincount(rows, minlength=n)) if n else rows
                macs = int(np.count_nonzero(products))
                self._count("macs", macs)
                self._count("skipped", len(stream.values) - macs)
                busy.append(len(products))
            else:
                tokens.append(stream.banks(x_base, c.x_banks))
                products = stream.values * self.x[x_base + stream.cols]
                macs = int(np.count_nonzero(products))
                self._count("macs", macs)
                self._count("skipped", len(products) - macs)
                ends = stream.row_ends()
            if n == 0:
                continue
            sums, row_overflow = _row_sums(products, ends, c)
            out_base = args["out_base"]
            rows = slice(out_base, out_base + n)
            if args["accumulate"]:
                sums = sums + self.out[p, rows]
                row_overflow |= (sums < c.acc_min) | (sums > c.acc_max)
            if args["bias"]:
                sums = sums + self.bias[p, rows]
                row_overflow |= (sums < c.acc_min) | (sums > c.acc_max)
            overflow |= bool(row_overflow.any())
            sums = sign_extend(sums, c.acc_width)
            if args["epilogue"]:
                sums = self._epilogue(sums)
            self.out[p, rows] = sums
        if column_mode:
            self._charge(run.column_mode(streams, args, self.x, busy))
        else:
            self._charge(run.spmv(tokens, args=args))
        return overflow

    def _spmv_csr(self, args, run):
        """``SPMV`` in CSR, every lane at once (the same rules as :meth:`_spmv`)."""
        c = self.config
        lanes = self._decode(("every lane", *args.values()), lambda: decode_csr_lanes(
            self.ptr, self.nz, ptr_base=args["ptr_base"], nz_base=args["nz_base"],
            x_base=args["x_base"], out_base=args["out_base"], config=c))
        products = lanes.values * self.x[args["x_base"] + lanes.cols]
        macs = int(np.count_nonzero(products))
        self._count("macs", macs)
        self._count("skipped", len(products) - macs)
        overflow = False
        if len(lanes.row_lane):
            sums, row_overflow = _row_sums(products, lanes.row_ends, c)
            where = (lanes.row_lane, args["out_base"] + lanes.row_local)
            if args["accumulate"]:
                sums = sums + self.out[where]
                row_overflow |= (sums < c.acc_min) | (sums > c.acc_max)
            if args["bias"]:
                sums = sums + self.bias[where]
                row_overflow |= (sums < c.acc_min) | (sums > c.acc_max)
            overflow = bool(row_overflow.any())
            sums = sign_extend(sums, c.acc_width)
            if args["epilogue"]:
                sums = self._epilogue(sums)
            self.out[where] = sums
        self._charge(run.spmv(lanes.tokens, args=args))
        return overflow

    # REDUCE.

    def _reduce(self, args, run):
        c = self.config
        try:
            routes = decode_routes(self.ptr, args, c)
        except DescriptorFault:
            raise _Fault(ErrorCode.DESCRIPTOR) from None
        cost = run.reduce([r.lanes for r in routes], trace=True, args=args)
        self._charge(cost)
        # Every route as (source word, destination word) of out.flat, in grant order.
        offsets = np.cumsum([0] + [len(r.lanes) for r in routes])
        sources = np.concatenate([p * c.row_depth + args["src_base"] + r.source
                                  + np.arange(len(r.lanes)) for p, r in enumerate(routes)])
        targets = np.concatenate([r.lanes * c.row_depth + args["dst_base"] + r.rows
                                  for r in routes])
        lane, index = cost.grants[:, 0], cost.grants[:, 1]
        flat = offsets[lane] + index
        if not len(flat):
            return False
        out = self.out.reshape(-1)
        values, targets = out[sources[flat]], targets[flat]
        # Each destination word adds its partial sums in the order it takes them.
        order = np.argsort(targets, kind="stable")
        targets, values = targets[order], values[order]
        first = np.flatnonzero(np.r_[True, targets[1:] != targets[:-1]])
        prefix = np.cumsum(values)
        before = np.repeat(prefix[first] - values[first], np.diff(np.r_[first, len(values)]))
        partial = out[targets] + prefix - before
        overflow = bool(((partial < c.acc_min) | (partial > c.acc_max)).any())
        last = np.r_[first[1:], len(values)] - 1
        out[targets[first]] = sign_extend(partial[last], c.acc_width)
        return overflow

    # MOVE.

    def _move(self, args, run):
        """Each lane's ``count`` outputs from ``src_base``, saturated to the value
        width, into X from ``dst_base`` (lane-major); never overflows."""
        c = self.config
        try:
            check_move(args, c)
        except DescriptorFault:
            raise _Fault(ErrorCode.DESCRIPTOR) from None
        count, src = args["count"], args["src_base"]
        words = self.out[:, src:src + count].reshape(-1)
        self.x[args["dst_base"]:args["dst_base"] + len(words)] = np.clip(words, c.value_min,
                                                                         c.value_max)
        self._charge(run.move(count))
        return False

    # LOAD.

    def _load(self, args, run):
        """Every lane's ``count`` words from ``ext[src + p * count]`` into its
        ``region`` memory from ``dst_base``, masked as the host window masks them;
        written at once (only the cycles run in the background); never overflows."""
        c = self.config
        try:
            check_load(args, c)
        except DescriptorFault:
            raise _Fault(ErrorCode.DESCRIPTOR) from None
        count, src, dst = args["count"], args["src"], args["dst_base"]
        words = self.ext[src:src + c.pes * count].astype(np.int64).reshape(c.pes, count)
        region = LOAD_REGIONS[LoadRegion(args["region"])]
        if region == Region.PTR:
            self.ptr[:, dst:dst + count] = words & self._ptr_mask
            self._decoded.clear()
        elif region == Region.NZ:
            self.nz[:, dst:dst + count] = words & self._nz_mask
            self._decoded.clear()
        elif region == Region.META:
            self.meta[:, dst:dst + count] = words & self._meta_mask
            self._decoded.clear()
        else:
            self.bias[:, dst:dst + count] = sign_extend(words, c.acc_width)
        self._charge(run.load(count))
        return False

    def _epilogue(self, sums):
        return epilogue(sums, shift=self.epi_shift, relu=self.epi_relu, clamp_lo=self.epi_lo,
                        clamp_hi=self.epi_hi, value_width=self.config.value_width)


def _row_sums(products, ends, config):
    """Row sums of ``products`` (rows end at ``ends``) and per-row overflow of
    any partial sum taken in stored order."""
    n = len(ends)
    ends = ends.astype(np.int64)
    starts = np.concatenate(([0], ends[:-1]))
    prefix = np.concatenate(([0], np.cumsum(products)))
    sums = prefix[ends] - prefix[starts]
    overflow = np.zeros(n, dtype=bool)
    if len(products):
        # Partial sums within each row: prefix minus the prefix at the row start.
        lengths = ends - starts
        row_of = np.repeat(np.arange(n), lengths)
        partial = prefix[1:] - prefix[starts][row_of]
        bad = (partial < config.acc_min) | (partial > config.acc_max)
        if bad.any():
            overflow[row_of[bad]] = True
    return sums, overflow
