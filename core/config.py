"""The one configuration of a zeroskip accelerator.

Every parameter of the generated hardware lives in :class:`AcceleratorConfig`.
The generator writes it next to the Verilog and the firmware compiler reads it
back, so a program can never be built for different hardware than it runs on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from zeroskip.core import formatspec
from zeroskip.core.errors import ConfigError

__all__ = ["AcceleratorConfig", "ConfigError", "PRODUCTS_PER_LANE", "EXT_WORDS_RANGE",
           "EXT_LATENCY_MAX", "EXT_WORDS_PER_CYCLE", "EXT_RATE_CYCLES_MAX", "check_generated"]

#: The values ``products_per_lane`` takes.
PRODUCTS_PER_LANE = (1, 2, 4, 8)

#: The sizes of an external memory (``ext_words`` other than 0): powers of two in
#: this range; the upper bound is what ``LOAD.src`` addresses (``LoadArgs``).
EXT_WORDS_RANGE = (1024, 1 << 26)
#: The largest ``ext_latency``.
EXT_LATENCY_MAX = 1024
#: The values ``ext_words_per_cycle`` takes.
EXT_WORDS_PER_CYCLE = (1, 2, 4, 8)
#: The largest ``ext_rate_cycles``.
EXT_RATE_CYCLES_MAX = 64
#: The external-memory fields, left out of :meth:`AcceleratorConfig.to_dict` at their defaults.
_EXT_FIELDS = ("ext_words", "ext_latency", "ext_words_per_cycle", "ext_rate_cycles")


def _is_pow2(value):
    return value > 0 and value & (value - 1) == 0


def _invalid(name, detail, *, sep=" "):
    """A :class:`ConfigError` for parameter ``name``: ``"<name><sep><detail>"``.

    The error keeps ``parameter``, ``detail`` and ``sep`` so that a front end
    can name the parameter its own way (the CLI says ``--value-width``).
    """
    error = ConfigError(f"{name}{sep}{detail}")
    error.parameter, error.detail, error.sep = name, detail, sep
    return error


def derived_x_banks(cluster_lanes, x_depth):
    """The ``x_banks`` that ``0`` stands for: 1 for a private copy of x, else
    ``2 * cluster_lanes`` rounded up to a power of two (at most ``x_depth``)."""
    banks = 1
    while cluster_lanes > 1 and banks < 2 * cluster_lanes:
        banks *= 2
    return min(banks, x_depth)


def _derive_again(data, changes):
    """``data`` updated with ``changes``; ``x_banks`` derived again if it was derived."""
    data = dict(data)
    defaults = {field.name: field.default for field in dataclasses.fields(AcceleratorConfig)}
    lanes = data.get("cluster_lanes", defaults["cluster_lanes"])
    x_depth = data.get("x_depth", defaults["x_depth"])
    if "x_banks" not in changes and isinstance(lanes, int) and isinstance(x_depth, int) and \
            data.get("x_banks", 0) == derived_x_banks(lanes, x_depth):
        data["x_banks"] = 0
    data.update(changes)
    return data


@dataclasses.dataclass(frozen=True)
class AcceleratorConfig:
    """Parameters of one zeroskip accelerator.

    Parameters
    ----------
    pes : int
        Number of processing elements (lanes), 1 to 64.
    value_width : int
        Width of stored matrix and vector values (signed), 8 or 16.
    acc_width : int
        Width of the accumulators and of the output buffer words (signed),
        from ``2 * value_width`` to 32.
    x_depth : int
        Entries of the input-vector buffer, a power of two from 16 to 16384.
    x_banks : int
        Banks each copy of the input-vector buffer is split into (element
        ``j`` lives in bank ``j % x_banks``); a power of two, at most
        ``x_depth``. ``0`` picks 1 when ``cluster_lanes`` is 1, else
        ``2 * cluster_lanes`` rounded up to a power of two.
    cluster_lanes : int
        Lanes per gather cluster, a divisor of ``pes``. Every cluster has its
        own copy of the input vector (written by one broadcast from the host)
        and arbitrates its banks among its own lanes only, so the gather's
        wiring grows linearly with ``pes``. With 1 every lane owns its copy:
        no arbitration, no gather stalls.
    nz_depth : int
        Nonzero entries each PE lane can hold, a power of two from 16 to 65536.
    row_depth : int
        Rows each PE lane can hold (row pointers and output words),
        a power of two from 4 to 4096.
    imem_depth : int
        Instructions the instruction memory holds, a power of two from 4 to 4096.
    formats : tuple of str
        Compressed formats the format decoder supports.
    reduce : bool
        Generate the scatter/reduce network (the ``REDUCE`` instruction),
        which lets the compiler split long rows across lanes.
    move : bool
        Generate the move engine (the ``MOVE`` instruction), which copies the
        lanes' outputs into the input vector so that a network's layers chain
        without the host. Left out of :meth:`to_dict` when true, so
        configurations without it keep their fingerprint.
    products_per_lane : int
        Products each lane issues per cycle, 1, 2, 4 or 8 (``k``): a lane
        decodes each stored nonzero once and applies it to ``k`` inputs of a
        batch (``k`` right-hand columns of SpMM), with ``k`` multipliers
        sharing its decoding, indexing and control; 1 is the SpMV lane. X
        and every lane's ``out`` and ``bias`` memories are then ``k`` slots
        (:attr:`x_slot_depth`, :attr:`row_slot_depth`), so ``x_depth`` must
        be at least ``k * x_banks`` and ``row_depth`` at least ``k``. The
        ISA model runs any of them (the pass rule of :mod:`zeroskip.core.timing`);
        the generated hardware only 1 (:func:`check_generated`). Left out
        of :meth:`to_dict` when 1, so configurations without it keep their
        fingerprint.
    ext_words : int
        32-bit words of the external memory (board SDRAM) that ``LOAD`` copies
        lane images from: 0 (none, the default) or a power of two from 1024 to
        ``2 ** 26``. The host fills it through ``EXT_ADDR`` and ``EXT_DATA``.
        The ISA model runs it; the generated hardware has an external-memory
        port that only the Amaranth simulator attaches a memory to yet
        (:func:`check_generated`).
    ext_latency : int
        Cycles from a ``LOAD``'s request to its first word, 0 to 1024 (only
        with an external memory).
    ext_words_per_cycle : int
        Words the external-memory port delivers every ``ext_rate_cycles``
        cycles once it streams, 1, 2, 4 or 8 (only with an external memory).
    ext_rate_cycles : int
        Cycles the port takes for those ``ext_words_per_cycle`` words, 1 to
        64 (only with an external memory): the port's rate is
        ``ext_words_per_cycle / ext_rate_cycles`` words per cycle, so a memory
        slower than one word per cycle has a rate too (a 16-bit SDRAM at the
        accelerator's clock, 8 words per 17 cycles: :mod:`zeroskip.core.extmem`).

    ``ext_words``, ``ext_latency``, ``ext_words_per_cycle`` and
    ``ext_rate_cycles`` are left out of :meth:`to_dict` at their defaults, so
    configurations without an external memory (or with one at the rate of
    one word per cycle or more) keep their fingerprint.

    Raises
    ------
    ConfigError
        With a message naming the offending parameter and its value.
    """

    pes: int = 8
    value_width: int = 16
    acc_width: int = 32
    x_depth: int = 1024
    x_banks: int = 0
    cluster_lanes: int = 1
    nz_depth: int = 2048
    row_depth: int = 256
    imem_depth: int = 64
    formats: tuple = formatspec.DEFAULT_FORMATS
    reduce: bool = True
    products_per_lane: int = 1
    move: bool = True
    ext_words: int = 0
    ext_latency: int = 16
    ext_words_per_cycle: int = 1
    ext_rate_cycles: int = 1

    def __post_init__(self):
        def check_int(name, low, high, *, pow2=False):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise _invalid(name, f"must be an integer, not {value!r}")
            if not low <= value <= high:
                raise _invalid(name, f"must be between {low} and {high}, not {value}")
            if pow2 and not _is_pow2(value):
                raise _invalid(name, f"must be a power of two, not {value}")

        check_int("pes", 1, 64)
        check_int("cluster_lanes", 1, self.pes)
        if self.pes % self.cluster_lanes:
            raise ConfigError(
                f"cluster_lanes must divide pes ({self.pes}), not {self.cluster_lanes}")
        if self.value_width not in (8, 16):
            raise _invalid("value_width", f"must be 8 or 16, not {self.value_width!r}")
        if self.acc_width != 32 and self.value_width == 16:
            raise _invalid("acc_width", f"must be 32 with 16-bit values, not {self.acc_width!r}")
        if isinstance(self.acc_width, int) and not isinstance(self.acc_width, bool) and \
                not 2 * self.value_width <= self.acc_width <= 32:
            raise _invalid("acc_width", f"must be between {2 * self.value_width} and 32 with "
                                        f"{self.value_width}-bit values, not {self.acc_width}")
        check_int("acc_width", 2 * self.value_width, 32)
        check_int("x_depth", 16, 16384, pow2=True)
        check_int("nz_depth", 16, 65536, pow2=True)
        check_int("row_depth", 4, 4096, pow2=True)
        check_int("imem_depth", 4, 4096, pow2=True)
        if isinstance(self.x_banks, int) and self.x_banks == 0 and \
                isinstance(self.cluster_lanes, int) and isinstance(self.x_depth, int):
            object.__setattr__(self, "x_banks",
                               derived_x_banks(self.cluster_lanes, self.x_depth))
        check_int("x_banks", 1, self.x_depth, pow2=True)
        if not isinstance(self.products_per_lane, int) or \
                isinstance(self.products_per_lane, bool) or \
                self.products_per_lane not in PRODUCTS_PER_LANE:
            raise _invalid("products_per_lane",
                           f"must be 1, 2, 4 or 8, not {self.products_per_lane!r}")
        k = self.products_per_lane
        if k > 1 and self.x_depth < k * self.x_banks:
            raise _invalid("x_depth", f"must be at least products_per_lane x x_banks "
                                      f"({k} x {self.x_banks}), not {self.x_depth}")
        if k > 1 and self.row_depth < k:
            raise _invalid("row_depth", f"must be at least products_per_lane ({k}), "
                                        f"not {self.row_depth}")
        if not isinstance(self.reduce, bool):
            raise _invalid("reduce", f"must be true or false, not {self.reduce!r}")
        if not isinstance(self.move, bool):
            raise _invalid("move", f"must be true or false, not {self.move!r}")
        self._check_ext(check_int)
        formats = tuple(self.formats)
        object.__setattr__(self, "formats", formats)
        if not formats:
            raise _invalid("formats", "must name at least one format")
        for name in formats:
            if name not in formatspec.NAMES:
                raise _invalid("formats", f"unknown format {name!r}; known: "
                                          f"{', '.join(formatspec.NAMES)}", sep=": ")

    def _check_ext(self, check_int):
        """Validate the external memory's parameters (``check_int`` as in ``__post_init__``)."""
        low, high = EXT_WORDS_RANGE
        if not isinstance(self.ext_words, int) or isinstance(self.ext_words, bool):
            raise _invalid("ext_words", f"must be an integer, not {self.ext_words!r}")
        if self.ext_words != 0 and not (low <= self.ext_words <= high
                                        and _is_pow2(self.ext_words)):
            raise _invalid("ext_words", f"must be 0 (none) or a power of two from {low} to "
                                        f"{high}, not {self.ext_words}")
        check_int("ext_latency", 0, EXT_LATENCY_MAX)
        if not isinstance(self.ext_words_per_cycle, int) or \
                isinstance(self.ext_words_per_cycle, bool) or \
                self.ext_words_per_cycle not in EXT_WORDS_PER_CYCLE:
            raise _invalid("ext_words_per_cycle",
                           f"must be 1, 2, 4 or 8, not {self.ext_words_per_cycle!r}")
        check_int("ext_rate_cycles", 1, EXT_RATE_CYCLES_MAX)
        if self.ext_words == 0:
            defaults = {field.name: field.default for field in dataclasses.fields(self)}
            for name in _EXT_FIELDS[1:]:
                if getattr(self, name) != defaults[name]:
                    raise _invalid(name, f"needs an external memory (ext_words > 0), "
                                         f"not {getattr(self, name)!r}")

    @property
    def ext_addr_width(self):
        """Bits of an external-memory word address (0 without an external memory)."""
        return (self.ext_words - 1).bit_length() if self.ext_words else 0

    # Derived widths: every block computes its address widths from these.

    @property
    def col_width(self):
        """Bits of a column index into the input-vector buffer."""
        return (self.x_depth - 1).bit_length()

    @property
    def nz_addr_width(self):
        """Bits of an address into a lane's nonzero memory."""
        return (self.nz_depth - 1).bit_length()

    @property
    def row_addr_width(self):
        """Bits of an address into a lane's row-pointer or output memory."""
        return (self.row_depth - 1).bit_length()

    @property
    def lane_width(self):
        """Bits of a lane index."""
        return max(1, (self.pes - 1).bit_length())

    @property
    def ptr_width(self):
        """Bits of a word of a lane's row-pointer memory.

        It holds a row count or a row end (both inclusive), the N:M
        widest descriptor word of an enabled format
        (:attr:`zeroskip.core.formatspec.FormatSpec.ptr_word_bits`) and a ``REDUCE`` route (row
        and lane) when ``reduce`` is. The host writes the low bits of its
        32-bit word; the ISA model masks ``PTR`` writes to the same width.
        """
        width = max(self.nz_addr_width, self.row_addr_width) + 1
        width = max([width] + [spec.ptr_word_bits
                               for spec in formatspec.specs_of(self.formats)])
        if self.reduce:
            width = max(width, self.row_addr_width + self.lane_width)
        return width

    @property
    def macs_per_cycle(self):
        """Multiply-accumulates the array can issue per cycle: :attr:`products_per_lane`
        per lane (:attr:`pes`) per cycle. Every lower bound on cycles from a count of
        products, and every utilization, divides by this."""
        return self.pes * self.products_per_lane

    @property
    def x_slot_depth(self):
        """Words of one batch slot of X: ``x_depth / products_per_lane``.

        With ``products_per_lane`` ``k`` > 1, X and every lane's ``out`` and
        ``bias`` memories are ``k`` slots of equal depth, read in parallel at
        the same offset (the pass rule of :mod:`zeroskip.core.timing`): a tile's
        inputs fit one slot, a lane's rows of a tile one :attr:`row_slot_depth`.
        With ``k = 1`` a slot is the whole memory."""
        return self.x_depth // self.products_per_lane

    @property
    def row_slot_depth(self):
        """Words of one batch slot of a lane's ``out`` and ``bias`` memories:
        ``row_depth / products_per_lane`` (see :attr:`x_slot_depth`)."""
        return self.row_depth // self.products_per_lane

    @property
    def clusters(self):
        """Number of gather clusters (copies of the input vector)."""
        return self.pes // self.cluster_lanes

    @property
    def bank_addr_width(self):
        """Bits of an address inside one input-vector bank."""
        return max(1, (self.x_depth // self.x_banks - 1).bit_length())

    @property
    def value_min(self):
        return -(1 << (self.value_width - 1))

    @property
    def value_max(self):
        return (1 << (self.value_width - 1)) - 1

    @property
    def acc_min(self):
        return -(1 << (self.acc_width - 1))

    @property
    def acc_max(self):
        return (1 << (self.acc_width - 1)) - 1

    # Serialization.

    def to_dict(self):
        """Return the configuration as a JSON-compatible dictionary."""
        data = dataclasses.asdict(self)
        data["formats"] = list(self.formats)
        if self.products_per_lane == 1:
            del data["products_per_lane"]    # configurations from before it keep their JSON
        if self.move:
            del data["move"]                 # likewise
        defaults = {field.name: field.default for field in dataclasses.fields(self)}
        for name in _EXT_FIELDS:
            if data[name] == defaults[name]:
                del data[name]               # likewise
        return data

    @classmethod
    def from_dict(cls, data, *, source="configuration"):
        """Build a configuration from a dictionary, rejecting unknown keys.

        Raises
        ------
        ConfigError
            If a key is unknown or a value is invalid; the message names
            ``source``.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a JSON object")
        known = {field.name for field in dataclasses.fields(cls)}
        for key in data:
            if key not in known:
                raise ConfigError(f"{source}: unknown parameter {key!r}")
        try:
            return cls(**{key: (tuple(v) if key == "formats" else v) for key, v in data.items()})
        except ConfigError as error:
            located = ConfigError(f"{source}: {error}")
            for key in ("parameter", "detail", "sep"):
                setattr(located, key, getattr(error, key, None))
            raise located from None

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def load(cls, path, **changes):
        """Read a configuration written by :meth:`save`, with ``changes`` applied.

        The changes are applied before validation, so a file and changes that
        are only valid together (``acc_width`` 16 with ``value_width`` 8) load;
        ``x_banks`` follows the changes as in :meth:`replace`.

        Raises
        ------
        ConfigError
            If the file cannot be read, is not JSON or holds an invalid
            configuration.
        """
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as error:
            raise ConfigError(f"{path}: cannot read configuration: {error.strerror}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(f"{path}: line {error.lineno}: not valid JSON: {error.msg}") from None
        if changes and isinstance(data, dict):
            data = _derive_again(data, changes)
        return cls.from_dict(data, source=str(path))

    def save(self, path):
        Path(path).write_text(self.to_json())

    @property
    def fingerprint(self):
        """A short hash identifying this configuration (and its hardware)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:12]

    def replace(self, **changes):
        """Return a copy with ``changes`` applied (and validated).

        ``x_banks`` is derived again from the new ``cluster_lanes`` and ``x_depth``
        unless ``changes`` sets it or it differed from its derived value, so
        ``AcceleratorConfig().replace(cluster_lanes=4)`` equals
        ``AcceleratorConfig(cluster_lanes=4)``.

        Raises
        ------
        ConfigError
            Naming the parameter, without a source prefix.
        """
        data = _derive_again(self.to_dict(), changes)
        unknown = [key for key in data if key not in {f.name for f in dataclasses.fields(self)}]
        if unknown:
            raise ConfigError(f"unknown parameter {unknown[0]!r}")
        return type(self)(**{key: (tuple(v) if key == "formats" else v)
                             for key, v in data.items()})


def check_generated(config, *, ext_port=False):
    """Refuse a configuration the generated hardware cannot be.

    The HDL generator and every simulation backend (the Amaranth simulator,
    Icarus, Verilator, a board) call this; only the ISA model runs more. The
    generated hardware issues one product per lane per cycle, and its
    external-memory port (``zeroskip.hdl.extmem``) carries one 32-bit word per
    cycle and answers a read in a later cycle than its request. Only the
    Amaranth simulator attaches a memory to the port (``ext_port=True``, and
    the hardware's own blocks); a board or a Verilog simulation does not yet.

    Raises
    ------
    ConfigError
        ``"products_per_lane K: the generated hardware issues one product per
        lane per cycle; only the ISA model runs products_per_lane > 1"``,
        ``"ext_words N: no board or Verilog simulation attaches the generated
        hardware's external-memory port yet; only the ISA model and the
        Amaranth simulator (pysim) run ext_words > 0"`` (unless ``ext_port``),
        ``"ext_rate_cycles R: ..."`` (the simulated memory delivers a word a cycle),
        ``"ext_words_per_cycle W: the generated hardware's external-memory port
        carries one 32-bit word per cycle; only the ISA model runs
        ext_words_per_cycle > 1"`` or ``"ext_latency 0: the generated
        hardware's external-memory port answers a read request in a later
        cycle; only the ISA model runs ext_latency 0"``.
    """
    if config.products_per_lane != 1:
        raise ConfigError(f"products_per_lane {config.products_per_lane}: the generated "
                          f"hardware issues one product per lane per cycle; only the ISA "
                          f"model runs products_per_lane > 1")
    if not config.ext_words:
        return
    if not ext_port:
        raise ConfigError(f"ext_words {config.ext_words}: no board or Verilog simulation "
                          f"attaches the generated hardware's external-memory port yet; "
                          f"only the ISA model and the Amaranth simulator (pysim) run "
                          f"ext_words > 0")
    if config.ext_words_per_cycle != 1:
        raise ConfigError(f"ext_words_per_cycle {config.ext_words_per_cycle}: the generated "
                          f"hardware's external-memory port carries one 32-bit word per "
                          f"cycle; only the ISA model runs ext_words_per_cycle > 1")
    if config.ext_rate_cycles != 1:
        raise ConfigError(f"ext_rate_cycles {config.ext_rate_cycles}: the generated "
                          f"hardware's simulated external memory delivers one word every "
                          f"cycle; only the ISA model runs ext_rate_cycles > 1")
    if config.ext_latency == 0:
        raise ConfigError("ext_latency 0: the generated hardware's external-memory port "
                          "answers a read request in a later cycle; only the ISA model runs "
                          "ext_latency 0")
