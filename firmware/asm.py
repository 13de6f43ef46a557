"""Assembler and disassembler for zeroskip microcode.

One instruction per line::

    set_epi shift=8 relu=1 lo=-32768 hi=32767
    spmv ptr=0 nz=0 x=0 out=0 accumulate=0 epilogue=1 bias=0
    spmv ptr=0 nz=0 x=64 out=32 accumulate=0 epilogue=0 bias=0 fmt=csc
    reduce ptr=40 src=0 dst=0
    move src=0 dst=0 count=16
    load region=nz dst=0 count=64 src=4096
    sync
    halt
    nop
    .word 0x0000000000000008

Fields left out are 0 (``fmt`` left out is ``csr``); ``fmt`` takes a format
name (``csr``, ``coo``, ``bitmap``, ``nm``, ``dense``, ``csc``) or its number,
``region`` a lane memory (``ptr``, ``nz``, ``meta``, ``bias``) or its number
(``region`` left out is ``ptr``).
``;`` and ``#`` start comments. The disassembler
prints ``.word`` for any word that does not decode to an instruction or
carries bits the mnemonic form cannot express, so ``assemble(disassemble(w))
== w`` for every 64-bit word. All encodings come from :mod:`.isa`.
"""

from __future__ import annotations

import enum
import functools

from amaranth.hdl import Shape

from zeroskip.core import formatspec
from zeroskip.core.errors import CompileError
from zeroskip.core.isa import (
    INSN_WIDTH,
    EpiArgs,
    Format,
    Insn,
    LoadArgs,
    LoadRegion,
    MoveArgs,
    Opcode,
    ReduceArgs,
    SpmvArgs,
)

__all__ = ["assemble", "disassemble", "decode", "encode_spmv", "encode_set_epi",
           "encode_reduce", "encode_move", "encode_load", "encode_sync", "encode_halt",
           "encode_nop"]

# Mnemonic field name -> (operand struct field, shape).
_SPMV_FIELDS = {"ptr": "ptr_base", "nz": "nz_base", "x": "x_base", "out": "out_base",
                "accumulate": "accumulate", "epilogue": "epilogue", "bias": "bias",
                "fmt": "fmt"}
_FORMAT_NAMES = {spec.code: spec.name for spec in formatspec.SPECS}
_FORMAT_VALUES = {name: value for value, name in _FORMAT_NAMES.items()}
_EPI_FIELDS = {"shift": "shift", "relu": "relu", "lo": "clamp_lo", "hi": "clamp_hi"}
_REDUCE_FIELDS = {"ptr": "ptr_base", "src": "src_base", "dst": "dst_base"}
_MOVE_FIELDS = {"src": "src_base", "dst": "dst_base", "count": "count"}
_LOAD_FIELDS = {"region": "region", "dst": "dst_base", "count": "count", "src": "src"}
_REGION_NAMES = {region.value: region.name.lower() for region in LoadRegion}
_REGION_VALUES = {name: value for value, name in _REGION_NAMES.items()}


def _shapes(struct):
    return {name: Shape.cast(field.shape) for name, field in struct.as_shape()}


# mnemonic -> (opcode, union member, {text name: struct field}, shapes)
_MNEMONICS = {
    "spmv": (Opcode.SPMV, "spmv", _SPMV_FIELDS, _shapes(SpmvArgs)),
    "set_epi": (Opcode.SET_EPI, "epi", _EPI_FIELDS, _shapes(EpiArgs)),
    "reduce": (Opcode.REDUCE, "reduce", _REDUCE_FIELDS, _shapes(ReduceArgs)),
    "move": (Opcode.MOVE, "move", _MOVE_FIELDS, _shapes(MoveArgs)),
    "load": (Opcode.LOAD, "load", _LOAD_FIELDS, _shapes(LoadArgs)),
    "sync": (Opcode.SYNC, None, {}, {}),
    "halt": (Opcode.HALT, None, {}, {}),
    "nop": (Opcode.NOP, None, {}, {}),
}
_BY_OPCODE = {entry[0]: mnemonic for mnemonic, entry in _MNEMONICS.items()}


def _check_enum(text_name, value, enum_type, values):
    """``value`` (a member, its number or its lower-case name) as a member of ``enum_type``."""
    if isinstance(value, enum_type):
        return value
    if isinstance(value, str) and value.lower() in values:
        return enum_type(values[value.lower()])
    if isinstance(value, int) and not isinstance(value, bool) and value in values.values():
        return enum_type(value)
    kind = "a format; formats" if text_name == "fmt" else "a region; regions"
    raise CompileError(f"field {text_name!r} = {value!r} is not {kind}: {', '.join(values)}")


def _check_field(text_name, value, shape):
    if text_name == "region":
        return _check_enum(text_name, value, LoadRegion, _REGION_VALUES)
    if text_name == "fmt":
        if isinstance(value, Format):
            return value
        if isinstance(value, str):
            if value.lower() not in _FORMAT_VALUES:
                raise CompileError(f"field 'fmt' = {value!r} is not a format; formats: "
                                   f"{', '.join(_FORMAT_VALUES)}")
            return Format(_FORMAT_VALUES[value.lower()])
        if isinstance(value, bool) or not isinstance(value, int) or \
                value not in _FORMAT_NAMES:
            raise CompileError(f"field 'fmt' = {value!r} is not a format; formats: "
                               f"{', '.join(_FORMAT_VALUES)}")
        return Format(value)
    if isinstance(value, bool):
        value = int(value)
    if not isinstance(value, int):
        raise CompileError(f"field {text_name!r} = {value!r} is not an integer")
    if shape.signed:
        low, high = -(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1
        fits = f"{shape.width} signed bits"
    else:
        low, high = 0, (1 << shape.width) - 1
        fits = f"{shape.width} bit{'s' if shape.width != 1 else ''}"
    if not low <= value <= high:
        raise CompileError(f"field {text_name!r} = {value} does not fit {fits}")
    return value


def _encode(mnemonic, fields):
    key = (mnemonic, tuple(sorted((name, type(value), value) for name, value in fields.items())))
    try:
        return _encoded(key)
    except TypeError:   # an unhashable operand: encode (and refuse) it uncached
        return _encode_fields(mnemonic, fields)


@functools.lru_cache(maxsize=4096)
def _encoded(key):
    mnemonic, items = key
    return _encode_fields(mnemonic, {name: value for name, _, value in items})


def _encode_fields(mnemonic, fields):
    opcode, member, names, shapes = _MNEMONICS[mnemonic]
    init = {"opcode": opcode}
    if member is not None:
        init["args"] = {member: {names[name]: _check_field(name, value, shapes[names[name]])
                                 for name, value in fields.items()}}
    return int(Insn.const(init).as_bits())


def encode_spmv(*, ptr_base=0, nz_base=0, x_base=0, out_base=0, accumulate=False,
                epilogue=False, bias=False, fmt=Format.CSR):
    """Encode ``SPMV``; see :mod:`.isa` for the operands.

    ``fmt`` is a :class:`~.isa.Format`, its number or its lower-case name.

    Raises
    ------
    CompileError
        If an operand does not fit its field.
    """
    return _encode("spmv", {"ptr": ptr_base, "nz": nz_base, "x": x_base, "out": out_base,
                            "accumulate": accumulate, "epilogue": epilogue, "bias": bias,
                            "fmt": fmt})


def encode_set_epi(*, shift=0, relu=False, clamp_lo, clamp_hi):
    """Encode ``SET_EPI`` (epilogue shift, ReLU and clamp bounds).

    Raises
    ------
    CompileError
        If an operand does not fit its field.
    """
    return _encode("set_epi", {"shift": shift, "relu": relu, "lo": clamp_lo, "hi": clamp_hi})


def encode_reduce(*, ptr_base=0, src_base=0, dst_base=0):
    """Encode ``REDUCE`` (add the lanes' routed partial sums); see :mod:`.isa`.

    Raises
    ------
    CompileError
        If an operand does not fit its field.
    """
    return _encode("reduce", {"ptr": ptr_base, "src": src_base, "dst": dst_base})


def encode_move(*, src_base=0, dst_base=0, count=0):
    """Encode ``MOVE`` (each lane's ``count`` outputs from ``out[src_base]`` into X
    from ``dst_base``, lane-major); see :mod:`.isa`.

    Raises
    ------
    CompileError
        If an operand does not fit its field.
    """
    return _encode("move", {"src": src_base, "dst": dst_base, "count": count})


def encode_load(*, region, dst_base=0, count=0, src=0):
    """Encode ``LOAD`` (``count`` words per lane from ``ext[src]``, lane-major, into
    ``region`` from ``dst_base`` on every lane); see :mod:`.isa`.

    ``region`` is a :class:`~.isa.LoadRegion`, its number or its lower-case name.

    Raises
    ------
    CompileError
        If an operand does not fit its field.
    """
    return _encode("load", {"region": region, "dst": dst_base, "count": count, "src": src})


def encode_sync():
    """Encode ``SYNC`` (wait for every ``LOAD`` issued)."""
    return _encode("sync", {})


def encode_halt():
    """Encode ``HALT``."""
    return _encode("halt", {})


def encode_nop():
    """Encode ``NOP``."""
    return _encode("nop", {})


@functools.lru_cache(maxsize=4096)
def decode(word):
    """Decode one instruction word.

    Parameters
    ----------
    word : int
        A 64-bit instruction.

    Returns
    -------
    (Opcode or None, dict)
        The opcode (``None`` for an illegal one, including an ``SPMV`` whose
        ``fmt`` names no format) and the operands by their :mod:`.isa` field
        names (``ptr_base``, ``clamp_lo``, ...; ``fmt`` as its number).
    """
    word = int(word)
    if not 0 <= word < 1 << INSN_WIDTH:
        raise ValueError(f"instruction word {word:#x} does not fit {INSN_WIDTH} bits")
    insn = Insn.from_bits(word)
    try:
        opcode = insn.opcode
    except ValueError:
        return None, {}
    _, member, _, shapes = _MNEMONICS[_BY_OPCODE[opcode]]
    if member is None:
        return opcode, {}
    args = getattr(insn.args, member)
    operands = {}
    for name in shapes:
        try:
            value = args[name]
        except ValueError:   # an enumerated field holding no member: illegal
            return None, {}
        operands[name] = int(value.value) if isinstance(value, enum.Enum) else int(value)
    return opcode, operands


def _line(word):
    opcode, operands = decode(word)
    if opcode is not None:
        mnemonic = _BY_OPCODE[opcode]
        names = _MNEMONICS[mnemonic][2]
        fields = {text: operands[field] for text, field in names.items()}
        if _encode(mnemonic, fields) == word:
            parts = [mnemonic]
            for text, value in fields.items():
                if text == "fmt":
                    if value != Format.CSR.value:
                        parts.append(f"fmt={_FORMAT_NAMES[value]}")
                elif text == "region":
                    parts.append(f"region={_REGION_NAMES[value]}")
                else:
                    parts.append(f"{text}={value}")
            return " ".join(parts)
    return f".word {word:#018x}"


def disassemble(words):
    """Disassemble instruction words, one line per word.

    Parameters
    ----------
    words : iterable of int
        64-bit instruction words (a ``numpy.uint64`` array works).

    Returns
    -------
    str
        The lines joined by newlines; :func:`assemble` reproduces ``words``.
    """
    return "\n".join(_line(int(word)) for word in words)


def _parse_int(text):
    try:
        return int(text, 0)
    except ValueError:
        return None


def assemble(text):
    """Assemble microcode text into 64-bit instruction words.

    Parameters
    ----------
    text : str
        Source, one instruction per line (see the module documentation).

    Returns
    -------
    list of int

    Raises
    ------
    CompileError
        Naming the line, e.g. ``line 3: unknown mnemonic 'spmw'``.
    """
    words = []
    for number, line in enumerate(text.splitlines(), start=1):
        for marker in ";#":
            line = line.split(marker, 1)[0]
        parts = line.split()
        if not parts:
            continue
        mnemonic, operands = parts[0].lower(), parts[1:]
        try:
            words.append(_assemble_line(mnemonic, operands))
        except CompileError as error:
            raise CompileError(f"line {number}: {error}") from None
    return words


def _assemble_line(mnemonic, operands):
    if mnemonic == ".word":
        if len(operands) != 1:
            raise CompileError(".word takes one value")
        value = _parse_int(operands[0])
        if value is None:
            raise CompileError(f".word value {operands[0]!r} is not an integer")
        if not 0 <= value < 1 << INSN_WIDTH:
            raise CompileError(f".word value {operands[0]} does not fit {INSN_WIDTH} bits")
        return value
    if mnemonic not in _MNEMONICS:
        raise CompileError(f"unknown mnemonic {mnemonic!r}")
    names = _MNEMONICS[mnemonic][2]
    if operands and not names:
        raise CompileError(f"{mnemonic} takes no fields")
    fields = dict.fromkeys(names, 0)
    given = set()
    for operand in operands:
        name, sep, value_text = operand.partition("=")
        name = name.lower()
        if not sep or not name or not value_text:
            raise CompileError(f"expected field=value, found {operand!r}")
        if name not in names:
            raise CompileError(f"{mnemonic} has no field {name!r}; "
                               f"fields: {', '.join(names)}")
        if name in given:
            raise CompileError(f"field {name!r} given twice")
        given.add(name)
        value = _parse_int(value_text)
        if value is None:
            if name in ("fmt", "region"):
                value = value_text
            else:
                raise CompileError(f"field {name!r} = {value_text!r} is not an integer")
        fields[name] = value
    return _encode(mnemonic, fields)
