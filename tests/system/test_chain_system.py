"""End to end: two layers chained in hardware (SPMV, MOVE, SPMV) on every backend.

Layer 1 (``A``, with the epilogue) and layer 2 (``B``, raw) are compiled
separately; the chained program runs layer 1, moves every lane's outputs into
X with ``MOVE`` and runs layer 2 on them, with layer 2's columns permuted to
the lane-major order ``MOVE`` writes. Its result must equal two host-chained
runs (layer 1's results written back into X by the driver) bit for bit, and
``B @ epilogue(A @ x)`` in NumPy; its counters must equal the ISA model's and
the program's own cycle prediction.
"""

import dataclasses
import functools

import numpy as np
import pytest
import scipy.sparse as sp

from zeroskip import AcceleratorConfig
from zeroskip.core.isa import Opcode
from zeroskip.firmware.asm import decode, encode_move, encode_spmv
from zeroskip.firmware.compiler import compile_spmv
from zeroskip.firmware.program import Program
from zeroskip.firmware.reference import spmv_reference
from zeroskip.sim.backends import Job, run_many

CONFIGS = {
    "p2c2": AcceleratorConfig(pes=2, x_depth=64, nz_depth=256, row_depth=32, imem_depth=8,
                              cluster_lanes=2, reduce=False),
    "p4": AcceleratorConfig(pes=4, x_depth=64, nz_depth=256, row_depth=32, imem_depth=8,
                            cluster_lanes=2),
}
EPILOGUE = {"shift": 3, "relu": True, "clamp": (0, 90)}


def random_int_matrix(rows, cols, density, seed):
    rng = np.random.default_rng(seed)
    matrix = sp.random(rows, cols, density=density, format="csr", random_state=rng,
                       data_rvs=lambda n: rng.integers(-60, 60, n))
    matrix.data[matrix.data == 0] = 1
    return matrix.astype(np.int64)


def lane_major(first, matrix):
    """``matrix`` (layer 2, its columns layer 1's rows) with column ``r`` moved to the
    X word ``MOVE`` writes row ``r`` to: ``lane * count + local row``; and ``count``."""
    (tile,) = first.tiles
    readback = tile.results()
    count = int(readback[:, 1].max()) + 1
    where = np.zeros(first.shape[0], dtype=np.int64)
    where[readback[:, 2]] = readback[:, 0] * count + readback[:, 1]
    coo = matrix.tocoo()
    shape = (matrix.shape[0], first.config.pes * count)
    return sp.csr_matrix((coo.data, (coo.row, where[coo.col])), shape=shape), count


def padded(images):
    """Per-lane images padded to one length (the next layer's images follow)."""
    length = max(len(image) for image in images)
    return [np.concatenate([image, np.zeros(length - len(image), dtype=image.dtype)])
            for image in images], length


def chained(first, second, count):
    """One tile: ``first``'s code, ``MOVE``, ``second``'s code over images placed after
    ``first``'s (its ``SPMV`` bases shifted)."""
    (t1,), (t2,) = first.tiles, second.tiles
    assert t1.bias is None and t2.bias is None and t1.meta is None and t2.meta is None
    assert t2.loads() == [(0, 0, 0, second.shape[1])]   # layer 2 reads X from word 0
    ptr, ptr_base = padded(t1.ptr)
    nz, nz_base = padded(t1.nz)
    code = []
    for word in t1.code:
        if decode(int(word))[0] is Opcode.HALT:
            break
        code.append(int(word))
    code.append(encode_move(src_base=0, dst_base=0, count=count))
    for word in t2.code:
        opcode, args = decode(int(word))
        if opcode is Opcode.SPMV:
            word = encode_spmv(**dict(args, ptr_base=args["ptr_base"] + ptr_base,
                                      nz_base=args["nz_base"] + nz_base))
        code.append(int(word))
    tile = dataclasses.replace(
        t1, code=np.array(code, dtype=np.uint64), readback=t2.readback,
        ptr=[np.concatenate([a, b]) for a, b in zip(ptr, t2.ptr, strict=True)],
        nz=[np.concatenate([a, b]) for a, b in zip(nz, t2.nz, strict=True)])
    return dataclasses.replace(first, name="chained", tiles=[tile],
                               shape=(second.shape[0], first.shape[1]),
                               nnz=first.nnz + second.nnz, epilogue=second.epilogue)


def layers(config_name):
    """``(A, B, x)`` of a configuration: 2 layers whose outputs fill most lanes' rows."""
    seed = sorted(CONFIGS).index(config_name)
    a = random_int_matrix(27, 40, 0.25, seed=seed)
    b = random_int_matrix(19, 27, 0.3, seed=seed + 10)
    x = np.random.default_rng(seed).integers(-20, 20, 40)
    return a, b, x


@functools.lru_cache(maxsize=None)
def outcome(backend, config_name):
    config = CONFIGS[config_name]
    a, b, x = layers(config_name)
    first = compile_spmv(a, config, **EPILOGUE)
    second = compile_spmv(b, config)
    moved, count = lane_major(first, b)
    program = chained(first, compile_spmv(moved, config), count)
    (model_first,) = run_many([Job(first, x)], backend="model")
    y1 = model_first.y_raw
    jobs = [Job(program, x), Job(first, x), Job(second, y1)]
    results = run_many(jobs, backend=backend)
    model = results if backend == "model" else run_many(jobs, backend="model")
    return program, y1, results, model


@pytest.mark.parametrize("backend, config_name", [
    pytest.param(backend, name, marks=pytest.mark.xdist_group(f"chain-{backend}-{name}"),
                 id=f"{backend}-{name}")
    for backend in ("model", "pysim") for name in CONFIGS
    if not (backend == "pysim" and name == "p4")      # pysim: the small configuration
])
def test_two_layers_chained_in_hardware_equal_host_chained(backend, config_name):
    config = CONFIGS[config_name]
    a, b, x = layers(config_name)
    program, y1, (chain, first, second), (model_chain, _, _) = outcome(backend, config_name)
    for result in (chain, first, second):
        assert not isinstance(result, Exception), result
    # Layer 1 on this backend is what the host chain fed layer 2.
    np.testing.assert_array_equal(first.y_raw, y1)
    expected, overflow = spmv_reference(a, x, config=config, shift=3, relu=True, clamp=(0, 90))
    assert not overflow and np.count_nonzero(expected) > 5   # the epilogue leaves work
    np.testing.assert_array_equal(y1, expected)
    np.testing.assert_array_equal(second.y_raw, b @ y1)
    np.testing.assert_array_equal(chain.y_raw, second.y_raw)
    assert [decode(int(w))[0] for w in program.tiles[0].code].count(Opcode.MOVE) == 1
    assert chain.counters == model_chain.counters
    assert chain.counters["cycles"] == program.predicted_cycles(x)
    # One MOVE instead of the host's round trip; the same products.
    assert chain.counters["insns"] == first.counters["insns"] + second.counters["insns"]
    assert chain.counters["macs"] + chain.counters["skipped"] == a.nnz + b.nnz


def test_a_chained_program_file_round_trips_on_the_model(tmp_path):
    """A program file keeps the MOVE; the listing shows it; the loaded program runs
    to the same result."""
    config_name = "p2c2"
    _, _, x = layers(config_name)
    program, _, (chain, _, _), _ = outcome("model", config_name)
    path = tmp_path / "chained.npz"
    program.save(path)
    loaded = Program.load(path)
    np.testing.assert_array_equal(loaded.tiles[0].code, program.tiles[0].code)
    count = decode(int(program.tiles[0].code[2]))[1]["count"]
    assert f"move src=0 dst=0 count={count}" in loaded.listing()
    (again,) = run_many([Job(loaded, x)], backend="model")
    np.testing.assert_array_equal(again.y_raw, chain.y_raw)
    assert again.counters == chain.counters
