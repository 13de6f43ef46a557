import numpy as np
import pytest
import scipy.sparse

from zeroskip.core.config import AcceleratorConfig
from zeroskip.core.errors import InputError, ProgramMismatchError
from zeroskip.firmware.compiler import compile_spmv
from zeroskip.firmware.model import Machine
from zeroskip.firmware.program import Program, pack_nz, unpack_nz
from zeroskip.sim.backends import run_model

SMALL = AcceleratorConfig(pes=3, value_width=8, x_depth=16, nz_depth=16, row_depth=8,
                          imem_depth=4)


def random_matrix(rng, rows, cols, density, low, high):
    """A random integer CSR matrix with values in [low, high] (zeros dropped)."""
    a = scipy.sparse.random(rows, cols, density=density, format="csr", random_state=rng)
    a.data = rng.integers(low, high + 1, a.nnz).astype(np.int64)
    a.eliminate_zeros()
    return a


def _program():
    rng = np.random.default_rng(0)
    a = random_matrix(rng, 20, 30, 0.3, -9, 9)
    return compile_spmv(a, SMALL, bias=np.arange(20), shift=1, relu=True, a_frac_bits=3,
                        x_frac_bits=2, name="demo"), rng.integers(-9, 10, 30)


def test_nz_packing_round_trip():
    cols = np.array([0, 15, 7])
    values = np.array([-128, 127, -1])
    words = pack_nz(cols, values, SMALL)
    assert words.dtype == np.uint32
    got_cols, got_values = unpack_nz(words, SMALL)
    assert got_cols.tolist() == cols.tolist() and got_values.tolist() == values.tolist()
    # layout: col in the low col_width bits, then the value
    assert int(words[2]) == 7 | 0xFF << 4


def test_save_load_round_trip(tmp_path):
    program, x = _program()
    path = tmp_path / "demo.zsp"
    program.save(path)
    loaded = Program.load(path)
    assert loaded.config == program.config
    assert loaded.shape == program.shape and loaded.nnz == program.nnz
    assert (loaded.a_frac_bits, loaded.x_frac_bits, loaded.name) == (3, 2, "demo")
    assert loaded.epilogue == program.epilogue
    assert loaded.lane_nnz.tolist() == program.lane_nnz.tolist()
    assert len(loaded.tiles) == len(program.tiles)
    for a, b in zip(loaded.tiles, program.tiles, strict=True):
        assert np.array_equal(a.code, b.code) and a.code.dtype == np.uint64
        assert a.x_cols == b.x_cols
        assert np.array_equal(a.readback, b.readback)
        assert all(np.array_equal(p, q) for p, q in zip(a.ptr, b.ptr, strict=True))
        assert all(np.array_equal(p, q) for p, q in zip(a.nz, b.nz, strict=True))
        assert (a.bias is None) == (b.bias is None)
        if a.bias is not None:
            assert all(np.array_equal(p, q) for p, q in zip(a.bias, b.bias, strict=True))
    assert loaded.listing() == program.listing()
    assert np.array_equal(run_model(loaded, x).y_raw, run_model(program, x).y_raw)


def test_load_rejects_garbage(tmp_path):
    path = tmp_path / "junk.zsp"
    path.write_bytes(b"not a program at all")
    with pytest.raises(InputError, match=rf"^{path}: not a zeroskip program"):
        Program.load(path)
    with pytest.raises(InputError, match=r"missing.zsp: cannot read program"):
        Program.load(tmp_path / "missing.zsp")
    other = tmp_path / "other.npz"
    np.savez(other, header=np.array('{"format": "something else"}'))
    with pytest.raises(InputError, match="does not name the zeroskip program format"):
        Program.load(other)


def test_load_rejects_inconsistent_arrays(tmp_path):
    program, _ = _program()
    path = tmp_path / "p.zsp"
    program.save(path)
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    arrays["t0_nz1"] = np.zeros(SMALL.nz_depth + 1, dtype=np.uint32)
    bad = tmp_path / "bad.zsp"
    with open(bad, "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(InputError, match=r"bad.zsp: not a valid zeroskip program: t0_nz1 holds "
                                         r"17 words but the nonzero memory holds 16"):
        Program.load(bad)
    del arrays["t0_code"]
    with open(bad, "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(InputError, match="missing array 't0_code'"):
        Program.load(bad)


def test_check_config():
    program, _ = _program()
    program.check_config(SMALL)
    other = SMALL.replace(pes=4)
    with pytest.raises(ProgramMismatchError) as info:
        program.check_config(other)
    message = str(info.value)
    assert message.startswith("program was built for pes=3 value_width=8 acc_width=32 ")
    assert f"(fingerprint {SMALL.fingerprint}) but the hardware is pes=4 " in message
    assert message.endswith(f"(fingerprint {other.fingerprint})")
    assert "\n" not in message
    with pytest.raises(ProgramMismatchError):
        run_model(program, np.zeros(30, dtype=np.int64), machine=Machine(other))


def test_listing():
    program, _ = _program()
    text = program.listing()
    assert text.startswith("program 'demo': 20 x 30, ")
    assert f"fingerprint {SMALL.fingerprint}" in text
    assert "a_frac_bits=3 x_frac_bits=2 y_frac_bits=4" in text
    assert "epilogue: shift=1 relu=1 clamp=[-128, 127] bias=yes" in text
    assert "set_epi shift=1 relu=1 lo=-128 hi=127" in text
    assert "spmv ptr=0 nz=0 x=0 out=0 accumulate=1 epilogue=1 bias=1" in text
    assert "CV" in text
    assert f"predicted cycles: {program.predicted_cycles()}" in text


def test_version_1_programs_still_load(tmp_path):
    import json
    program, x = _program()
    path = tmp_path / "p.npz"
    program.save(path)
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    header = json.loads(str(arrays["header"]))
    header["version"] = 1
    for key in ("kernel", "rhs_columns", "report"):
        del header[key]
    for tile in header["tiles"]:
        del tile["meta"], tile["x_loads"]
    arrays["header"] = np.array(json.dumps(header))
    old = tmp_path / "old.npz"
    with open(old, "wb") as f:
        np.savez(f, **arrays)
    loaded = Program.load(old)
    assert loaded.kernel == "spmv" and loaded.rhs_columns == 0 and loaded.report == {}
    assert np.array_equal(run_model(loaded, x).y_raw, run_model(program, x).y_raw)
    header["version"] = 3
    arrays["header"] = np.array(json.dumps(header))
    with open(old, "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(InputError, match="format version 3 is not one of 1, 2"):
        Program.load(old)
