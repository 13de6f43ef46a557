"""Compiled programs: microcode and memory images for one configuration.

A :class:`Program` is one matrix compiled for one
:class:`~zeroskip.config.AcceleratorConfig`: a list of :class:`Tile`, each one
load–run–read round on the accelerator (see ``docs/internals.md``).
"""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from pathlib import Path

import numpy as np

from ..config import AcceleratorConfig
from ..errors import ConfigError, InputError, ProgramMismatchError
from . import timing
from .asm import decode, disassemble
from .isa import Opcode, nz_entry_layout

__all__ = ["Epilogue", "Tile", "Program", "pack_nz", "unpack_nz", "config_summary"]

FORMAT = "zeroskip-program"
VERSION = 1


def _fields(config):
    return {name: field for name, field in nz_entry_layout(config)}


def pack_nz(cols, values, config):
    """Pack columns and values into nonzero-memory words (``nz_entry_layout``).

    Returns
    -------
    numpy.ndarray of uint32
    """
    fields = _fields(config)
    col, value = fields["col"], fields["value"]
    cols = np.asarray(cols, dtype=np.int64)
    values = np.asarray(values, dtype=np.int64)
    words = ((cols & ((1 << col.width) - 1)) << col.offset
             | (values & ((1 << value.width) - 1)) << value.offset)
    return words.astype(np.uint32)


def unpack_nz(words, config):
    """Split nonzero-memory words into ``(cols, values)`` (both ``int64``)."""
    fields = _fields(config)
    col, value = fields["col"], fields["value"]
    words = np.asarray(words, dtype=np.int64)
    cols = (words >> col.offset) & ((1 << col.width) - 1)
    raw = (words >> value.offset) & ((1 << value.width) - 1)
    values = raw - ((raw >> (value.width - 1)) << value.width)
    return cols, values


def config_summary(config):
    """One line naming every parameter of ``config``."""
    parts = []
    for key, value in config.to_dict().items():
        parts.append(f"{key}={','.join(value) if isinstance(value, list) else value}")
    return " ".join(parts)


@dataclasses.dataclass(frozen=True)
class Epilogue:
    """Epilogue settings of a program (see ``SET_EPI`` in :mod:`.isa`).

    Attributes
    ----------
    applied : bool
        Whether the last column tile applies the epilogue; without it the
        raw accumulator (``y = A @ x`` at accumulator width) is read back.
    shift, relu, clamp_lo, clamp_hi
        The ``SET_EPI`` operands.
    has_bias : bool
        Whether a bias (at accumulator scale) is added.
    """

    applied: bool = False
    shift: int = 0
    relu: bool = False
    clamp_lo: int = -(1 << 15)
    clamp_hi: int = (1 << 15) - 1
    has_bias: bool = False


@dataclasses.dataclass(eq=False)
class Tile:
    """One load–run–read round.

    Attributes
    ----------
    code : numpy.ndarray of uint64
        Microcode, loaded at instruction 0, ending in ``HALT``.
    ptr, nz : list of numpy.ndarray of uint32
        Per lane, the row-pointer and nonzero memory images (from address 0).
    bias : list of numpy.ndarray of int64, or None
        Per lane, the bias of each local row.
    x_cols : (int, int)
        The slice ``x[start:stop]`` to load at X address 0.
    readback : numpy.ndarray of int64, shape (k, 3)
        ``(lane, out address, row)`` of the rows final after this tile.
    """

    code: np.ndarray
    ptr: list
    nz: list
    bias: list | None
    x_cols: tuple
    readback: np.ndarray

    def lane_rows(self):
        """Rows each lane holds (the ``ptr[0]`` headers)."""
        return [int(p[0]) if len(p) else 0 for p in self.ptr]

    def lane_tokens(self):
        """Tokens each lane streams: one per nonzero, one per empty row."""
        tokens = []
        for ptr in self.ptr:
            n = int(ptr[0]) if len(ptr) else 0
            ends = ptr[1:n + 1].astype(np.int64)
            lengths = np.diff(ends, prepend=0)
            tokens.append(int(np.maximum(lengths, 1).sum()))
        return tokens


@dataclasses.dataclass(eq=False)
class Program:
    """A matrix compiled for one accelerator configuration.

    Attributes
    ----------
    config : AcceleratorConfig
    shape : (int, int)
        Rows and columns of the matrix.
    nnz : int
        Stored nonzeros.
    tiles : list of Tile
    a_frac_bits, x_frac_bits : int
        Fixed-point scaling of the matrix and of the input vector.
    epilogue : Epilogue
    lane_nnz : numpy.ndarray of int64
        Nonzeros per lane over all tiles.
    name : str
    """

    config: AcceleratorConfig
    shape: tuple
    nnz: int
    tiles: list
    a_frac_bits: int = 0
    x_frac_bits: int = 0
    epilogue: Epilogue = dataclasses.field(default_factory=Epilogue)
    lane_nnz: np.ndarray = None
    name: str = "matrix"

    def __post_init__(self):
        self.shape = tuple(int(v) for v in self.shape)
        if self.lane_nnz is None:
            self.lane_nnz = np.array([sum(len(t.nz[p]) for t in self.tiles)
                                      for p in range(self.config.pes)], dtype=np.int64)
        self.lane_nnz = np.asarray(self.lane_nnz, dtype=np.int64)

    @property
    def y_frac_bits(self):
        """Fractional bits of the results read back."""
        shift = self.epilogue.shift if self.epilogue.applied else 0
        return self.a_frac_bits + self.x_frac_bits - shift

    @property
    def lane_work(self):
        """Tokens (cycles of work) per lane over all tiles."""
        work = np.zeros(self.config.pes, dtype=np.int64)
        for tile in self.tiles:
            work += tile.lane_tokens()
        return work

    @property
    def work_cv(self):
        """Coefficient of variation of :attr:`lane_work` (0 is perfect balance)."""
        work = self.lane_work.astype(np.float64)
        mean = work.mean()
        return float(work.std() / mean) if mean else 0.0

    def check_config(self, config):
        """Refuse hardware other than the one this program was built for.

        Raises
        ------
        ProgramMismatchError
            Naming both configurations and their fingerprints.
        """
        if config.fingerprint != self.config.fingerprint:
            raise ProgramMismatchError(
                f"program was built for {config_summary(self.config)} "
                f"(fingerprint {self.config.fingerprint}) but the hardware is "
                f"{config_summary(config)} (fingerprint {config.fingerprint})")

    # Cycle prediction.

    def tile_cycles(self, tile):
        """Predicted ``CYCLES`` of one tile's run (see :mod:`.timing`)."""
        config = self.config
        rr = None
        cycles = 0
        for word in tile.code:
            opcode, args = decode(int(word))
            if opcode is not Opcode.SPMV:
                cycles += timing.INSN_OVERHEAD
                if opcode in (Opcode.HALT, None):
                    break
                continue
            tokens = []
            for p in range(config.pes):
                ptr = tile.ptr[p].astype(np.int64)
                base = args["ptr_base"]
                n = int(ptr[base]) if base < len(ptr) else 0
                ends = ptr[base + 1:base + 1 + n]
                total = int(ends[-1]) if n else 0
                nz = tile.nz[p][args["nz_base"]:args["nz_base"] + total]
                cols, _ = unpack_nz(nz, config)
                tokens.append(timing.lane_tokens(ends, cols, x_base=args["x_base"],
                                                 x_banks=config.x_banks))
            result = timing.schedule(tokens, config.x_banks, rr=rr)
            rr = result.rr
            cycles += timing.SPMV_OVERHEAD + result.cycles
        return cycles

    def predicted_cycles(self):
        """Predicted ``CYCLES`` summed over all tiles."""
        return sum(self.tile_cycles(tile) for tile in self.tiles)

    # Listing.

    def listing(self):
        """A human-readable description: configuration, scaling, tiles, balance."""
        c = self.config
        e = self.epilogue
        rows, cols = self.shape
        density = self.nnz / (rows * cols) if rows * cols else 0.0
        lines = [
            f"program {self.name!r}: {rows} x {cols}, {self.nnz} nonzeros "
            f"({100 * density:.2f} %), {len(self.tiles)} tile(s)",
            f"hardware: {config_summary(c)} (fingerprint {c.fingerprint})",
            f"quantization: a_frac_bits={self.a_frac_bits} x_frac_bits={self.x_frac_bits} "
            f"y_frac_bits={self.y_frac_bits}",
        ]
        if e.applied:
            lines.append(f"epilogue: shift={e.shift} relu={int(e.relu)} "
                         f"clamp=[{e.clamp_lo}, {e.clamp_hi}] bias={'yes' if e.has_bias else 'no'}")
        else:
            lines.append(f"epilogue: none (raw accumulator), "
                         f"bias={'yes' if e.has_bias else 'no'}")
        work = self.lane_work
        lines.append(f"work spread: tokens per lane min {work.min() if len(work) else 0} "
                     f"max {work.max() if len(work) else 0}, CV {self.work_cv:.3f}")
        total = 0
        for index, tile in enumerate(self.tiles):
            cycles = self.tile_cycles(tile)
            total += cycles
            start, stop = tile.x_cols
            lines.append(f"tile {index}: x[{start}:{stop}], {len(tile.readback)} rows read "
                         f"back, predicted {cycles} cycles")
            for address, line in enumerate(disassemble(tile.code).splitlines()):
                lines.append(f"  {address:4d}: {line}")
            tokens = tile.lane_tokens()
            lines.append("  lane  rows   nnz  tokens")
            for p, n in enumerate(tile.lane_rows()):
                lines.append(f"  {p:4d} {n:5d} {len(tile.nz[p]):5d} {tokens[p]:7d}")
        ideal = -(-self.nnz // c.pes)
        lines.append(f"predicted cycles: {total} (ideal {ideal}: nnz / pes)")
        return "\n".join(lines) + "\n"

    # Serialization.

    def save(self, path):
        """Write the program to one ``.npz`` file (arrays and a JSON header)."""
        e = self.epilogue
        header = {
            "format": FORMAT,
            "version": VERSION,
            "name": self.name,
            "config": self.config.to_dict(),
            "shape": list(self.shape),
            "nnz": int(self.nnz),
            "a_frac_bits": int(self.a_frac_bits),
            "x_frac_bits": int(self.x_frac_bits),
            "epilogue": {"applied": bool(e.applied), "shift": int(e.shift),
                         "relu": bool(e.relu), "clamp_lo": int(e.clamp_lo),
                         "clamp_hi": int(e.clamp_hi), "has_bias": bool(e.has_bias)},
            "lane_nnz": [int(v) for v in self.lane_nnz],
            "tiles": [{"x_cols": [int(v) for v in t.x_cols], "bias": t.bias is not None}
                      for t in self.tiles],
        }
        arrays = {"header": np.array(json.dumps(header))}
        for i, tile in enumerate(self.tiles):
            arrays[f"t{i}_code"] = np.asarray(tile.code, dtype=np.uint64)
            arrays[f"t{i}_readback"] = np.asarray(tile.readback, dtype=np.int64).reshape(-1, 3)
            for p in range(self.config.pes):
                arrays[f"t{i}_ptr{p}"] = np.asarray(tile.ptr[p], dtype=np.uint32)
                arrays[f"t{i}_nz{p}"] = np.asarray(tile.nz[p], dtype=np.uint32)
                if tile.bias is not None:
                    arrays[f"t{i}_bias{p}"] = np.asarray(tile.bias[p], dtype=np.int64)
        with open(path, "wb") as file:
            np.savez_compressed(file, **arrays)

    @classmethod
    def load(cls, path):
        """Read a program written by :meth:`save`.

        Raises
        ------
        InputError
            If the file cannot be read or does not hold a valid program; the
            message names the file.
        """
        path = Path(path)
        try:
            raw = path.read_bytes()
        except OSError as error:
            raise InputError(f"{path}: cannot read program: {error.strerror}") from None
        try:
            with np.load(io.BytesIO(raw), allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise InputError(f"{path}: not a zeroskip program ({error})") from None
        try:
            return cls._from_arrays(arrays)
        except _Invalid as error:
            raise InputError(f"{path}: not a valid zeroskip program: {error}") from None

    @classmethod
    def _from_arrays(cls, arrays):
        if "header" not in arrays:
            raise _Invalid("no header")
        try:
            header = json.loads(str(arrays["header"]))
        except json.JSONDecodeError as error:
            raise _Invalid(f"header is not JSON: {error.msg}") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise _Invalid("header does not name the zeroskip program format")
        if header.get("version") != VERSION:
            raise _Invalid(f"format version {header.get('version')!r} is not {VERSION}")
        try:
            config = AcceleratorConfig.from_dict(header["config"], source="config")
            rows, cols = (int(v) for v in header["shape"])
            epi = header["epilogue"]
            epilogue = Epilogue(applied=bool(epi["applied"]), shift=int(epi["shift"]),
                                relu=bool(epi["relu"]), clamp_lo=int(epi["clamp_lo"]),
                                clamp_hi=int(epi["clamp_hi"]), has_bias=bool(epi["has_bias"]))
            tiles = []
            for i, meta in enumerate(header["tiles"]):
                tiles.append(_load_tile(arrays, i, meta, config, rows, cols))
            program = cls(config=config, shape=(rows, cols), nnz=int(header["nnz"]),
                          tiles=tiles, a_frac_bits=int(header["a_frac_bits"]),
                          x_frac_bits=int(header["x_frac_bits"]), epilogue=epilogue,
                          lane_nnz=np.array(header["lane_nnz"], dtype=np.int64),
                          name=str(header["name"]))
        except ConfigError as error:
            raise _Invalid(str(error)) from None
        except KeyError as error:
            raise _Invalid(f"missing {error.args[0]!r}") from None
        except (TypeError, ValueError) as error:
            raise _Invalid(str(error)) from None
        if len(program.lane_nnz) != config.pes:
            raise _Invalid(f"lane_nnz has {len(program.lane_nnz)} lanes, not {config.pes}")
        return program


class _Invalid(Exception):
    pass


def _array(arrays, key, dtype, limit, what):
    if key not in arrays:
        raise _Invalid(f"missing array {key!r}")
    value = arrays[key]
    if value.dtype != dtype or value.ndim != 1:
        raise _Invalid(f"{key} must be a 1-D {np.dtype(dtype).name} array")
    if len(value) > limit:
        raise _Invalid(f"{key} holds {len(value)} words but the {what} holds {limit}")
    return value


def _load_tile(arrays, i, meta, config, rows, cols):
    start, stop = (int(v) for v in meta["x_cols"])
    if not (0 <= start <= stop <= cols and stop - start <= config.x_depth):
        raise _Invalid(f"tile {i}: x_cols ({start}, {stop}) does not fit")
    code = _array(arrays, f"t{i}_code", np.uint64, config.imem_depth, "instruction memory")
    ptr = [_array(arrays, f"t{i}_ptr{p}", np.uint32, config.row_depth, "pointer memory")
           for p in range(config.pes)]
    nz = [_array(arrays, f"t{i}_nz{p}", np.uint32, config.nz_depth, "nonzero memory")
          for p in range(config.pes)]
    bias = None
    if meta["bias"]:
        bias = [_array(arrays, f"t{i}_bias{p}", np.int64, config.row_depth, "bias memory")
                for p in range(config.pes)]
    key = f"t{i}_readback"
    if key not in arrays:
        raise _Invalid(f"missing array {key!r}")
    readback = arrays[key]
    if readback.dtype != np.int64 or readback.ndim != 2 or readback.shape[1] != 3:
        raise _Invalid(f"{key} must be a (k, 3) int64 array")
    if len(readback) and (readback.min(axis=0) < 0).any() or len(readback) and (
            readback[:, 0].max() >= config.pes or readback[:, 1].max() >= config.row_depth
            or readback[:, 2].max() >= rows):
        raise _Invalid(f"{key} names a lane, address or row outside the program")
    return Tile(code=code, ptr=ptr, nz=nz, bias=bias, x_cols=(start, stop), readback=readback)
