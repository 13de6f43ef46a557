"""Board-level co-simulation: SerialBus over a pty, UART pins, bridge and accelerator.

The board logic (:class:`~zeroskip.boards.bridged.BridgedAccelerator`) runs on
Verilator; the host code is the one used with a real board. Bytes travel
between the pty and the UART pins bit by bit (see
:mod:`zeroskip.boards.cosim`), with flipped, dropped and duplicated bytes on
the way. Results must equal scipy's bit for bit, counters the ISA model's, and
every word the driver wrote must reach the accelerator exactly once, in order.
A small pruned network, chained and resident (16-bit values, the
configuration of the other tests, so that one simulator build serves them
all), is loaded once; then every batch writes only its inputs and clear,
start.
"""

import numpy as np
import pytest
import scipy.sparse as sp

from zeroskip import AcceleratorConfig
from zeroskip.core.errors import DeviceError
from zeroskip.core.isa import HARDWARE_ID, MemoryMap, Reg, Region
from zeroskip.core.tools import find_tool
from zeroskip.firmware.compiler import compile_spmv
from zeroskip.sim.backends import Job, run_model

pytestmark = pytest.mark.skipif(find_tool("verilator") is None, reason="verilator not installed")

CONFIG = AcceleratorConfig(pes=2, x_depth=64, nz_depth=128, row_depth=32, imem_depth=8)


def random_matrix(rows, cols, density, seed):
    rng = np.random.default_rng(seed)
    matrix = sp.random(rows, cols, density=density, format="csr", random_state=rng,
                       data_rvs=lambda n: rng.integers(-1000, 1000, n))
    matrix.data[matrix.data == 0] = 1
    return matrix.astype(np.int64)


def spmv_jobs():
    cases = []
    for seed, (rows, cols, density) in enumerate([(30, 40, 0.15), (50, 60, 0.08)]):
        matrix = random_matrix(rows, cols, density, seed)
        x = np.random.default_rng(100 + seed).integers(-300, 300, cols)
        cases.append((matrix, x, Job(compile_spmv(matrix, CONFIG), x)))
    return cases


def run(jobs, **kwargs):
    from zeroskip.boards.cosim import run_board_cosim
    return run_board_cosim(CONFIG, jobs, **kwargs)


def check_spmv(report, cases):
    assert len(report.results) == len(cases), report.results
    for (matrix, x, job), result in zip(cases, report.results):
        assert not isinstance(result, Exception), result
        assert np.array_equal(result.y_raw, matrix @ x)
        expected = run_model(job.program, x).counters
        for name in ("cycles", "insns", "macs", "skipped", "gather_stalls"):
            assert result.counters[name] == expected[name], name
    # Every word written exactly once, in order, despite the retransmissions.
    assert report.bus_writes == report.host_writes


def test_registers_over_the_link():
    from zeroskip.boards.cosim import RawJob
    mmap = MemoryMap(CONFIG)
    ops = [
        ("read", int(Reg.ID), 3),
        ("write", int(Reg.CTRL), [2]),
        ("read", int(Reg.STATUS), 1),
        ("write", mmap.x(0), list(range(70))),   # x_depth is 64: words 64.. answer SLVERR
        ("read", mmap.x(0), 1),                  # X is write-only
        ("read", mmap.lane(Region.OUT, 0, 0), 2),
        ("write", mmap.lane(Region.OUT, 5, 0), [1]),
    ]
    report = run([RawJob(ops)])
    ident, clear, status, x_write, x_read, out, bad_lane = report.results[0]
    assert ident == [HARDWARE_ID, mmap.config_word(), mmap.fingerprint_word()]
    assert clear is None and status == [0]
    assert isinstance(x_write, DeviceError)
    assert str(x_write) == (f"the accelerator rejected the write of address "
                            f"0x{mmap.x(64):07x} (SLVERR)")
    assert isinstance(x_read, DeviceError)
    assert out == [0, 0]
    assert isinstance(bad_lane, DeviceError)
    assert report.link["retries"] == 0
    # The burst stopped at the first rejected word; every write reached the bus once.
    assert report.bus_writes == ([(int(Reg.CTRL), 2)] + [(mmap.x(i), i) for i in range(65)]
                                 + [(mmap.lane(Region.OUT, 5, 0), 1)])


def test_spmv_through_a_faulty_link():
    from zeroskip.boards.cosim import LinkFaults
    cases = spmv_jobs()
    faults = LinkFaults(flip=0.0008, drop=0.0008, duplicate=0.0008, seed=3)
    report = run([job for *_, job in cases], faults=faults)
    check_spmv(report, cases)
    for kind in ("flip", "drop", "duplicate"):
        assert sum(n for name, n in report.faults.items() if name.endswith(kind)) > 0, kind
    assert report.link["retries"] > 0 and report.link["naks"] > 0


def test_lost_acknowledgements_do_not_repeat_writes():
    from zeroskip.boards.cosim import LinkFaults
    cases = spmv_jobs()[:1]
    faults = LinkFaults(lose_answer=0.15, seed=5, directions=("board->host",))
    report = run([job for *_, job in cases], faults=faults)
    check_spmv(report, cases)
    assert report.faults["board->host lost answer"] > 0
    # Every lost answer to a write made the host send it again, and the board
    # answered from memory instead of writing twice.
    assert report.link["replays"] > 0


# A network resident on the board ------------------------------------------------------------------

def small_network(seed=11, sizes=(12, 10, 6), density=0.5):
    """A pruned 2-layer ReLU MLP (clamped hidden layer), fixed seed."""
    from zeroskip.app.nn.network import Layer, Network
    from zeroskip.app.nn.prune import prune_network
    rng = np.random.default_rng(seed)
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = rng.normal(0, 0.5, (n_out, n_in)) * (rng.random((n_out, n_in)) < density)
        last = i == len(sizes) - 2
        layers.append(Layer(name=f"fc{i}", weight=w, bias=rng.normal(0, 0.1, n_out),
                            relu=not last, clamp=None if last else (0.0, 2.0)))
    net = Network(layers=layers, input_name="x", output_name="y", input_shape=(sizes[0],))
    return prune_network(net, sparsity=0.5)[0]


def chained_session(config, images=5, batch=2):
    """The network quantized to the board's 16-bit values (one shift group per layer,
    so a batch of 2 fits 8 instructions), chained and split into its batches."""
    from zeroskip.app.nn.chain import chain_network
    from zeroskip.app.nn.compile import compile_network
    from zeroskip.app.nn.quantize import quantize_network
    from zeroskip.sim.backends import SessionJob
    rng = np.random.default_rng(12)
    x = rng.random((images, 12)) * (rng.random((images, 12)) < 0.6)
    q = quantize_network(small_network(), x, value_width=16, acc_width=32, weight_frac_bits=8)
    x_int = q.quantize_inputs(x)
    program = chain_network(compile_network(q, config, x_int, batch=batch)).program
    padded = np.zeros((-(-images // batch) * batch, x_int.shape[1]), dtype=np.int64)
    padded[:images] = x_int
    operands = [padded[i:i + batch].T for i in range(0, len(padded), batch)]
    return q, x_int, SessionJob(program, operands)


def model_session(job):
    """The session on the ISA model: its results and every word it wrote."""
    import asyncio

    from zeroskip.firmware.model import Machine
    from zeroskip.sim.backends import run_job
    from zeroskip.sim.buses import ModelBus, RecordingBus
    bus = RecordingBus(ModelBus(Machine(CONFIG)))
    return asyncio.run(run_job(bus, CONFIG, job)), bus.writes


def test_a_network_resident_on_the_board():
    from zeroskip.app import transfers
    from zeroskip.core.errors import ProgramMismatchError
    from zeroskip.core.isa import CTRL_CLEAR, CTRL_START
    q, x_int, job = chained_session(CONFIG)
    other = CONFIG.replace(row_depth=16)
    _, _, wrong = chained_session(other)
    report = run([job, wrong])
    results, mismatch = report.results
    assert not isinstance(results, Exception), results
    expected, model_writes = model_session(job)
    # Bit-exact against the model, batch by batch, and the quantized reference.
    assert len(results) == len(job.operands) == 3
    for result, want in zip(results, expected):
        assert np.array_equal(result.y_raw, want.y_raw)
        for name in ("cycles", "insns", "macs", "skipped", "gather_stalls"):
            assert result.counters[name] == want.counters[name], name
    outputs = np.concatenate([r.y_raw.T for r in results])[:len(x_int)]
    assert np.array_equal(outputs, q.reference(x_int)[-1])
    # One load, then per batch only its inputs and clear, start: the writes the counting
    # bus counts, at the addresses the program's X loads name, reaching the board once.
    assert report.host_writes == model_writes == report.bus_writes
    load, batch = transfers.count_resident(job.program)
    loaded = sum(words * n for (_, op, words), n in load.transactions.items() if op == "write")
    assert loaded == load.words("code") + load.words("weights")
    mmap, tile = MemoryMap(CONFIG), job.program.tiles[0]
    per_batch = []
    for x in job.operands:
        words = [(mmap.x(address + i), int(v) & 0xFFFF_FFFF)
                 for address, column, start, stop in tile.loads()
                 for i, v in enumerate(x[start:stop, column])]
        per_batch.append(words + [(int(Reg.CTRL), CTRL_CLEAR), (int(Reg.CTRL), CTRL_START)])
    assert len(per_batch[0]) == batch.words("inputs") + 2 == 2 * 12 + 2
    assert report.host_writes[loaded:] == [w for words in per_batch for w in words]
    assert report.link["retries"] == 0
    # A program for another configuration: the board's fingerprint refuses it, unloaded.
    assert isinstance(mismatch, ProgramMismatchError)
    assert str(mismatch) == (f"the hardware's configuration fingerprint is "
                             f"{mmap.fingerprint_word():08x} but the program was built for "
                             f"{MemoryMap(other).fingerprint_word():08x} ({other.fingerprint})")
