import numpy as np
import scipy.sparse

from zeroskip.core.config import AcceleratorConfig
from zeroskip.firmware.compiler import compile_spmv
from zeroskip.sim.backends import run_model


def random_matrix(rng, rows, cols, density, low, high):
    """A random integer CSR matrix with values in [low, high] (zeros dropped)."""
    a = scipy.sparse.random(rows, cols, density=density, format="csr", random_state=rng)
    a.data = rng.integers(low, high + 1, a.nnz).astype(np.int64)
    a.eliminate_zeros()
    return a


def test_utilization_512_at_5_percent(capsys):
    config = AcceleratorConfig(pes=8)
    rng = np.random.default_rng(2024)
    a = random_matrix(rng, 512, 512, 0.05, -100, 100)
    x = rng.integers(-100, 101, 512)
    ideal = -(-a.nnz // config.pes)
    report = {}
    for bank_aware in (False, True):
        program = compile_spmv(a, config, bank_aware=bank_aware)
        predicted = program.predicted_cycles()
        counters = run_model(program, x).counters
        assert counters["cycles"] == predicted
        report[bank_aware] = (predicted, ideal / predicted, counters["gather_stalls"])
    with capsys.disabled():
        for bank_aware, (cycles, utilization, stalls) in report.items():
            print(f"\n512x512 5% P=8 bank_aware={bank_aware}: {cycles} cycles, "
                  f"ideal {ideal}, utilization {utilization:.3f}, gather stalls {stalls}")
    assert report[True][1] > 0.5 and report[False][1] > 0.5
    assert report[True][0] <= report[False][0]
