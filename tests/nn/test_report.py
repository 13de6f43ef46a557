"""zeroskip report renders its page and plots (from small real runs)."""

import importlib.util
from pathlib import Path

import pytest

from zeroskip.app.nn.infer import evaluate
from zeroskip.app.report import render

_spec = importlib.util.spec_from_file_location("nn_helpers",
                                               Path(__file__).with_name("nn_helpers.py"))
nn_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nn_helpers)


@pytest.fixture(scope="module")
def data():
    net = nn_helpers.tiny_network(7)
    x = nn_helpers.sparse_inputs(12, net.inputs, 8)
    labels = net.forward(x).argmax(axis=1)
    rows = []
    for method, sparsity in (("dense", 0.0), ("one-shot", 0.5), ("gradual", 0.5),
                             ("one-shot", 0.9), ("gradual", 0.9)):
        r = evaluate(net, x, labels=labels, prune=sparsity or None, batch=4)
        r.update(method=method, sparsity=sparsity)
        rows.append(r)
    gc = evaluate(net, x, batch=4, skip_empty=True)
    gc.update(categories=[0, 1], truth=[0, 1], categories_match_truth=True)
    return {"digits": rows, "graph_challenge": gc}


def test_report_page_and_plots(tmp_path, data):
    path = render(tmp_path / "report", data=data)
    text = path.read_text()
    for png in ("accuracy.png", "speedup.png", "utilization.png", "energy.png", "cpu.png"):
        assert (tmp_path / "report" / png).stat().st_size > 1000
        assert f"]({png})" in text
    assert "ULX3S (ECP5 LFE5U-85F)" in text and "**8 PEs** at **50 MHz**" in text
    assert "| Horowitz" not in text and "H14" in text        # sources named in the table
    assert "ORT dense 1 thread" in text and "| scipy.sparse 1 core |" in text
    c = data["graph_challenge"]["cpu"]
    ratio = c["energy_ratio_vs_accelerator"]["scipy_sparse_1_thread"]
    assert f"| {ratio:.1f}x |" in text and "| about 70x |" in text
    assert f"CPU power basis: {c['energy_basis']}." in text
    assert "ASIC-style projection (45 nm event model)" in text
    scipy_us = 1e6 * c["scipy_sparse_1_thread_s"]
    ratio = c["scipy_sparse_1_thread_s"] / c["accelerator_s"]
    assert f"| {scipy_us:.2f} us ({ratio:.2f}x) |" in text
