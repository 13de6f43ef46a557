"""Networks streamed from the external memory: bit-exact against the on-chip run,
cycles as the programs predict, the one load apart in the host words; the options."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from zeroskip.app import transfers
from zeroskip.app.cli import main
from zeroskip.app.nn.compile import compile_network, run_network
from zeroskip.app.nn.onnx_io import save_onnx
from zeroskip.app.nn.quantize import quantize_network
from zeroskip.core.config import AcceleratorConfig
from zeroskip.core.errors import InputError
from zeroskip.core.extmem import ext_preset
from zeroskip.core.isa import Opcode
from zeroskip.firmware.asm import decode

_spec = importlib.util.spec_from_file_location("nn_helpers",
                                               Path(__file__).with_name("nn_helpers.py"))
nn_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nn_helpers)

#: Small lane memories, so that every layer has several tiles; X holds one input at a time.
PLAIN = AcceleratorConfig(pes=4, value_width=8, acc_width=32, x_depth=64, nz_depth=64,
                          row_depth=16, formats=("csr", "csc"))
STREAMED = PLAIN.replace(**ext_preset("ulx3s-sdram").fields())


@pytest.fixture(scope="module")
def networks():
    net = nn_helpers.tiny_network(5, sizes=(64, 48, 10), density=0.5)
    x = nn_helpers.sparse_inputs(18, 64, 6, density=0.5)
    q = quantize_network(net, x, value_width=8, acc_width=32)
    x_int = q.quantize_inputs(x)
    plain = compile_network(q, PLAIN, x_int, batch=4)
    streamed = compile_network(q, STREAMED, x_int, batch=4, stream=True)
    return q, x_int, plain, streamed


def _loads(program):
    return sum(decode(int(word))[0] is Opcode.LOAD for tile in program.tiles
               for word in tile.code)


def test_a_streamed_network_equals_the_on_chip_run_bit_for_bit(networks):
    q, x_int, plain, streamed = networks
    assert not plain.stream and streamed.stream
    on_chip = run_network(plain, x_int, skip_empty=False)
    run = run_network(streamed, x_int, skip_empty=False)
    for ours, theirs, reference in zip(run.outputs, on_chip.outputs, q.reference(x_int)):
        assert np.array_equal(ours, theirs) and np.array_equal(ours, reference)
    # The loads cost cycles: the streamed run is slower, layer by layer.
    assert all(s["cycles"] > p["cycles"] for s, p in zip(run.counters, on_chip.counters))


def test_a_streamed_layers_cycles_are_its_programs_prediction(networks):
    q, x_int, _, streamed = networks
    run = run_network(streamed, x_int, skip_empty=False)
    x = np.zeros((run.padded, x_int.shape[1]), dtype=np.int64)
    x[:len(x_int)] = x_int
    for index, (layer, counters) in enumerate(zip(streamed.layers, run.counters)):
        predicted = sum(program.predicted_cycles(x[start:start + streamed.batch].T)
                        for start in range(0, run.padded, streamed.batch)
                        for _, program in layer.groups)
        assert counters["cycles"] == predicted
        x = q.layer_reference(index, x)


def test_every_layer_shares_one_image_and_tiles_keep_what_a_half_holds(networks):
    _, _, plain, streamed = networks
    programs = streamed.programs()
    assert all(program.ext is streamed.ext for program in programs)
    assert len(streamed.ext) == sum(p.report["stream"]["ext_words"] for p in programs)
    bases = [p.report["stream"]["ext_base"] for p in programs]
    assert bases == sorted(bases) and bases[0] == 0
    # X holds one input at a time, so a layer's tiles repeat per input: the repeats
    # load nothing (the half holds their blocks) and the image holds them once.
    repeated = [p for p in programs if len(p.tiles) > len({t.code.tobytes() for t in p.tiles})]
    assert repeated
    for program in programs:
        assert _loads(program) < 4 * len(program.tiles)


def test_host_words_show_the_one_load_apart(networks):
    _, x_int, plain, streamed = networks
    run = run_network(streamed, x_int, skip_empty=False)
    load, batches = transfers.count_streamed(streamed, run)
    # EXT_ADDR (a control word), then the image in EXT_DATA bursts.
    assert (load.words("weights"), load.words("control")) == (len(streamed.ext), 1)
    assert load.words() == len(streamed.ext) + 1
    assert batches.words("weights") == 0
    total = transfers.count_network(streamed, run)
    assert total.words() == load.words() + batches.words()
    assert total.words("weights") == len(streamed.ext)
    # On chip, every batch writes every tile's lane images again.
    on_chip = transfers.count_network(plain, run_network(plain, x_int, skip_empty=False))
    assert on_chip.words("weights") > 4 * len(streamed.ext)
    for kind in ("code", "inputs", "activations", "results"):
        assert batches.words(kind) == total.words(kind) > 0, kind
    assert total.words("control") == batches.words("control") + 1


def test_a_streamed_network_refuses_chaining_and_other_backends(networks):
    _, x_int, _, streamed = networks
    with pytest.raises(InputError) as info:
        run_network(streamed, x_int, chained=True)
    assert str(info.value) == ("a streamed network runs layer by layer: a chained program "
                               "moves its layers with MOVE, which a streamed program holds "
                               "none of")
    with pytest.raises(InputError) as info:
        run_network(streamed, x_int, backend="icarus")
    assert str(info.value) == ("a streamed network runs on the ISA model only (the generated "
                               "hardware has no external-memory port yet), not on 'icarus'")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    net = nn_helpers.tiny_network(3)
    save_onnx(net, root / "net.onnx")
    np.save(root / "x.npy", nn_helpers.sparse_inputs(12, net.inputs, 4))
    return root


def test_infer_stream_at_the_ulx3s_sdram(files, capsys):
    out = files / "out.json"
    assert main(["infer", str(files / "net.onnx"), "--inputs", str(files / "x.npy"),
                 "--stream", "--ext-memory", "ulx3s-sdram", "--no-baseline", "--batch", "4",
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "bit-exact with the quantized reference: yes" in text
    assert "streamed: one load of" in text and "(ulx3s-sdram: 8 words per 17 cycles" in text
    data = json.loads(out.read_text())
    ext = data["accelerator"]["external_memory"]
    assert ext["preset"] == "ulx3s-sdram" and ext["ext_rate_cycles"] == 17
    stream = data["accelerator"]["data_movement"]["stream"]
    assert stream["load_words"] == {"weights": stream["ext_words"], "control": 1}
    assert "weights" not in stream["batch_words"]


@pytest.mark.parametrize("extra, message", [
    (["--stream"], "--stream needs an external memory: --ext-memory ulx3s-sdram or "
                   "--ext-words N"),
    (["--ext-memory", "ddr5"],
     "--ext-memory ddr5: unknown external memory 'ddr5'; known: ulx3s-sdram"),
    (["--ext-latency", "5"], "--ext-latency needs an external memory (ext_words > 0), not 5"),
    (["--ext-memory", "ulx3s-sdram", "--ext-rate-cycles", "65"],
     "--ext-rate-cycles must be between 1 and 64, not 65"),
    (["--ext-words", "1000"],
     "--ext-words must be 0 (none) or a power of two from 1024 to 67108864, not 1000"),
    (["--ext-memory", "ulx3s-sdram", "--stream", "--chained"],
     "--stream and --chained exclude each other: a streamed network runs layer by layer "
     "(a streamed program holds no MOVE)"),
    (["--ext-memory", "ulx3s-sdram", "--stream", "--backend", "icarus"],
     "--stream runs on --backend model only, not icarus: the generated hardware has no "
     "external-memory port yet"),
])
def test_infer_stream_errors_one_line(files, capsys, extra, message):
    argv = ["infer", str(files / "net.onnx"), "--inputs", str(files / "x.npy"),
            "--no-baseline"]
    assert main(argv + extra) == 2
    assert capsys.readouterr().err == f"zeroskip: error: {message}\n"


@pytest.mark.parametrize("extra, message", [
    (["--stream"], "--stream needs an external memory: --ext-memory ulx3s-sdram or "
                   "--ext-words N"),
    (["--ext-words-per-cycle", "3", "--ext-words", "1024"],
     "--ext-words-per-cycle must be 1, 2, 4 or 8, not 3"),
    (["--ext-rate-cycles", "2"],
     "--ext-rate-cycles needs an external memory (ext_words > 0), not 2"),
])
def test_compile_stream_errors_one_line(tmp_path, capsys, extra, message):
    assert main(["compile", "a.mtx", *extra]) == 2
    assert capsys.readouterr().err == f"zeroskip: error: {message}\n"


def test_compile_stream_writes_a_streamed_program(tmp_path, capsys):
    matrix = tmp_path / "a.npy"
    rng = np.random.default_rng(0)
    np.save(matrix, rng.integers(-3, 4, (40, 40)) * (rng.random((40, 40)) < 0.3))
    out = tmp_path / "a.npz"
    assert main(["compile", str(matrix), "--stream", "--ext-memory", "ulx3s-sdram",
                 "--pes", "4", "--nz-depth", "64", "--row-depth", "16", "-o", str(out)]) == 0
    from zeroskip.firmware.program import Program
    program = Program.load(out)
    assert program.ext is not None and _loads(program) > 0
    assert program.config.ext_rate_cycles == 17
