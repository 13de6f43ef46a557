"""A network at products_per_lane k > 1: outputs equal k = 1's, cycles follow the
pass rule, utilization stays at most 1 and every figure is labelled a projection."""

import importlib.util
from pathlib import Path

import pytest

from zeroskip.app.nn.infer import evaluate, network_config
from zeroskip.boards.record import PROJECTION

_spec = importlib.util.spec_from_file_location("nn_helpers",
                                               Path(__file__).with_name("nn_helpers.py"))
nn_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nn_helpers)


def _evaluate(k, **kwargs):
    network = nn_helpers.tiny_network()
    x = nn_helpers.sparse_inputs(32, 24)
    config = network_config().replace(products_per_lane=k)
    return evaluate(network, x, config=config, batch=8, baseline=False, **kwargs)


@pytest.fixture(scope="module")
def results():
    return {k: _evaluate(k) for k in (1, 2, 4, 8)}


def test_outputs_and_products_equal_k1(results):
    base = results[1]
    for result in results.values():
        assert result["bit_exact_vs_quantized_reference"]
        assert result["outputs"] == base["outputs"]
        for row, ref in zip(result["layers"], base["layers"]):
            assert row["macs"] == ref["macs"] and row["pe_busy"] == ref["pe_busy"]


def test_cycles_shrink_and_utilization_stays_at_most_1(results):
    for k, result in results.items():
        for row, ref in zip(result["layers"], results[1]["layers"]):
            assert 0 < row["utilization"] <= 1
            # A pass costs at least what one input costs: never below k = 1's / k.
            assert ref["cycles"] / k <= row["cycles"] <= ref["cycles"]
            assert row["dense_mode_cycles"] >= row["shape"][0] * row["shape"][1] * \
                row["inputs_run"] / (8 * k)
    assert results[8]["cycles"] < results[2]["cycles"] < results[1]["cycles"]


def test_every_figure_of_k_above_1_is_labelled_a_projection(results):
    assert results[1]["accelerator"]["projection"] is None
    assert not results[1]["accelerator"]["clock_source"].startswith(PROJECTION)
    for k in (2, 4, 8):
        acc = results[k]["accelerator"]
        assert acc["macs_per_cycle"] == 8 * k and acc["products_per_lane"] == k
        assert acc["projection"] == (
            f"model projection: products_per_lane {k} ({8 * k} MACs per cycle) runs only "
            f"on the ISA model, its cycles by the pass rule; no hardware of it is generated "
            f"yet")
        assert acc["clock_source"].startswith(acc["projection"] + "; unrouted estimate")
        assert not acc["clock_routed"]


def test_infer_text_says_projection(capsys, results):
    from zeroskip.app.nn.cli import print_summary
    print_summary(results[4])
    out = capsys.readouterr().out
    assert "(ulx3s-85f, 8 PEs x 4 products)" in out
    assert f"note: {results[4]['accelerator']['projection']}; every time" in out


def test_a_simulator_refuses_before_running():
    from zeroskip.core.errors import ConfigError
    with pytest.raises(ConfigError, match=r"^products_per_lane 2: the generated hardware"):
        _evaluate(2, backend="verilator")
