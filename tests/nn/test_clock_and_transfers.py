"""infer and run: the clock from the build record, compute and end-to-end times."""

import sys
from pathlib import Path

import numpy as np
import pytest

from zeroskip import Accelerator
from zeroskip.app import transfers
from zeroskip.app.nn.infer import evaluate, network_config
from zeroskip.boards import record

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nn_helpers import sparse_inputs, tiny_network  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "boards"))
from test_record import fake_report  # noqa: E402


@pytest.fixture
def private_record(tmp_path, monkeypatch):
    path = tmp_path / "routed.json"
    monkeypatch.setenv(record.RECORD_VARIABLE, str(path))
    return path


def test_infer_counts_transfers_and_labels_the_clock(private_record):
    net = tiny_network()
    x = sparse_inputs(20, 24)
    result = evaluate(net, x, baseline=False, batch=8)
    acc = result["accelerator"]
    config = network_config()
    assert acc["clock_mhz"] == 50.0 and acc["clock_routed"] is False
    assert acc["clock_source"].startswith("unrouted estimate: the ulx3s-85f's default build "
                                          "clock 50 MHz")
    moved = acc["data_movement"]
    assert moved["link"] == "axi4-lite"
    assert acc["seconds_per_inference"] == result["cycles_per_inference"] / 50e6
    axi = moved["links"]["axi4-lite"]
    assert acc["end_to_end_seconds_per_inference"] == pytest.approx(
        acc["seconds_per_inference"] + sum(axi["seconds_per_inference"].values()))
    words = moved["words_per_inference"]
    assert set(words) == {"code", "weights", "inputs", "activations", "results", "control"}
    assert words["results"] * 20 % 8 == 0     # the last layer's reads: whole batches of 8 rows
    assert result["energy_breakdown_nj"]["transfers"] == pytest.approx(
        640.0 * moved["total_words_per_inference"] / 1000.0)
    assert result["energy_breakdown_nj"]["total"] == result["energy_per_inference_nj"]
    # A routed build of the network's configuration moves the clock, and says so.
    record.append(fake_report(config=config, clock_mhz=100.0, fmax_mhz=61.5),
                  date="2026-12-07T10:00:00Z")
    routed = evaluate(net, x, baseline=False, batch=8)["accelerator"]
    assert routed["clock_mhz"] == 61.5 and routed["clock_routed"] is True
    assert routed["clock_source"].startswith(f"routed build ulx3s-85f {config.fingerprint} of "
                                             f"2026-12-07T10:00:00Z")
    assert routed["seconds_per_inference"] == result["cycles_per_inference"] / 61.5e6


def test_infer_words_are_the_programs_counts(private_record):
    """The network count is each layer's program count times its batches."""
    from zeroskip.app.nn.compile import compile_network, run_network
    from zeroskip.app.nn.quantize import quantize_network
    net = tiny_network()
    x = sparse_inputs(20, 24)
    q = quantize_network(net, x, value_width=8, acc_width=32)
    x_int = q.quantize_inputs(x)
    compiled = compile_network(q, network_config(), x_int, batch=8)
    run = run_network(compiled, x_int)
    total = transfers.count_network(compiled, run)
    batches = 3     # 20 inputs in batches of 8
    first = [transfers.count_program(p) for _, p in compiled.layers[0].groups]
    last = [transfers.count_program(p) for _, p in compiled.layers[-1].groups]
    assert total.words("inputs") == batches * sum(t.words("inputs") for t in first)
    assert total.words("results") == batches * sum(t.words("results") for t in last)
    assert total.words() == batches * sum(transfers.count_program(p).words()
                                          for p in compiled.programs())


def test_run_reports_clock_and_end_to_end(private_record):
    import scipy.sparse as sp
    a = sp.random(40, 30, density=0.2, random_state=0, format="csr")
    result = Accelerator(pes=4).matmul(a, np.ones(30))
    timing = result.timing()
    assert timing["board"] == "ulx3s-85f" and not timing["routed"]
    assert timing["seconds"] == result.cycles / 50e6
    moved = transfers.count_program(result.program)
    assert timing["data_movement"]["total_words_per_inference"] == moved.words()
    assert timing["end_to_end_seconds"] == pytest.approx(
        timing["seconds"] + sum(transfers.link_seconds(moved, "axi4-lite",
                                                       clock_hz=50e6).values()))
    assert result.to_json()["time"] == timing
