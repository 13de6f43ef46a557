"""A whole network as one program: its layers chained on chip with MOVE.

The digits MLP (64-64-10, one-shot pruned to 90 %) runs as one linked program
per batch on the ISA model and on pysim; its outputs equal the layer-by-layer
run bit for bit, the model's counters equal pysim's and the program's own
cycle prediction, and the host link carries the inputs, the last layer's
outputs and the control words, but no activation.
"""

import functools

import numpy as np
import pytest

from zeroskip.app import transfers
from zeroskip.app.nn import digits
from zeroskip.app.nn.chain import chain_network
from zeroskip.app.nn.compile import compile_network, run_network
from zeroskip.app.nn.infer import network_config
from zeroskip.app.nn.prune import prune_network
from zeroskip.app.nn.quantize import quantize_network
from zeroskip.core.config import AcceleratorConfig
from zeroskip.core.errors import CompileError, InputError
from zeroskip.core.isa import Opcode
from zeroskip.firmware.asm import decode

#: Small enough for pysim; the digits network fits it for a batch of 2.
SMALL = AcceleratorConfig(pes=4, value_width=8, x_depth=256, nz_depth=512, row_depth=64,
                          imem_depth=16, formats=("csr", "csc"))


@functools.lru_cache(maxsize=None)
def digits_network():
    x_train, x_test, y_train, _ = digits.load_data()
    model = digits.train(x_train, y_train, max_iter=60)
    net, _ = prune_network(digits.to_network(model), sparsity=0.9)
    return quantize_network(net, x_train, value_width=8, acc_width=32), x_test


def compiled_digits(config, images, batch):
    q, x_test = digits_network()
    x_int = q.quantize_inputs(x_test[:images])
    return compile_network(q, config, x_int, batch=batch), x_int


def opcodes(program):
    return [decode(int(word))[0] for word in program.tiles[0].code]


def test_digits_as_one_program_on_the_model_equals_layer_by_layer():
    compiled, x_int = compiled_digits(network_config(), 30, 16)
    layered = run_network(compiled, x_int, skip_empty=False)
    chained = run_network(compiled, x_int, chained=True)
    np.testing.assert_array_equal(chained.outputs[-1], layered.outputs[-1])
    np.testing.assert_array_equal(chained.outputs[-1], compiled.quantized.reference(x_int)[-1])
    program = chained.chained.program
    assert len(program.tiles) == 1 and opcodes(program).count(Opcode.MOVE) == 1
    assert opcodes(program)[-1] is Opcode.HALT
    # Two batches (30 inputs, the last padded); the prediction is the model's count.
    padded = np.zeros((32, x_int.shape[1]), dtype=np.int64)
    padded[:30] = x_int
    predicted = sum(program.predicted_cycles(padded[i:i + 16].T) for i in (0, 16))
    assert chained.counters[0]["cycles"] == predicted
    # The same effectual products as the layer-by-layer run on the real inputs (the
    # padding inputs' hidden activations are the biases' epilogue here, zeros there).
    (first,) = run_network(compiled, x_int[:16], chained=True).counters
    one = run_network(compiled, x_int[:16], skip_empty=False).counters
    assert first["macs"] == sum(c["macs"] for c in one)


def test_digits_chained_on_pysim_equals_the_model():
    compiled, x_int = compiled_digits(SMALL, 4, 2)
    model = run_network(compiled, x_int, chained=True)
    rtl = run_network(compiled, x_int, chained=True, backend="pysim")
    layered = run_network(compiled, x_int, skip_empty=False)
    np.testing.assert_array_equal(rtl.outputs[-1], layered.outputs[-1])
    np.testing.assert_array_equal(model.outputs[-1], layered.outputs[-1])
    assert rtl.counters == model.counters


def test_the_host_link_carries_inputs_outputs_and_control_only():
    compiled, x_int = compiled_digits(SMALL, 4, 2)
    chain = chain_network(compiled)
    program = chain.program
    tile = program.tiles[0]
    counted = transfers.count_program(program)
    # Both inputs of the batch (64 words each); from each lane its out words up to
    # its last result (the last layer's region starts at word 0).
    assert counted.words("inputs") == 2 * 64
    readback = tile.results()
    lanes = np.unique(readback[:, 0])
    assert counted.words("results") == sum(int(readback[readback[:, 0] == p, 1].max()) + 1
                                           for p in lanes)
    assert readback[:, 1].max() < 2 * chain.layouts[-1].words
    # ID and fingerprint, clear and start, one status poll, the counters.
    assert counted.words("control") == 2 + 2 + 1 + 6 + SMALL.pes
    assert counted.kinds() == ["code", "weights", "inputs", "results", "control"]
    assert counted.words("code") == 2 * len(tile.code)
    run = run_network(compiled, x_int, chained=True)
    total = transfers.count_network(compiled, run)
    assert total.words() == 2 * counted.words() and total.words("activations") == 0
    layered = run_network(compiled, x_int, skip_empty=False)
    assert transfers.count_network(compiled, layered).words("activations") > 0


def test_a_network_that_does_not_fit_says_which_limit():
    compiled, _ = compiled_digits(SMALL, 16, 16)
    with pytest.raises(CompileError, match=r"^the network does not fit on chip as one "
                                           r"program: the MOVE after layer 1 \(4 lanes x 224 "
                                           r"words\) needs 896 words but x_depth is 256$"):
        chain_network(compiled)
    compiled, _ = compiled_digits(SMALL, 4, 4)
    with pytest.raises(CompileError, match=r"^the network does not fit on chip as one "
                                           r"program: the outputs of 4 column\(s\) of every "
                                           r"layer need 68 words but row_depth \(out and bias "
                                           r"words per lane\) is 64$"):
        chain_network(compiled)


def test_a_chained_run_drops_no_input():
    compiled, x_int = compiled_digits(SMALL, 4, 2)
    with pytest.raises(InputError, match=r"^skip_empty=True needs the host between the "
                                         r"layers; a chained run sends every input$"):
        run_network(compiled, x_int, chained=True, skip_empty=True)


def test_chained_passes_use_one_move_per_slot():
    """products_per_lane 2: each layer's outputs go to X in two slots (one MOVE each);
    the outputs are k = 1's, the cycles the program's prediction and fewer."""
    base = network_config()
    runs = {}
    for k in (1, 2):
        config = base.replace(products_per_lane=k)
        compiled, x_int = compiled_digits(config, 16, 16)
        runs[k] = run_network(compiled, x_int, chained=True)
        program = runs[k].chained.program
        assert opcodes(program).count(Opcode.MOVE) == k
        assert runs[k].counters[0]["cycles"] == program.predicted_cycles(x_int.T)
    np.testing.assert_array_equal(runs[2].outputs[-1], runs[1].outputs[-1])
    assert runs[2].counters[0]["macs"] == runs[1].counters[0]["macs"]
    assert runs[2].counters[0]["cycles"] < runs[1].counters[0]["cycles"]
