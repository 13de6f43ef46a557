"""'compile' prints the lane balance and writes it with --json."""

import json

import numpy as np

from zeroskip.app.cli import main
from zeroskip.core import timing


def _compile(capsys, tmp_path, *extra):
    matrix = tmp_path / "a.npy"
    np.save(matrix, np.array([[1, 2, 3, 0], [0, 0, 0, 4]]))
    code = main([str(v) for v in ("compile", matrix, "-o", tmp_path / "a.program.npz",
                                  "--pes", "2", "--split-rows", "no", *extra)])
    out, err = capsys.readouterr()
    return code, out, err


def test_compile_prints_the_lane_balance(capsys, tmp_path):
    code, out, err = _compile(capsys, tmp_path)
    assert code == 0, err
    assert ("lane balance 1.50 (busiest lane's work / mean, 1.00 = even); least even tile 0: "
            "1.50\n") in out


def test_compile_json_holds_the_plan_and_the_lane_balance(capsys, tmp_path):
    code, out, err = _compile(capsys, tmp_path, "--json", tmp_path / "plan.json")
    assert code == 0, err
    assert f"wrote {tmp_path / 'plan.json'}\n" in out
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["lane_balance"] == {
        "lane_work": [3, 1], "balance": 1.5,
        "tiles": [{"tile": 0, "lane_work": [3, 1], "balance": 1.5,
                   "spmvs": [{"format": "csr", "count": 1, "lane_work": [3, 1],
                              "balance": 1.5}]}]}
    assert (plan["shape"], plan["nnz"], plan["kernel"], plan["format"], plan["tiles"]) == \
        ([2, 4], 4, "spmv", "csr", 1)
    # The busiest lane streams 3 tokens, dense mode 4 per lane; then HALT.
    assert (plan["predicted_cycles"], plan["dense_cycles"]) == \
        (timing.SPMV_OVERHEAD + 3 + timing.INSN_OVERHEAD,
         timing.SPMV_OVERHEAD + 4 + timing.INSN_OVERHEAD)
    assert plan["bands"][0]["winner"] == "csr"
    assert plan["balance"]["long_rows"] == 1
    assert plan["program"] == str(tmp_path / "a.program.npz")
