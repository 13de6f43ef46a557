"""Host transfers: counted from the driver's own run, timed on AXI4-Lite and the UART."""

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from zeroskip import AcceleratorConfig
from zeroskip.app import energy, transfers
from zeroskip.boards import protocol
from zeroskip.firmware.compiler import compile_spmv
from zeroskip.firmware.loader import load_matrix
from zeroskip.firmware.quant import quantize

DATA = Path(__file__).resolve().parent.parent / "examples" / "data"


def program_of(name, config=None):
    config = AcceleratorConfig() if config is None else config
    quantized = quantize(load_matrix(DATA / f"{name}.mtx"), value_width=config.value_width)
    return compile_spmv(sp.csr_matrix(quantized.ints), config, name=name)


def expected_words(program):
    """Words per kind from the program's memory images, counted here independently."""
    config = program.config
    code = weights = inputs = results = 0
    loaded = None
    for tile in program.tiles:
        code += 2 * len(tile.code)
        for images in (tile.ptr, tile.nz, getattr(tile, "meta", None), tile.bias):
            weights += sum(len(image) for image in images or ())
        loads = tuple(tile.loads())
        if loads != loaded:
            inputs += sum(stop - start for _, _, start, stop in loads)
            loaded = loads
        table = tile.results()
        results += sum(int(table[table[:, 0] == lane][:, 1].max()) + 1
                       for lane in np.unique(table[:, 0]))
    # ID and fingerprint; CTRL clear and start, one STATUS, six counters and PE_BUSY per tile.
    control = 2 + len(program.tiles) * (2 + 1 + 6 + config.pes)
    return {"code": code, "weights": weights, "inputs": inputs, "results": results,
            "control": control}


@pytest.mark.parametrize("name", ["west0067", "cage5", "494_bus"])
def test_count_program_equals_the_memory_images(name):
    program = program_of(name)
    moved = transfers.count_program(program)
    assert {kind: moved.words(kind) for kind in moved.kinds()} == expected_words(program)


def test_several_tiles_count_every_load():
    config = AcceleratorConfig(pes=2, nz_depth=64, row_depth=16, x_depth=64)
    program = program_of("west0067", config)
    assert len(program.tiles) > 1
    moved = transfers.count_program(program)
    assert {kind: moved.words(kind) for kind in moved.kinds()} == expected_words(program)


def test_link_times():
    moved = transfers.Transfers()
    moved.add("weights", "write", 100)      # bursts of 64 and 36 words on the UART
    moved.add("results", "read", 3, count=2)
    axi = transfers.link_seconds(moved, "axi4-lite", clock_hz=50e6)
    assert axi == {"weights": 300 / 50e6, "results": 2 * 15 / 50e6}   # 3 and 5 cycles a word
    # The UART bytes are those of the frames the protocol encodes.
    out = sum(len(protocol.encode_command(protocol.OP_WRITE, 0, 0, words=[0] * n)) +
              len(protocol.encode_response(0, protocol.STATUS_OK)) for n in (64, 36))
    back = len(protocol.encode_command(protocol.OP_READ, 0, 0, count=3)) + \
        len(protocol.encode_response(0, protocol.STATUS_OK, words=[0] * 3))
    uart = transfers.link_seconds(moved, "uart")
    assert uart == {"weights": 10 * out / protocol.DEFAULT_BAUDRATE,
                    "results": 2 * 10 * back / protocol.DEFAULT_BAUDRATE}
    with pytest.raises(ValueError, match="^unknown link 'pcie'; choose one of axi4-lite, uart$"):
        transfers.link_seconds(moved, "pcie")


def test_axi4_lite_cycles_per_word_are_the_slaves():
    """Back-to-back writes and reads through hdl/axil.py take the stated cycles per word."""
    from amaranth.sim import Simulator

    from zeroskip.hdl.axil import AxiLiteSlave
    dut = AxiLiteSlave(addr_width=8)
    cycles = {}

    async def bench(ctx):
        axil = dut.axil
        ctx.set(axil.wstrb, 0b1111)
        ctx.set(axil.bready, 1)
        ctx.set(axil.rready, 1)
        for kind, valid in (("write", (axil.awvalid, axil.wvalid)), ("read", (axil.arvalid,))):
            for signal in valid:
                ctx.set(signal, 1)
            answers, count = [], 0
            while len(answers) < 10:
                await ctx.tick()
                count += 1
                if ctx.get(axil.bvalid if kind == "write" else axil.rvalid):
                    answers.append(count)   # accepted at the next edge (ready is up)
            for signal in valid:
                ctx.set(signal, 0)
            await ctx.tick().repeat(4)
            cycles[kind] = set(np.diff(answers).tolist())
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    # In the steady state of back-to-back words, one answer every word's cycles.
    assert cycles == {"write": {transfers.AXIL_WRITE_CYCLES},
                      "read": {transfers.AXIL_READ_CYCLES}}


def test_data_movement_report_and_energy():
    moved = transfers.count_program(program_of("west0067"))
    report = transfers.data_movement(moved, inferences=2, clock_mhz=50.0, backend="model",
                                     compute_seconds=1e-6, amortisation="rule")
    assert report["link"] == "axi4-lite" and report["one_off"] == ["code", "weights"]
    assert report["total_words_per_inference"] == moved.words() / 2
    axi = report["links"]["axi4-lite"]
    assert report["end_to_end_seconds_per_inference"] == axi["end_to_end_seconds_per_inference"]
    assert axi["end_to_end_seconds_per_inference"] == pytest.approx(
        1e-6 + sum(axi["seconds_per_inference"].values()))
    board = transfers.data_movement(moved, inferences=1, clock_mhz=50.0, backend="board",
                                    compute_seconds=0.0, amortisation="rule")
    assert board["link"] == "uart"
    assert energy.transfer_energy(10) == 10 * 640.0
