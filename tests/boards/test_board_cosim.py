"""Board-level co-simulation: SerialBus over a pty, UART pins, bridge and accelerator.

The board logic (:class:`~zeroskip.boards.bridged.BridgedAccelerator`) runs on
Verilator; the host code is the one used with a real board. Bytes travel
between the pty and the UART pins bit by bit (see
:mod:`zeroskip.boards.cosim`), with flipped, dropped and duplicated bytes on
the way. Results must equal scipy's bit for bit, counters the ISA model's, and
every word the driver wrote must reach the accelerator exactly once, in order.
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
