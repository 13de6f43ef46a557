"""The simulators' back door loads exactly what the host port loads.

Once per simulator, programs that use every memory window (microcode, ``ptr``
in one bank and split in two for column mode, ``nz``, ``meta``, ``bias``, X at
several addresses, split rows with their route lists, several tiles) are
loaded tile by tile through AXI4-Lite and through the back door: every word of
every memory of the design must agree. Then each program runs after both
kinds of load: the same results and counters, equal to the ISA model's. The
unit tests below check the name map and the layout without a simulator.
"""

import asyncio
import functools
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from zeroskip import AcceleratorConfig
from zeroskip.core.errors import DeviceError, ZeroskipError
from zeroskip.core.isa import MemoryMap, Region
from zeroskip.firmware.compiler import compile_kernel, compile_spmv
from zeroskip.firmware.model import Machine
from zeroskip.hdl.generate import memory_map, verilog_text
from zeroskip.sim.backdoor import BackdoorMemories, MemoryLayout
from zeroskip.sim.backends import Job, run_many
from zeroskip.sim.buses import ModelBus
from zeroskip.sim.driver import BusMemories

# The configuration of tests/system/test_formats_system.py: the same build.
CONFIG = AcceleratorConfig(pes=4, x_depth=256, nz_depth=512, row_depth=64, imem_depth=16,
                           formats=("csr", "coo", "bitmap", "nm", "dense", "csc"))
ROW_CONFIG = AcceleratorConfig(pes=2, x_depth=64, nz_depth=64, row_depth=16, imem_depth=8)
COLUMN_CONFIG = AcceleratorConfig(pes=2, x_depth=64, nz_depth=64, row_depth=16, imem_depth=8,
                                  formats=("csr", "csc"))


def random_matrix(rows, cols, density, seed):
    rng = np.random.default_rng(seed)
    matrix = sp.random(rows, cols, density=density, format="csr", random_state=rng,
                       data_rvs=lambda n: rng.integers(-60, 60, n))
    matrix.data[matrix.data == 0] = 3
    return matrix.astype(np.int64)


def ragged_matrix(seed):
    """Long rows next to empty ones: split across lanes and reduced back."""
    matrix = random_matrix(40, 120, 0.04, seed).tolil()
    matrix[3, :] = np.random.default_rng(seed).integers(1, 9, 120)
    matrix[4:9, :] = 0
    return matrix.tocsr()


CASES = ("csr-tiled-epilogue", "csr-split-rows", "coo", "csc", "spmm")


@functools.lru_cache(maxsize=None)
def jobs():
    rng = np.random.default_rng(1)
    a = random_matrix(30, 40, 0.15, seed=2)
    x = rng.integers(-8, 8, 40)
    sparse_x = np.where(rng.random(40) < 0.3, x, 0)
    wide = random_matrix(270, 300, 0.01, seed=3)
    return {
        # Two row blocks and two column tiles, bias and the epilogue.
        "csr-tiled-epilogue": Job(compile_spmv(wide, CONFIG, bias=np.arange(270) - 135,
                                               shift=1, relu=True), rng.integers(-8, 8, 300)),
        "csr-split-rows": Job(compile_spmv(ragged_matrix(4), CONFIG, split_rows=True),
                              rng.integers(-8, 8, 120)),
        "coo": Job(compile_kernel(a, CONFIG, x=x, kernel="spmv", fmt="coo"), x),
        "csc": Job(compile_kernel(a, CONFIG, x=sparse_x, kernel="spmspv", fmt="csc"), sparse_x),
        "spmm": Job(compile_kernel(a, CONFIG, x=rng.integers(-8, 8, (40, 3)), kernel="spmm",
                                   fmt="csr"), rng.integers(-8, 8, (40, 3))),
    }


@functools.lru_cache(maxsize=None)
def comparisons(simulator):
    """Per case: the job, its :class:`LoadComparison`, the model's result, the design's memories."""
    from zeroskip.sim.cocotb_backend import MEMORIES_FILE, run_cocotb
    cases = jobs()
    assert tuple(cases) == CASES
    results = run_cocotb(simulator, CONFIG, list(cases.values()), load="compare")
    models = run_many(list(cases.values()), backend="model")
    found = json.loads((Path("build") / "sim" / f"{simulator}-{CONFIG.fingerprint}"
                        / MEMORIES_FILE).read_text())
    return {name: (job, result, model, found)
            for (name, job), result, model in zip(cases.items(), results, models)}


@pytest.mark.parametrize("simulator, case", [
    pytest.param(simulator, case, marks=pytest.mark.xdist_group(f"formats-{simulator}"),
                 id=f"{simulator}-{case}")
    for simulator in ("icarus", "verilator") for case in CASES])
def test_backdoor_loads_what_the_host_port_loads(simulator, case):
    job, comparison, model, found = comparisons(simulator)[case]
    assert not isinstance(comparison, Exception), comparison
    # Every word of every memory, after loading each tile both ways.
    per_tile = sum(memory["depth"] for memory in found)
    assert comparison.words == len(job.program.tiles) * per_tile
    assert comparison.mismatches == []
    for result in (comparison.axi, comparison.backdoor):
        assert not isinstance(result, Exception), result
        np.testing.assert_array_equal(result.y_raw, model.y_raw)
        assert result.counters == model.counters
    assert comparison.out_mismatches == []


# Without a simulator: the name map, the layout and the back door's words.


@functools.lru_cache(maxsize=None)
def memories(config):
    return memory_map(verilog_text(config))


def test_memory_map_names_every_window_by_its_amaranth_name():
    config = COLUMN_CONFIG
    found = {m["name"]: m for m in memories(config)}
    assert found["sequencer.imem"]["width"] == 64
    assert found["sequencer.imem"]["depth"] == config.imem_depth
    for lane in range(config.pes):
        for name in ("nz", "meta", "bias", "out"):
            assert f"lane{lane}.{name}" in found
        assert found[f"lane{lane}.ptr_even"]["depth"] == config.row_depth // 2
        assert f"lane{lane}.ptr" not in found
    banks = sorted(name for name in found if name.startswith("gather.x"))
    assert banks == [f"gather.x{k}_bank{b}" for k in range(config.clusters)
                     for b in range(config.x_banks)]
    # A memory renamed in Verilog keeps its Amaranth name; its path is the
    # escaped identifier the simulators know.
    bias = found["lane0.bias"]
    assert bias["path"][0] == "lane0"
    assert bias["path"][-1] in ("bias", f"\\{bias['path'][-1][1:-1]} ")


class FakeElement:
    def __init__(self):
        self.value = 0

    def set(self, action):
        self.value = action.value


class FakeHierarchy(dict):
    """A cocotb top level made of dicts and lists of elements."""

    def __missing__(self, key):
        raise KeyError(key)


def fake_dut(memories):
    dut = FakeHierarchy()
    for memory in memories:
        node = dut
        for key in memory["path"][:-1]:
            node = node.setdefault(key, FakeHierarchy())
        node[memory["path"][-1]] = [FakeElement() for _ in range(memory["depth"])]
    return dut


def words(dut, path):
    node = dut
    for key in path:
        node = node[key]
    return [element.value for element in node]


#: Column mode, with X as two copies (clusters of two lanes) of two banks each.
CLUSTERED_CONFIG = COLUMN_CONFIG.replace(pes=4, cluster_lanes=2, x_banks=2)


async def _load(memories_):
    await memories_.write_code([0x1122_3344_5566_7788, 0xFFFF_FFFF_0000_0001])
    await memories_.write_lane(Region.PTR, 1, [5, 0xFFFF_FFFF, 7])
    await memories_.write_lane(Region.BIAS, 0, [0xFFFF_FFFE])
    await memories_.write_x(3, [0xFFFF_FFFF, 9, 0x1_0002])


def test_backdoor_writes_every_copy_and_truncates_like_the_host_port():
    config = CLUSTERED_CONFIG
    layout = MemoryLayout(config, memories(config))
    dut = fake_dut(memories(config))
    asyncio.run(_load(BackdoorMemories(dut, layout)))
    assert words(dut, ["sequencer", "imem"])[:2] == [0x1122_3344_5566_7788,
                                                       0xFFFF_FFFF_0000_0001]
    # Column mode: ptr word a in ptr_even/ptr_odd at a // 2, truncated.
    ptr_mask = (1 << config.ptr_width) - 1
    even = next(m for m in layout.memories if m.name == "lane1.ptr_even")
    odd = next(m for m in layout.memories if m.name == "lane1.ptr_odd")
    assert words(dut, even.path)[:2] == [5, 7]
    assert words(dut, odd.path)[:1] == [ptr_mask]
    # X: element j in bank j % 2 at j // 2 of every copy, value_width bits.
    path = {m.name: m.path for m in layout.memories}
    for cluster in range(2):
        bank0 = words(dut, path[f"gather.x{cluster}_bank0"])
        bank1 = words(dut, path[f"gather.x{cluster}_bank1"])
        assert (bank1[1], bank0[2], bank1[2]) == (0xFFFF, 9, 2)
    # The ISA model's host port stores the same values.
    machine = Machine(config)
    asyncio.run(_load(BusMemories(ModelBus(machine), config)))
    assert list(machine.x[3:6]) == [-1, 9, 2]
    assert list(machine.ptr[1, :3]) == [5, ptr_mask, 7]


def test_backdoor_out_reads_sign_extended_words():
    layout = MemoryLayout(ROW_CONFIG, memories(ROW_CONFIG))
    dut = fake_dut(memories(ROW_CONFIG))
    out = next(m for m in layout.memories if m.name == "lane1.out")
    elements = dut["lane1"][out.path[-1]]
    elements[0].value, elements[1].value = 0xFFFF_FFFF, 7
    assert asyncio.run(BackdoorMemories(dut, layout).read_out(1, 2)) == [0xFFFF_FFFF, 7]


def test_backdoor_refuses_what_the_host_port_refuses():
    layout = MemoryLayout(ROW_CONFIG, memories(ROW_CONFIG))
    door = BackdoorMemories(fake_dut(memories(ROW_CONFIG)), layout)
    port = BusMemories(ModelBus(Machine(ROW_CONFIG)), ROW_CONFIG)
    for memories_ in (door, port):
        with pytest.raises(DeviceError) as error:
            asyncio.run(memories_.write_lane(Region.NZ, 0, [1] * (ROW_CONFIG.nz_depth + 1)))
        assert str(error.value) == ("the accelerator rejected the write of address "
                                    f"0x{MemoryMap(ROW_CONFIG).lane(Region.NZ, 0, 64):07x} "
                                    "(SLVERR)")


def test_layout_names_a_missing_or_wrong_memory():
    found = [m for m in memories(ROW_CONFIG) if m["name"] != "lane1.nz"]
    with pytest.raises(ZeroskipError, match=r"^the generated Verilog has no memory 'lane1.nz'$"):
        MemoryLayout(ROW_CONFIG, found)
    odd = [dict(m, depth=m["depth"] * 2) if m["name"] == "gather.x1_bank0" else m
           for m in memories(ROW_CONFIG)]
    with pytest.raises(ZeroskipError, match=r"^the X copy of cluster 1 is not 1 bank\(s\) of "
                                            r"64 words \(x1_bank0..x1_bank0\)$"):
        MemoryLayout(ROW_CONFIG, odd)
    shared = ROW_CONFIG.replace(cluster_lanes=2)
    odd = [dict(m, depth=m["depth"] * 2) if m["name"] == "gather.x0_bank1" else m
           for m in memories(shared)]
    with pytest.raises(ZeroskipError, match=r"^the X copy of cluster 0 is not 4 bank\(s\) of "
                                            r"16 words \(x0_bank0..x0_bank3\)$"):
        MemoryLayout(shared, odd)
    with pytest.raises(ZeroskipError, match=r"^the generated Verilog has no X memories "
                                            r"\(gather.x<k>_bank<b>\)$"):
        MemoryLayout(ROW_CONFIG, [m for m in memories(ROW_CONFIG)
                                  if not m["name"].startswith("gather.")])


def test_load_modes_are_checked():
    job = Job(compile_spmv(random_matrix(4, 4, 0.5, seed=1), ROW_CONFIG), np.ones(4, int))
    with pytest.raises(ZeroskipError, match=r"^unknown load 'jtag'; choose one of axi, backdoor$"):
        run_many([job], backend="model", load="jtag")
    with pytest.raises(ZeroskipError, match=r"^load 'backdoor' needs a simulator backend "
                                            r"\(icarus, verilator\), not 'model'$"):
        run_many([job], backend="model", load="backdoor")
    result, = run_many([job], backend="model", load="axi")
    assert result.seconds["load"] >= 0
