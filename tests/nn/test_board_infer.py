"""A chained network resident on chip, and ``zeroskip infer --backend board``.

A resident session loads the chained program once and then moves only each
batch's inputs, outputs and control words: on the ISA model and on pysim its
outputs equal the chained run that reloads everything per batch, bit for bit,
and so do its counters. The board backend runs the same session over the
board's link; here a stand-in for the serial link answers with the ISA model
of a board (of the right configuration, or of another), and the bad options
and ports are refused with one line and exit status 2.
"""

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

from zeroskip.app import transfers
from zeroskip.app.cli import main
from zeroskip.app.nn.compile import compile_network, run_network
from zeroskip.app.nn.infer import network_config
from zeroskip.app.nn.onnx_io import save_onnx
from zeroskip.app.nn.prune import prune_network
from zeroskip.app.nn.quantize import quantize_network
from zeroskip.boards import link
from zeroskip.core.config import AcceleratorConfig
from zeroskip.core.errors import InputError, ZeroskipError
from zeroskip.core.isa import MemoryMap
from zeroskip.firmware.compiler import compile_spmv
from zeroskip.sim.driver import Driver, Session

_spec = importlib.util.spec_from_file_location("nn_helpers",
                                               Path(__file__).with_name("nn_helpers.py"))
nn_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nn_helpers)

#: Small enough for pysim (as in test_chained_network.py).
SMALL = AcceleratorConfig(pes=4, value_width=8, x_depth=256, nz_depth=512, row_depth=64,
                          imem_depth=16, formats=("csr", "csc"))


def compiled_tiny(config, images=7, batch=2):
    net, _ = prune_network(nn_helpers.tiny_network(5), sparsity=0.5)
    x = nn_helpers.sparse_inputs(images, net.inputs, 6)
    q = quantize_network(net, x, value_width=8, acc_width=32)
    x_int = q.quantize_inputs(x)
    return compile_network(q, config, x_int, batch=batch), x_int


def test_resident_on_the_model_equals_reloading_every_batch():
    compiled, x_int = compiled_tiny(SMALL)
    reloaded = run_network(compiled, x_int, chained=True)
    resident = run_network(compiled, x_int, chained=True, resident=True)
    assert resident.resident and not reloaded.resident
    np.testing.assert_array_equal(resident.outputs[-1], reloaded.outputs[-1])
    np.testing.assert_array_equal(resident.outputs[-1], compiled.quantized.reference(x_int)[-1])
    assert resident.counters == reloaded.counters
    # The one load, then four batches (7 inputs, the last padded) of inputs, results, control.
    load, batch = transfers.count_resident(resident.chained.program)
    assert load.kinds() == ["code", "weights", "control"]
    assert batch.kinds() == ["inputs", "results", "control"]
    assert batch.words("inputs") == 2 * 24
    # clear, start; one status poll, the counters and each PE's busy count.
    assert batch.words("control") == 2 + 1 + 6 + SMALL.pes
    counted = transfers.count_network(compiled, resident)
    assert counted.words() == load.words() + 4 * batch.words()
    every = transfers.count_network(compiled, reloaded)
    assert every.words() == 4 * (load.words() + batch.words())
    assert counted.words("code") == every.words("code") // 4


def test_resident_on_pysim_equals_the_model():
    compiled, x_int = compiled_tiny(SMALL, images=4)
    model = run_network(compiled, x_int, chained=True, resident=True)
    rtl = run_network(compiled, x_int, chained=True, resident=True, backend="pysim")
    np.testing.assert_array_equal(rtl.outputs[-1], model.outputs[-1])
    assert rtl.counters == model.counters


def test_a_session_holds_one_tile_and_resident_needs_chained():
    config = AcceleratorConfig(pes=2, x_depth=64, nz_depth=64, row_depth=8, imem_depth=8)
    program = compile_spmv(np.eye(40, dtype=np.int64), config)
    assert len(program.tiles) > 1
    with pytest.raises(ZeroskipError, match=rf"^{program.name} has {len(program.tiles)} "
                                            rf"tiles; a resident session keeps one tile on "
                                            rf"chip$"):
        Session(Driver(None, config), program)
    compiled, x_int = compiled_tiny(SMALL)
    with pytest.raises(InputError, match=r"^resident=True needs chained=True: only a chained "
                                         r"network is one program that stays on chip$"):
        run_network(compiled, x_int, resident=True)
    with pytest.raises(InputError, match=r"^port applies to the board backend only, not "
                                         r"'model'$"):
        run_network(compiled, x_int, chained=True, port="/dev/ttyUSB1")


# zeroskip infer --backend board -------------------------------------------------------------------

class ModelBoard:
    """Stands in for :class:`~zeroskip.boards.link.SerialBus`: the ISA model of a
    board generated from ``config``, keeping its memories while the port is open."""

    config = None
    opened = []

    def __init__(self, port, **options):
        from zeroskip.firmware.model import Machine
        from zeroskip.sim.buses import ModelBus
        self.bus = ModelBus(Machine(self.config))
        self.writes = 0
        ModelBoard.opened.append((port, options, self))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    async def write(self, addr, words):
        self.writes += len(words)
        await self.bus.write(addr, words)

    async def read(self, addr, count):
        return await self.bus.read(addr, count)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("board")
    net = nn_helpers.tiny_network(3)
    x = nn_helpers.sparse_inputs(12, net.inputs, 4)
    save_onnx(net, root / "net.onnx")
    np.save(root / "x.npy", x)
    return root


def infer(files, *extra):
    return main(["infer", str(files / "net.onnx"), "--inputs", str(files / "x.npy"),
                 "--prune", "0.5", "--batch", "4", "--no-baseline", *extra])


def board(monkeypatch, config):
    monkeypatch.setattr(ModelBoard, "config", config)
    monkeypatch.setattr(ModelBoard, "opened", [])
    monkeypatch.setattr(link, "SerialBus", ModelBoard)


def test_infer_on_a_board_loads_once(files, monkeypatch, capsys):
    board(monkeypatch, network_config())
    out = files / "board.json"
    assert infer(files, "--backend", "board", "--port", "/dev/ttyUSB1", "--baudrate", "115200",
                 "--json", str(out)) == 0
    text = capsys.readouterr().out
    assert "bit-exact with the quantized reference: yes" in text
    data = json.loads(out.read_text())
    assert data["backend"] == "board" and [row["name"] for row in data["layers"]] == ["chained"]
    (port, options, opened), = ModelBoard.opened
    assert port == "/dev/ttyUSB1" and options["baudrate"] == 115200
    moved = data["accelerator"]["data_movement"]
    assert moved["link"] == "uart" and "115,200 baud" in moved["links"]["uart"]["rate"]
    assert moved["one_off"] == ["code", "weights"]
    assert "loaded once and stay on chip" in moved["amortisation"]
    # Every word the host wrote: the one load and three batches of inputs and clear, start.
    words = moved["words_per_inference"]
    written = 12 * (words["code"] + words["weights"] + words["inputs"]) + 3 * 2
    assert opened.writes == round(written)
    assert words["inputs"] == 24
    # The same count split: the one load, then per batch its inputs, results and control.
    resident = moved["resident"]
    assert resident["batches"] == 3 and resident["words_per_batch"]["inputs"] == 4 * 24
    assert set(resident["load_words"]) == {"code", "weights", "control"}
    assert resident["load_words"]["control"] == 2      # the ID and fingerprint reads
    total = sum(resident["load_words"].values()) + 3 * sum(resident["words_per_batch"].values())
    assert total == pytest.approx(12 * moved["total_words_per_inference"])
    assert (f"then {sum(resident['words_per_batch'].values()):,} words per batch (inputs 96, "
            in text)


def test_a_board_of_another_configuration_is_refused(files, monkeypatch, capsys):
    expected = network_config()
    other = expected.replace(row_depth=expected.row_depth // 2)
    board(monkeypatch, other)
    assert infer(files, "--backend", "board", "--port", "/dev/ttyUSB1") == 2
    assert capsys.readouterr().err == (
        f"zeroskip: error: the hardware's configuration fingerprint is "
        f"{MemoryMap(other).fingerprint_word():08x} but the program was built for "
        f"{MemoryMap(expected).fingerprint_word():08x} ({expected.fingerprint})\n")
    (_, _, opened), = ModelBoard.opened
    assert opened.writes == 0


@pytest.mark.parametrize("extra, message", [
    (["--backend", "board"],
     "--backend board needs --port (the board's serial device, e.g. /dev/ttyUSB1)"),
    (["--port", "/dev/ttyUSB1"], "--port applies to --backend board only, not model"),
    (["--backend", "verilator", "--baudrate", "9600"],
     "--baudrate applies to --backend board only, not verilator"),
    (["--backend", "board", "--port", "/dev/ttyUSB1", "--baudrate", "0"],
     "--baudrate must be a positive number of bits per second, not 0"),
    (["--backend", "board", "--port", "/nonexistent/ttyUSB9"],
     "cannot open /nonexistent/ttyUSB9: No such file or directory"),
    (["--resident"],
     "--resident needs --chained (only a chained network is one program that stays on chip)"),
])
def test_board_options_one_line_exit_2(files, capsys, extra, message):
    assert infer(files, *extra) == 2
    assert capsys.readouterr().err == f"zeroskip: error: {message}\n"


def test_a_port_where_no_board_answers(files, capsys):
    master, slave = os.openpty()
    try:
        port = os.ttyname(slave)
        assert infer(files, "--backend", "board", "--port", port, "--baudrate", "115200") == 2
    finally:
        os.close(master)
        os.close(slave)
    assert capsys.readouterr().err == (
        f"zeroskip: error: no answer from {port} after 5 tries (0.5 s each); is the board "
        f"connected, programmed with a zeroskip bitstream and its link set to 115200 baud?\n")


def test_the_api_runs_a_network_on_a_board(monkeypatch):
    from zeroskip import Accelerator
    board(monkeypatch, SMALL)
    net, _ = prune_network(nn_helpers.tiny_network(5), sparsity=0.5)
    x = nn_helpers.sparse_inputs(5, net.inputs, 6)
    acc = Accelerator(SMALL, backend="board", port="/dev/ttyUSB1", baudrate=115200)
    compiled = acc.compile_network(net, x, batch=2)
    result = acc.infer(compiled, x)
    assert result.exact and result.run.resident and result.run.backend == "board"
    model = Accelerator(SMALL).infer(compiled, x, skip_empty=False)
    np.testing.assert_array_equal(result.y_int, model.y_int)
    (port, options, _), = ModelBoard.opened
    assert port == "/dev/ttyUSB1" and options["baudrate"] == 115200
