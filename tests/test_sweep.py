"""``zeroskip sweep``: tiny grids of model runs on a local Dask cluster."""

import json
import shutil

import pytest

from zeroskip import AcceleratorConfig
from zeroskip.app.cli import main

sweep = pytest.importorskip("zeroskip.app.sweep")
pytest.importorskip("dask.distributed")

SMALL = AcceleratorConfig(pes=2, x_depth=128, nz_depth=512, row_depth=64, imem_depth=16)


def run_json(tmp_path, matrix, config):
    """What ``zeroskip run`` reports for one point, run here directly."""
    config_path = tmp_path / f"{config.fingerprint}.json"
    config_path.write_text(config.to_json())
    out = tmp_path / f"{matrix.stem}-{config.fingerprint}.run.json"
    assert main(["run", str(matrix), "--config", str(config_path), "--json", str(out)]) == 0
    return json.loads(out.read_text())


def test_sweep_on_an_existing_cluster_from_the_command_line(tmp_path, examples_data, capsys):
    from dask.distributed import LocalCluster
    collection = tmp_path / "collection"
    collection.mkdir()
    shutil.copy(examples_data / "west0067.mtx", collection)
    config = tmp_path / "small.json"
    config.write_text(SMALL.to_json())
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        status = main(["sweep", "--matrices", str(collection), "--config", str(config),
                       "--pes", "1,2", "--scheduler", cluster.scheduler_address,
                       "-o", str(tmp_path / "out")])
    assert status == 0
    out = capsys.readouterr().out
    assert out.startswith(f"sweeping 2 points on the Dask cluster at {cluster.scheduler_address}")
    summary = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert (tmp_path / "out" / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = summary["results"]
    assert [(r["kind"], r["pes"]) for r in results] == [("run", 1), ("run", 2)]
    capsys.readouterr()
    for result, pes in zip(results, (1, 2)):
        expected = run_json(tmp_path, collection / "west0067.mtx", SMALL.replace(pes=pes))
        assert result["exit_status"] == 0 and result["matches_reference"] is True
        for key in ("nnz", "cycles", "utilization", "gather_stalls"):
            assert result[key] == expected[key], key
        assert result["nonzeros_per_cycle"] == expected["nnz"] / expected["cycles"]
    assert summary["pareto"]["lanes"] == [SMALL.replace(pes=1).fingerprint,
                                          SMALL.replace(pes=2).fingerprint]


def test_sweep_on_a_local_cluster_reports_a_bad_matrix(tmp_path, examples_data):
    bad = tmp_path / "bad.mtx"
    bad.write_text("%%MatrixMarket matrix coordinate real general\n2 2 1\n3 1 1.0\n")
    points = sweep.run_grid([SMALL], [examples_data / "west0067.mtx", bad])
    seen = []
    results = sweep.run_sweep(points, workers=1, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(1, 2), (2, 2)]
    assert results[0]["matches_reference"] is True and results[0]["exit_status"] == 0
    assert results[1]["exit_status"] == 2
    assert results[1]["failure"] == f"{bad}:3: entry (3, 1) is outside the 2 x 2 matrix"


def test_summary_joins_builds_and_runs_and_finds_the_pareto_front():
    def build(name, pes, lut, bram, fmax, clock=50.0):
        return {"kind": "build", "name": name, "pes": pes, "clock_mhz": clock,
                "fmax_mhz": fmax, "resources": {"LUT": [lut, 24000], "BRAM": [bram, 56]}}
    results = [
        build("a", 2, 5000, 10, 60.0),
        build("b", 4, 13000, 10, 40.0),     # misses 50 MHz: counted at its Fmax
        build("c", 4, 12000, 20, 55.0),
        build("d", 8, 30000, 8, 70.0),      # never measured by a run: peak utilization
        {"kind": "build", "name": "e", "pes": 8, "clock_mhz": 50.0, "failure": "no fit"},
        {"kind": "run", "pes": 2, "utilization": 0.5, "nonzeros_per_cycle": 1.0,
         "fingerprint": "f2"},
        {"kind": "run", "pes": 2, "utilization": 0.7, "nonzeros_per_cycle": 1.4,
         "fingerprint": "f2"},
        {"kind": "run", "pes": 4, "utilization": 0.5, "nonzeros_per_cycle": 2.0,
         "fingerprint": "f4"},
    ]
    summary = sweep.summarize(results)
    throughput = {r["name"]: r["throughput_nnz_per_s"] for r in summary["results"]
                  if "throughput_nnz_per_s" in r}
    assert throughput == pytest.approx({"a": 2 * 50e6 * 0.6, "b": 4 * 40e6 * 0.5,
                                        "c": 4 * 50e6 * 0.5, "d": 8 * 50e6 * 1.0})
    assert summary["results"][3]["utilization_source"] == "peak (no run at this lane count)"
    assert summary["pareto"]["LUT"] == ["a", "c", "d"]
    assert summary["pareto"]["BRAM"] == ["d"]
    assert [c["nonzeros_per_cycle"] for c in summary["configurations"]] == pytest.approx(
        [(1.0 * 1.4) ** 0.5, 2.0])


def test_sweep_input_errors(tmp_path, capsys):
    assert main(["sweep"]) == 2
    assert capsys.readouterr().err == ("zeroskip: error: sweep needs --boards (bitstream "
                                       "builds), --matrices (runs) or both\n")
    assert main(["sweep", "--matrices", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (f"zeroskip: error: {tmp_path}: no matrix files (.mtx, "
                                       f".npz) in this directory\n")
    assert main(["sweep", "--boards", "arty"]) == 2
    assert capsys.readouterr().err.startswith("zeroskip: error: unknown board 'arty'")
