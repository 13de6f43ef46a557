import numpy as np
import pytest

from zeroskip.core.errors import CompileError
from zeroskip.core.isa import Insn, Opcode
from zeroskip.firmware.asm import (
    assemble,
    decode,
    disassemble,
    encode_halt,
    encode_move,
    encode_nop,
    encode_reduce,
    encode_set_epi,
    encode_spmv,
)


def test_disassemble_forms():
    words = [
        encode_set_epi(shift=8, relu=True, clamp_lo=-32768, clamp_hi=32767),
        encode_spmv(epilogue=True),
        encode_reduce(ptr_base=40, src_base=2, dst_base=3),
        encode_move(src_base=4, dst_base=300, count=17),
        encode_halt(),
        encode_nop(),
        0x8,
    ]
    assert disassemble(words).splitlines() == [
        "set_epi shift=8 relu=1 lo=-32768 hi=32767",
        "spmv ptr=0 nz=0 x=0 out=0 accumulate=0 epilogue=1 bias=0",
        "reduce ptr=40 src=2 dst=3",
        "move src=4 dst=300 count=17",
        "halt",
        "nop",
        ".word 0x0000000000000008",
    ]


def test_encodings_come_from_isa():
    word = encode_spmv(ptr_base=5, nz_base=7, x_base=9, out_base=11, accumulate=True, bias=True)
    insn = Insn.from_bits(word)
    assert insn.opcode == Opcode.SPMV
    spmv = insn.args.spmv
    assert (spmv.ptr_base, spmv.nz_base, spmv.x_base, spmv.out_base) == (5, 7, 9, 11)
    assert (spmv.accumulate, spmv.epilogue, spmv.bias) == (1, 0, 1)
    opcode, args = decode(encode_set_epi(shift=3, clamp_lo=-5, clamp_hi=7))
    assert opcode == Opcode.SET_EPI
    assert (args["shift"], args["relu"], args["clamp_lo"], args["clamp_hi"]) == (3, 0, -5, 7)
    assert decode(0x8) == (None, {})
    word = encode_reduce(ptr_base=4095, src_base=7, dst_base=9)
    reduce = Insn.from_bits(word).args.reduce
    assert (reduce.ptr_base, reduce.src_base, reduce.dst_base) == (4095, 7, 9)
    assert decode(word) == (Opcode.REDUCE, {"ptr_base": 4095, "src_base": 7, "dst_base": 9})
    word = encode_move(src_base=4095, dst_base=16383, count=4096)
    move = Insn.from_bits(word).args.move
    assert Insn.from_bits(word).opcode == Opcode.MOVE and word & 0xF == 5
    assert (move.src_base, move.dst_base, move.count) == (4095, 16383, 4096)
    assert decode(word) == (Opcode.MOVE, {"src_base": 4095, "dst_base": 16383, "count": 4096})


def _random_line(rng):
    kind = rng.integers(6)
    if kind == 5:
        return f"move src={rng.integers(4096)} dst={rng.integers(16384)} count={rng.integers(8192)}"
    if kind == 4:
        return f"reduce ptr={rng.integers(4096)} src={rng.integers(4096)} dst={rng.integers(4096)}"
    if kind == 0:
        return (f"spmv ptr={rng.integers(4096)} nz={rng.integers(65536)} x={rng.integers(16384)} "
                f"out={rng.integers(4096)} accumulate={rng.integers(2)} "
                f"epilogue={rng.integers(2)} bias={rng.integers(2)}")
    if kind == 1:
        return (f"set_epi shift={rng.integers(32)} relu={rng.integers(2)} "
                f"lo={rng.integers(-32768, 32768)} hi={rng.integers(-32768, 32768)}")
    return ["halt", "nop"][kind - 2]


def test_round_trip_random_instructions():
    rng = np.random.default_rng(0)
    lines = [_random_line(rng) for _ in range(300)]
    words = assemble("\n".join(lines))
    assert disassemble(words).splitlines() == lines
    assert assemble(disassemble(words)) == words


def test_round_trip_random_words():
    rng = np.random.default_rng(1)
    words = [int(w) for w in rng.integers(0, 2**63, 300, dtype=np.uint64)] + [2**64 - 1]
    # also legal opcodes with junk in unused or reserved bits
    words += [(w & ~0xF) | op for w, op in zip(words[:60], [0, 1, 2, 3, 4, 5] * 10, strict=True)]
    words += [encode_reduce(ptr_base=1) | 1 << 40]    # junk above the REDUCE operands
    words += [encode_move(count=1) | 1 << 60]        # junk above the MOVE operands
    assert assemble(disassemble(words)) == words
    assert assemble(disassemble(np.array(words, dtype=np.uint64))) == words


def test_assemble_syntax():
    text = """
    ; a comment
    SPMV ptr=0x10 out=3   # fields left out are 0
    set_epi lo=-1 hi=1
    .word 0x1
    """
    words = assemble(text)
    assert words == [encode_spmv(ptr_base=16, out_base=3),
                     encode_set_epi(clamp_lo=-1, clamp_hi=1), encode_halt()]


@pytest.mark.parametrize("text, message", [
    ("halt\nhalt\nspmw ptr=0", "line 3: unknown mnemonic 'spmw'"),
    ("halt\nspmv ptr=5000", "line 2: field 'ptr' = 5000 does not fit 12 bits"),
    ("set_epi lo=40000", "line 1: field 'lo' = 40000 does not fit 16 signed bits"),
    ("spmv ptr", "line 1: expected field=value, found 'ptr'"),
    ("spmv foo=1", "line 1: spmv has no field 'foo'; fields: ptr, nz, x, out, accumulate, "
                   "epilogue, bias, fmt"),
    ("spmv ptr=1 ptr=2", "line 1: field 'ptr' given twice"),
    ("spmv ptr=abc", "line 1: field 'ptr' = 'abc' is not an integer"),
    ("halt now=1", "line 1: halt takes no fields"),
    (".word", "line 1: .word takes one value"),
    (".word 0x10000000000000000", "line 1: .word value 0x10000000000000000 does not fit 64 bits"),
    ("spmv bias=2", "line 1: field 'bias' = 2 does not fit 1 bit"),
    ("reduce out=1", "line 1: reduce has no field 'out'; fields: ptr, src, dst"),
    ("reduce dst=4096", "line 1: field 'dst' = 4096 does not fit 12 bits"),
    ("move ptr=1", "line 1: move has no field 'ptr'; fields: src, dst, count"),
    ("move dst=16384", "line 1: field 'dst' = 16384 does not fit 14 bits"),
    ("move count=8192", "line 1: field 'count' = 8192 does not fit 13 bits"),
])
def test_assemble_errors(text, message):
    with pytest.raises(CompileError) as info:
        assemble(text)
    assert str(info.value) == message


def test_encode_errors():
    with pytest.raises(CompileError, match="field 'ptr' = -1 does not fit 12 bits"):
        encode_spmv(ptr_base=-1)
    with pytest.raises(CompileError, match="field 'src' = 5000 does not fit 12 bits"):
        encode_reduce(src_base=5000)
    with pytest.raises(CompileError, match="field 'src' = 4096 does not fit 12 bits"):
        encode_move(src_base=4096)


def test_format_field():
    words = assemble("spmv fmt=csc x=3\nspmv fmt=2\nspmv fmt=CSR")
    assert disassemble(words).splitlines() == [
        "spmv ptr=0 nz=0 x=3 out=0 accumulate=0 epilogue=0 bias=0 fmt=csc",
        "spmv ptr=0 nz=0 x=0 out=0 accumulate=0 epilogue=0 bias=0 fmt=bitmap",
        "spmv ptr=0 nz=0 x=0 out=0 accumulate=0 epilogue=0 bias=0",
    ]
    assert decode(words[0])[1]["fmt"] == 5
    assert encode_spmv(fmt="nm") == encode_spmv(fmt=3)
    # a fmt value naming no format does not decode: the word is illegal
    illegal = encode_spmv() | 7 << 7     # fmt: bits 7-9
    assert decode(illegal) == (None, {})
    assert disassemble([illegal]) == f".word {illegal:#018x}"
    with pytest.raises(CompileError, match=r"line 1: field 'fmt' = 'ell' is not a format; "
                                           r"formats: csr, coo, bitmap, nm, dense, csc"):
        assemble("spmv fmt=ell")
    with pytest.raises(CompileError, match="field 'fmt' = 6 is not a format"):
        assemble("spmv fmt=6")
