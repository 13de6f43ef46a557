import numpy as np
import pytest
import scipy.sparse
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from zeroskip.core.config import AcceleratorConfig
from zeroskip.core.errors import CompileError
from zeroskip.core.isa import Format, NmWord
from zeroskip.firmware.formats import (
    DescriptorFault,
    decode_lane,
    encode_lane,
    format_by_name,
    lane_matrix,
    nm_descriptor,
    nm_of_descriptor,
    nm_violation,
    parse_nm,
    prune_nm,
)

CONFIG = AcceleratorConfig(pes=2, x_depth=64, nz_depth=256, row_depth=32)


def random_matrix(rng, rows, cols, density, low=-50, high=50):
    a = scipy.sparse.random(rows, cols, density=density, format="csr", random_state=rng)
    a.data = rng.integers(low, high + 1, a.nnz).astype(np.int64)
    a.eliminate_zeros()
    return a


def ragged(rng, cols=60):
    """A long row next to empty rows, a full row and single entries."""
    dense = np.zeros((7, cols), dtype=np.int64)
    dense[1] = rng.integers(1, 9, cols)
    dense[4, [0, cols - 1]] = [-3, 5]
    dense[6, 17] = 2
    return scipy.sparse.csr_matrix(dense)


def encode(fmt, a, width, nm=None):
    return encode_lane(fmt, np.diff(a.indptr), a.indices, a.data, CONFIG, width=width, nm=nm)


@pytest.mark.parametrize("fmt", list(Format))
def test_round_trip(fmt):
    rng = np.random.default_rng(int(fmt.value))
    cases = [random_matrix(rng, rows, cols, density)
             for rows, cols, density in [(9, 40, 0.1), (5, 33, 0.5), (12, 64, 0.02), (1, 1, 1.0)]]
    cases += [ragged(rng), scipy.sparse.csr_matrix((4, 20), dtype=np.int64),
              scipy.sparse.csr_matrix((0, 8), dtype=np.int64)]
    for a in cases:
        nm = None
        if fmt is Format.NM:
            nm = (2, 4)
            a, _ = prune_nm(a, 2, 4)
        width = a.shape[1]
        image = encode(fmt, a, width, nm)
        back = lane_matrix(fmt, image, CONFIG, width=width)
        assert back.shape == a.shape
        assert (back != a).nnz == 0


def test_layouts_follow_the_isa():
    a = scipy.sparse.csr_matrix(np.array([[0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3],
                                          [0] * 18,
                                          [5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]]))
    coo = encode(Format.COO, a, 18)
    assert coo.ptr.tolist() == [3, 3] and coo.meta.tolist() == [0, 0, 2]
    bitmap = encode(Format.BITMAP, a, 18)
    assert bitmap.ptr.tolist() == [3, 2]          # two chunks of 16 columns per row
    assert bitmap.meta.tolist() == [1 << 1, 1 << 1, 0, 0, 1, 0]
    dense = encode(Format.DENSE, a, 18)
    assert dense.ptr.tolist() == [3, 18] and len(dense.nz) == 54
    csc = encode(Format.CSC, a, 18)
    assert csc.ptr[:2].tolist() == [3, 18]
    assert csc.ptr[2:].tolist() == [1, 2] + [2] * 15 + [3]
    assert csc.meta.tolist() == [2, 0, 0]
    nm = encode(Format.NM, a, 18, nm=(1, 4))
    assert nm.ptr.tolist() == [3, 5, 1 | 2 << 8]   # G = 5 groups of M = 4, N = 1
    assert len(nm.nz) == 3 * 5 * 1


def test_nm_padding_stays_inside_the_tile():
    # width 6: the second group of 4 has two columns inside the tile
    a = scipy.sparse.csr_matrix(np.array([[0, 0, 0, 0, 0, 0], [1, 2, 0, 0, 0, 9]]))
    image = encode(Format.NM, a, 6, nm=(2, 4))
    stream = decode_lane(Format.NM, image.ptr, image.nz, image.meta, ptr_base=0, nz_base=0,
                         x_base=0, out_base=0, config=CONFIG)
    assert stream.cols.max() < 6                # padding reads no column outside the tile
    assert len(stream.tokens) == 2 * 4          # G * N slots per row, padding included
    assert np.count_nonzero(stream.values) == 3


def test_tokens_of_each_format():
    a = scipy.sparse.csr_matrix(np.array([[1, 0, 2, 0], [0, 0, 0, 0], [0, 3, 0, 0]]))
    streams = {fmt: decode_lane(*_image(fmt, a), ptr_base=0, nz_base=0, x_base=0,
                                out_base=0, config=CONFIG) for fmt in Format}
    assert streams[Format.CSR].banks(0, 4).tolist() == [0, 2, -1, 1]
    assert streams[Format.COO].banks(0, 4).tolist() == [0, 2, -1, 1]
    assert streams[Format.DENSE].banks(0, 4).tolist() == [0, 1, 2, 3] * 3
    # BITMAP: one chunk (C = 1): max(bits, ceil(C / 2), 1) per row
    assert streams[Format.BITMAP].banks(0, 4).tolist() == [0, 2, -1, 1]
    assert streams[Format.CSC].tokens is None
    assert streams[Format.CSC].col_ends.tolist() == [1, 2, 3, 3]


def _image(fmt, a):
    image = encode(fmt, a, a.shape[1], nm=(2, 4) if fmt is Format.NM else None)
    return fmt, image.ptr, image.nz, image.meta


def test_bitmap_scan_cycles():
    # 64 columns: 4 chunks; each chunk costs its set bits, or one cycle when empty
    dense = np.zeros((3, 64), dtype=np.int64)
    dense[0, 5] = 1
    dense[2, [1, 2, 3]] = 1
    a = scipy.sparse.csr_matrix(dense)
    image = encode(Format.BITMAP, a, 64)
    stream = decode_lane(Format.BITMAP, image.ptr, image.nz, image.meta, ptr_base=0, nz_base=0,
                         x_base=0, out_base=0, config=CONFIG)
    assert stream.banks(0, 64).tolist() == [5, -1, -1, -1, -1, -1, -1, -1, 1, 2, 3, -1, -1, -1]


@pytest.mark.parametrize("fmt, ptr, meta, message", [
    (Format.COO, [2, 2], [1, 0], "decreasing rows"),
    (Format.COO, [2, 2], [0, 2], "row beyond n"),
    (Format.CSC, [2, 2, 1, 2], [0, 5], "row beyond n"),
    (Format.CSC, [2, 2, 2, 1], [0, 1], "decreasing column ends"),
    (Format.CSC, [2, 40], [], "columns beyond the pointer memory"),
    (Format.DENSE, [2, 200], [], "entries beyond the nonzero memory"),
    (Format.BITMAP, [20, 16], [], "bitmaps beyond the meta memory"),
])
def test_descriptor_faults(fmt, ptr, meta, message):
    nz = np.zeros(4, dtype=np.uint32)
    with pytest.raises(DescriptorFault):
        decode_lane(fmt, np.array(ptr), nz, np.array(meta), ptr_base=0, nz_base=0, x_base=0,
                    out_base=0, config=CONFIG)


def test_descriptor_bases():
    a = scipy.sparse.csr_matrix(np.ones((2, 8), dtype=np.int64))
    for fmt in (Format.DENSE, Format.CSC):
        _, ptr, nz, meta = _image(fmt, a)
        decode_lane(fmt, ptr, nz, meta, ptr_base=0, nz_base=0, x_base=56, out_base=30,
                    config=CONFIG)
        with pytest.raises(DescriptorFault):
            decode_lane(fmt, ptr, nz, meta, ptr_base=0, nz_base=0, x_base=57, out_base=0,
                        config=CONFIG)
        with pytest.raises(DescriptorFault):
            decode_lane(fmt, ptr, nz, meta, ptr_base=0, nz_base=0, x_base=0, out_base=31,
                        config=CONFIG)


def test_nm_check_prune_and_parse():
    a = scipy.sparse.csr_matrix(np.array([[1, 2, 0, 0, 5, 0, 0, 0],
                                          [0, 0, 0, 0, 0, 0, 0, 0],
                                          [0, 0, 0, 0, -4, 3, 1, 0],
                                          [3, 1, 4, 1, 0, 0, 0, 9]]))
    assert nm_violation(a, 2, 4) == (2, 4, 3)
    assert nm_violation(a, 3, 4) == (3, 0, 4)
    assert nm_violation(a, 4, 4) is None
    pruned, removed = prune_nm(a, 2, 4)
    assert removed == 3 and nm_violation(pruned, 2, 4) is None
    # the largest magnitudes stay; ties keep the lower column
    assert pruned.toarray()[2].tolist() == [0, 0, 0, 0, -4, 3, 0, 0]
    assert pruned.toarray()[3].tolist() == [3, 0, 4, 0, 0, 0, 0, 9]
    assert parse_nm("2:4") == (2, 4) and parse_nm((1, 8)) == (1, 8)
    for bad in ("2-4", "3:6", "0:4", "5:4", "x"):
        with pytest.raises(CompileError):
            parse_nm(bad)


def test_format_names():
    assert format_by_name("CSC") is Format.CSC
    with pytest.raises(CompileError, match="unknown format 'ell'; known: csr, coo, bitmap, nm, "
                                           "dense, csc"):
        format_by_name("ell")


def test_nm_word_round_trips():
    """The N:M word: encoder, model reader and HDL view agree on ``N | log2(M) << 8``."""
    words = {}
    for n in (1, 2, 3, 127, 255):
        for log2_m in range(16):
            word = nm_descriptor(n, 1 << log2_m)
            assert word == n | log2_m << 8
            assert nm_of_descriptor(word) == (n, 1 << log2_m)
            view = NmWord.from_bits(word)
            assert (view.n, view.log2_m) == (n, log2_m)
            # Pointer-word bits above the descriptor are ignored.
            assert nm_of_descriptor(word | 0x1F << 12) == (n, 1 << log2_m)
            words[word | 0x1F << 12] = (n, log2_m)
    # The format decoder's view of a wider pointer word.
    p2, nm = Signal(17), Signal(NmWord)
    m = Module()
    m.d.comb += nm.eq(p2)
    sim = Simulator(m)

    async def check(ctx):
        for word, fields in words.items():
            ctx.set(p2, word)
            assert (ctx.get(nm.n), ctx.get(nm.log2_m)) == fields
    sim.add_testbench(check)
    sim.run()
