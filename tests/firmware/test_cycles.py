import numpy as np
import scipy.sparse

from zeroskip.core import timing
from zeroskip.core.config import AcceleratorConfig
from zeroskip.firmware import cycles
from zeroskip.firmware.compiler import compile_kernel
from zeroskip.sim.backends import run_model


def test_remembered_schedules_equal_the_timing_contract():
    rng = np.random.default_rng(5)
    cycles.clear_cache()
    for _ in range(30):
        lanes = int(rng.integers(1, 6))
        banks = int(rng.choice([1, 2, 4, 8]))
        tokens = [rng.integers(-1, banks, int(rng.integers(0, 40))) for _ in range(lanes)]
        rr = rng.integers(0, lanes, banks).tolist()
        expected = timing.schedule(tokens, banks, rr=rr)
        for _ in range(2):
            got = cycles.gather_schedule(tokens, banks, rr=rr)
            assert (got.cycles, got.stalls_per_lane, got.busy_per_lane, got.rr) == \
                (expected.cycles, expected.stalls_per_lane, expected.busy_per_lane, expected.rr)
    info = cycles.cache_info()
    assert info["hits"] == 30 and info["misses"] == 30


def test_progress_is_reported_per_band_and_per_tile():
    rng = np.random.default_rng(6)
    a = scipy.sparse.random(600, 3000, density=0.01, format="csr", random_state=rng,
                            data_rvs=lambda k: rng.integers(1, 9, k)).astype(np.int64)
    config = AcceleratorConfig(pes=4, row_depth=64)
    seen = []
    program = compile_kernel(a, config, progress=lambda done, total: seen.append((done, total)))
    bands = len(program.report["bands"])
    assert bands > 1 and seen == [(k, bands) for k in range(1, bands + 1)]
    ran = []
    result = run_model(program, np.ones(3000, dtype=np.int64),
                         progress=lambda done, total: ran.append((done, total)))
    tiles = len(program.tiles)
    assert ran == [(k, tiles) for k in range(1, tiles + 1)]
    assert np.array_equal(result.y_raw, a @ np.ones(3000, dtype=np.int64))
