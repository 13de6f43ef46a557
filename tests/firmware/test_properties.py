"""Property-based tests (Hypothesis) for what takes outside input.

- the Matrix Market / NumPy / SciPy loader: random valid files load as
  ``scipy.io.mmread`` reads them; random corruptions give a one-line
  :class:`InputError` naming the file, or a valid matrix, never another
  exception;
- the compiler: random shapes, densities, row-length skews, epilogues and
  configurations run on the ISA model exactly like the integer reference,
  with the cycles the program predicts;
- the program file format: truncated or bit-flipped files are refused with
  an :class:`InputError` naming the file (or, where the flip hits bytes the
  archive does not use, load unchanged).
"""

import io
import zipfile

import numpy as np
import pytest
import scipy.io
import scipy.sparse
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from zeroskip.core.config import AcceleratorConfig
from zeroskip.core.errors import InputError
from zeroskip.firmware.compiler import compile_kernel, compile_spmv
from zeroskip.firmware.loader import load_matrix
from zeroskip.firmware.program import Program
from zeroskip.firmware.reference import spmv_reference
from zeroskip.sim.backends import run_model

FAST = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


def _one_line_input_error(call, path):
    """Run ``call``; a failure must be one line naming ``path``. Returns the result or None."""
    try:
        return call()
    except InputError as error:
        message = str(error)
        assert "\n" not in message and message.startswith(str(path)), message
        return None


# Matrix Market -----------------------------------------------------------------------------------

@st.composite
def mtx_files(draw):
    """``(text, dense expected)``: a random valid Matrix Market file."""
    fmt = draw(st.sampled_from(["coordinate", "array"]))
    field = draw(st.sampled_from(["integer", "real"] + (["pattern"] if fmt == "coordinate"
                                                        else [])))
    square = draw(st.booleans())
    rows = draw(st.integers(1, 7))
    cols = rows if square else draw(st.integers(1, 7))
    symmetries = ["general"]
    if rows == cols:
        symmetries += ["symmetric"] + (["skew-symmetric"] if field != "pattern" else [])
    symmetry = draw(st.sampled_from(symmetries))
    if field == "integer":
        value = st.integers(-10**12, 10**12)
    elif field == "real":
        value = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=64)
    else:
        value = st.just(1)
    if symmetry == "general":
        allowed = [(i, j) for j in range(cols) for i in range(rows)]
    elif symmetry == "symmetric":
        allowed = [(i, j) for j in range(cols) for i in range(j, rows)]
    else:
        allowed = [(i, j) for j in range(cols) for i in range(j + 1, rows)]
    if fmt == "coordinate":
        chosen = draw(st.lists(st.sampled_from(allowed), unique=True, max_size=len(allowed))
                      if allowed else st.just([]))
    else:
        chosen = allowed
    values = [draw(value) for _ in chosen]
    dense = np.zeros((rows, cols), dtype=np.float64)
    for (i, j), v in zip(chosen, values):
        dense[i, j] = v
        if symmetry == "symmetric":
            dense[j, i] = v
        elif symmetry == "skew-symmetric":
            dense[j, i] = -v

    def show(v):
        if field == "real":
            text = repr(float(v))
            return draw(st.sampled_from([text, text.upper()]))
        return str(int(v))

    comment = st.sampled_from(["", "% a comment\n", "%\n", "\n"])
    lines = [f"%%MatrixMarket matrix {fmt} {field} {symmetry}\n", draw(comment)]
    if fmt == "coordinate":
        lines.append(f"{rows} {cols} {len(chosen)}\n")
        order = draw(st.permutations(range(len(chosen))))
        for k in order:
            (i, j), v = chosen[k], values[k]
            tail = "" if field == "pattern" else f" {show(v)}"
            lines.append(f"{i + 1}{draw(st.sampled_from([' ', '  ', chr(9)]))}{j + 1}{tail}\n")
    else:
        lines.append(f"{rows} {cols}\n")
        lines += [f"{show(v)}\n" for v in values]
    return "".join(lines), dense


@FAST
@given(mtx_files())
def test_valid_matrix_market_files_load_as_scipy_reads_them(tmp_path, case):
    text, dense = case
    path = tmp_path / "a.mtx"
    path.write_text(text)
    loaded = load_matrix(path)
    theirs = scipy.io.mmread(str(path))
    theirs = theirs.toarray() if scipy.sparse.issparse(theirs) else np.asarray(theirs)
    assert loaded.shape == theirs.shape == dense.shape
    assert np.array_equal(loaded.toarray(), theirs)
    assert np.array_equal(loaded.toarray(), dense)
    integral = "integer" in text.split("\n")[0] or "pattern" in text.split("\n")[0]
    assert loaded.dtype == (np.int64 if integral else np.float64)


def _corrupt(data, draw):
    kind = draw(st.sampled_from(["truncate", "flip", "delete", "insert", "replace"]))
    data = bytearray(data)
    if not data:
        return bytes(data)
    at = draw(st.integers(0, len(data) - 1))
    if kind == "truncate":
        return bytes(data[:at])
    if kind == "flip":
        data[at] ^= 1 << draw(st.integers(0, 7))
    elif kind == "delete":
        del data[at]
    elif kind == "insert":
        data.insert(at, draw(st.integers(0, 255)))
    else:
        token = draw(st.sampled_from([b"x", b"-", b"1e999", b"nan", b"0", b"99999999999999999999",
                                      b" ", b"\n", b"%", b"1.5", b"\xff"]))
        data[at:at + 1] = token
    return bytes(data)


@FAST
@given(mtx_files(), st.data())
def test_corrupted_matrix_market_files_give_one_line_errors(tmp_path, case, data):
    path = tmp_path / "a.mtx"
    path.write_bytes(_corrupt(case[0].encode(), data.draw))
    loaded = _one_line_input_error(lambda: load_matrix(path), path)
    if loaded is not None:
        assert scipy.sparse.issparse(loaded) and loaded.ndim == 2


@FAST
@given(st.integers(1, 6), st.integers(1, 6), st.sampled_from(["npy", "npz"]), st.data())
def test_corrupted_numpy_and_scipy_files_give_one_line_errors(tmp_path, rows, cols, kind, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    dense = rng.integers(-5, 6, (rows, cols))
    buffer = io.BytesIO()
    if kind == "npy":
        np.save(buffer, dense)
    else:
        scipy.sparse.save_npz(buffer, scipy.sparse.csr_matrix(dense))
    path = tmp_path / f"a.{kind}"
    path.write_bytes(buffer.getvalue())
    assert np.array_equal(load_matrix(path).toarray(), dense)
    path.write_bytes(_corrupt(buffer.getvalue(), data.draw))
    loaded = _one_line_input_error(lambda: load_matrix(path), path)
    if loaded is not None:
        assert scipy.sparse.issparse(loaded) and loaded.ndim == 2


# The compiler ------------------------------------------------------------------------------------

CONFIGS = [
    AcceleratorConfig(),
    AcceleratorConfig(pes=1),
    AcceleratorConfig(pes=3, value_width=8, x_depth=16, nz_depth=16, row_depth=8, imem_depth=4),
    AcceleratorConfig(pes=4, x_depth=64, x_banks=4, nz_depth=32, row_depth=16, imem_depth=8),
    AcceleratorConfig(pes=5, x_depth=32, nz_depth=64, row_depth=8, imem_depth=16,
                      reduce=False),
    AcceleratorConfig(pes=4, x_depth=64, nz_depth=64, row_depth=16,
                      formats=("csr", "coo", "bitmap", "dense", "csc", "nm")),
]


@st.composite
def matrices(draw, config):
    rows = draw(st.integers(1, 120))
    cols = draw(st.integers(1, 120))
    density = draw(st.sampled_from([0.0, 0.01, 0.05, 0.2, 0.6]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    mask = rng.random((rows, cols)) < density
    # Skew: a few long rows (and the occasional full one).
    for _ in range(draw(st.integers(0, 3))):
        mask[rng.integers(rows)] |= rng.random(cols) < draw(st.sampled_from([0.5, 1.0]))
    bound = 1 << (config.value_width - 1)
    values = rng.integers(-bound, bound, (rows, cols))
    values[values == 0] = 1
    return scipy.sparse.csr_matrix(np.where(mask, values, 0))


@FAST
@given(st.data())
def test_the_model_computes_what_scipy_computes(data):
    config = data.draw(st.sampled_from(CONFIGS))
    a = data.draw(matrices(config))
    rows, cols = a.shape
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    bound = 1 << (config.value_width - 1)
    sparse_x = data.draw(st.booleans())
    x = rng.integers(-bound, bound, cols)
    if sparse_x:
        x[rng.random(cols) < 0.7] = 0
    options = {}
    if data.draw(st.booleans()):
        options["bias"] = rng.integers(-1000, 1000, rows) * (rng.random(rows) < 0.5)
    if data.draw(st.booleans()):
        options.update(shift=data.draw(st.integers(0, 12)), relu=data.draw(st.booleans()))
        if data.draw(st.booleans()):
            low = data.draw(st.integers(-100, 50))
            options["clamp"] = (low, low + data.draw(st.integers(0, 200)))
    split = data.draw(st.sampled_from(["auto", False] + ([True] if config.reduce else [])))
    # Keep every partial sum inside the accumulator (overflow is its own test).
    worst = np.abs(a).astype(np.int64) @ np.abs(x).astype(np.int64)
    assume(int(worst.max(initial=0)) + 1000 < config.acc_max)
    program = compile_kernel(a, config, x=x, split_rows=split, dense_baseline=False, **options)
    result = run_model(program, x)
    expected, overflow = spmv_reference(a, x, config=config, epilogue=program.epilogue.applied,
                                        **options)
    assert not overflow
    assert np.array_equal(result.y_raw, expected)
    assert result.counters["cycles"] == program.predicted_cycles(x)
    assert result.counters["macs"] + result.counters["skipped"] >= a.nnz


@FAST
@given(st.data())
def test_hypersparse_matrices_cost_their_nonzeros(data):
    """Rows and columns without nonzeros cost nothing: the tiles, their rows and the
    cycles do not depend on the dimensions."""
    config = AcceleratorConfig()
    nnz = data.draw(st.integers(0, 12))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    small = scipy.sparse.random(16, 16, density=nnz / 256, format="coo", random_state=rng,
                                data_rvs=lambda k: rng.integers(1, 50, k))
    scale = data.draw(st.sampled_from([1, 100, 5000]))
    big = scipy.sparse.csr_matrix((small.data, (small.row * scale, small.col * scale)),
                                  shape=(16 * scale, 16 * scale), dtype=np.int64)
    x = rng.integers(-8, 8, big.shape[1])
    program = compile_spmv(big, config)
    result = run_model(program, x)
    assert np.array_equal(result.y_raw, big @ x)
    read = sum(len(tile.readback) for tile in program.tiles)
    assert read == len(np.unique(small.row))
    assert len(program.tiles) <= max(nnz, 0)


# The program file format -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def saved_program(tmp_path_factory):
    rng = np.random.default_rng(3)
    a = scipy.sparse.random(40, 30, density=0.2, format="csr", random_state=rng,
                            data_rvs=lambda k: rng.integers(1, 9, k))
    program = compile_spmv(a.astype(np.int64), AcceleratorConfig(pes=4), bias=np.arange(40),
                           shift=1)
    path = tmp_path_factory.mktemp("program") / "p.npz"
    program.save(path)
    return program, path.read_bytes()


def _same_program(one, two):
    assert one.config == two.config and one.shape == two.shape and one.nnz == two.nnz
    assert one.epilogue == two.epilogue and len(one.tiles) == len(two.tiles)
    for t1, t2 in zip(one.tiles, two.tiles):
        assert np.array_equal(t1.code, t2.code) and np.array_equal(t1.readback, t2.readback)
        for p in range(one.config.pes):
            assert np.array_equal(t1.ptr[p], t2.ptr[p]) and np.array_equal(t1.nz[p], t2.nz[p])


@FAST
@given(st.data())
def test_truncated_program_files_are_refused(tmp_path, saved_program, data):
    program, raw = saved_program
    cut = data.draw(st.integers(0, len(raw) - 1))
    path = tmp_path / "cut.npz"
    path.write_bytes(raw[:cut])
    with pytest.raises(InputError) as error:
        Program.load(path)
    assert "\n" not in str(error.value) and str(error.value).startswith(str(path))


@FAST
@given(st.data())
def test_bit_flipped_program_files_are_refused_or_unchanged(tmp_path, saved_program, data):
    program, raw = saved_program
    flipped = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(raw) - 1))
        flipped[at] ^= 1 << data.draw(st.integers(0, 7))
    path = tmp_path / "flip.npz"
    path.write_bytes(bytes(flipped))
    loaded = _one_line_input_error(lambda: Program.load(path), path)
    if loaded is not None:
        # Only bytes the archive does not read (timestamps, comments, padding) changed.
        _same_program(program, loaded)


def test_corrupt_archive_member_is_refused(tmp_path, saved_program):
    """A member whose content (not its CRC) changed: the archive's check refuses it."""
    program, raw = saved_program
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        info = archive.getinfo("t0_code.npy")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    flipped = bytearray(raw)
    flipped[start + info.compress_size // 2] ^= 0x10
    path = tmp_path / "member.npz"
    path.write_bytes(bytes(flipped))
    with pytest.raises(InputError, match="not a zeroskip program"):
        Program.load(path)
