"""The record of routed builds and the clock lookup every time figure uses."""

import dataclasses
import json
from pathlib import Path

import pytest

from zeroskip import AcceleratorConfig
from zeroskip.boards import record
from zeroskip.boards.build import BuildReport
from zeroskip.boards.targets import get_board

CONFIG = AcceleratorConfig(pes=2, x_depth=64, nz_depth=64, row_depth=16, imem_depth=8)


def fake_report(*, clock_mhz=50.0, fmax_mhz=57.3, config=CONFIG, board="ulx3s-85f"):
    """A BuildReport as a finished place and route makes it (no tools run)."""
    return BuildReport(board=board, device="LFE5U-85F", pes=config.pes, config=config.to_dict(),
                       target_mhz=clock_mhz, clock_mhz=clock_mhz, fmax_mhz=fmax_mhz,
                       resources={"LUT": (4000, 83640), "BRAM": (12, 208)}, critical_path=[],
                       bitstream=Path("top.bit"), build_dir=Path("."), seconds=61.0)


def test_append_and_lookup_round_trip(tmp_path):
    path = tmp_path / "routed.json"
    entry = record.append(fake_report(), path, date="2026-12-07T10:00:00Z",
                          tools={"yosys": "0.1", "nextpnr-ecp5": "0.2"})
    data = json.loads(path.read_text())
    assert data["builds"] == [entry]
    assert entry["fingerprint"] == CONFIG.fingerprint and entry["config"] == CONFIG.to_dict()
    assert entry["resources"] == {"LUT": [4000, 83640], "BRAM": [12, 208]}
    assert entry["gateware"] == record.gateware_digest() and entry["timing_met"] is True
    clock = record.clock_for("ulx3s", CONFIG, path)
    assert clock.routed and clock.mhz == 50.0 and clock.entry == entry
    assert clock.source == (f"routed build ulx3s-85f {CONFIG.fingerprint} of 2026-12-07T10:00:00Z "
                            f"in the build record (Fmax 57.3 MHz, met the built 50 MHz clock)")
    # A missed clock: the lookup takes the Fmax, and the newest entry wins.
    record.append(fake_report(clock_mhz=100.0, fmax_mhz=59.9), path, date="2026-12-08T10:00:00Z")
    clock = record.clock_for("ulx3s-85f", CONFIG, path)
    assert clock.mhz == 59.9 and "it missed the built 100 MHz clock" in clock.source
    assert len(record.entries(path)) == 2


def test_no_entry_is_an_unrouted_estimate(tmp_path):
    path = tmp_path / "routed.json"
    record.append(fake_report(), path)
    other = CONFIG.replace(pes=4)
    clock = record.clock_for("ulx3s-85f", other, path)
    assert not clock.routed and clock.mhz == get_board("ulx3s-85f").default_clock_mhz
    assert clock.source == (f"unrouted estimate: the ulx3s-85f's default build clock 50 MHz "
                            f"(no routed build of configuration {other.fingerprint} in the "
                            f"build record)")
    # Same configuration on another board: not this board's measurement.
    assert not record.clock_for("ulx3s-45f", CONFIG, path).routed


def test_entry_from_other_gateware_is_not_used(tmp_path):
    path = tmp_path / "routed.json"
    record.append(fake_report(), path, gateware="000000000000")
    clock = record.clock_for("ulx3s-85f", CONFIG, path)
    assert not clock.routed
    assert clock.source.endswith("(the record's routed builds of this configuration were made "
                                 "of another design)")


def test_entry_of_other_sources_but_the_same_design_is_used(tmp_path, monkeypatch):
    """The design digest, not the sources' text, decides (a refactor keeps the measurement)."""
    from zeroskip.boards.build import design_digest
    monkeypatch.setattr(record, "DESIGN_CACHE", tmp_path / "designs.json")
    path = tmp_path / "routed.json"
    design = design_digest("ulx3s-85f", CONFIG, 50.0)
    assert design == design_digest("ulx3s-85f", CONFIG, 50.0)
    assert design != design_digest("ulx3s-85f", CONFIG, 60.0)
    assert design != design_digest("ulx3s-85f", CONFIG.replace(imem_depth=16), 50.0)
    report = dataclasses.replace(fake_report(), design=design)
    record.append(report, path, gateware="000000000000")
    clock = record.clock_for("ulx3s-85f", CONFIG, path)
    assert clock.routed and clock.mhz == 50.0
    # Kept by sources: the next lookup does not elaborate again.
    (key,) = json.loads((tmp_path / "designs.json").read_text())
    assert key == f"{record.gateware_digest()} ulx3s-85f {CONFIG.fingerprint} 50"
    monkeypatch.setattr("zeroskip.boards.build.design_digest", None)
    assert record.clock_for("ulx3s-85f", CONFIG, path).routed
    other = tmp_path / "other.json"
    record.append(dataclasses.replace(fake_report(), design="ffffffffffff"), other,
                  gateware="000000000000")
    assert not record.clock_for("ulx3s-85f", CONFIG, other).routed


def test_malformed_record_gives_one_line(tmp_path):
    path = tmp_path / "routed.json"
    path.write_text('{"builds": [{"board": "x"}]}')
    with pytest.raises(record.RecordError, match=rf"^{path}: build 1: missing fingerprint, "):
        record.clock_for("ulx3s", CONFIG, path)
    path.write_text("{\n oops")
    with pytest.raises(record.RecordError, match=rf"^{path}: line 2: not valid JSON"):
        record.entries(path)


def test_shipped_record_is_valid_and_has_no_stale_entries():
    """Every shipped entry matches the installed gateware (else it would be misleading)."""
    assert record.RECORD_FILE.name == "routed.json" and record.RECORD_FILE.is_file()
    for entry in record.entries(record.RECORD_FILE):
        assert record.is_current(entry), entry["date"]


def test_build_appends_to_the_record(tmp_path, monkeypatch):
    """build() records the report its place and route made, whether timing was met or not."""
    from zeroskip.boards import build as build_module
    report = fake_report(clock_mhz=50.0, fmax_mhz=41.0)
    monkeypatch.setattr(build_module, "_run", lambda *args: report)
    monkeypatch.setattr(build_module, "_tool_env", lambda family: {})
    path = tmp_path / "mine.json"
    with pytest.raises(build_module.TimingError):
        build_module.build("ulx3s-85f", config=CONFIG, build_dir=tmp_path / "b", record=path)
    (entry,) = record.entries(path)
    assert entry["fmax_mhz"] == 41.0 and entry["timing_met"] is False
    # The default record follows ZEROSKIP_BUILD_RECORD (the tests' private one).
    build_module.build("ulx3s-85f", config=CONFIG, build_dir=tmp_path / "b",
                       check_timing=False)
    assert record.record_path() == tmp_path / "routed.json"
    assert len(record.entries()) == 1
    build_module.build("ulx3s-85f", config=CONFIG, build_dir=tmp_path / "b",
                       check_timing=False, record=False)
    assert len(record.entries()) == 1


def test_the_design_digest_ignores_source_locations_and_scripts():
    from types import SimpleNamespace

    from zeroskip.boards.build import _plan_digest
    netlist = 'attribute \\src "{}/hdl/top.py:{}"\nmodule \\top\n  wire width 1 \\clk\nend\n'
    plan = SimpleNamespace(files={"top.il": netlist.format("/a", 10), "top.lpf": "LOCATE x;",
                                  "build_top.sh": "nextpnr --seed 1"})
    moved = SimpleNamespace(files={"top.il": netlist.format("/b/c", 99), "top.lpf": "LOCATE x;",
                                   "build_top.sh": "nextpnr --seed 2"})
    assert _plan_digest(plan) == _plan_digest(moved)
    changed = SimpleNamespace(files={**plan.files, "top.il": plan.files["top.il"] + "\n"
                                     + "module \\more\nend\n"})
    assert _plan_digest(changed) != _plan_digest(plan)
    pins = SimpleNamespace(files={**plan.files, "top.lpf": "LOCATE y;"})
    assert _plan_digest(pins) != _plan_digest(plan)


def test_build_tries_the_next_seed_when_placement_fails(tmp_path, monkeypatch, capsys):
    """A full device: nextpnr may find no legal placement with one seed and one with the next."""
    from zeroskip.boards import build as build_module
    seeds = []

    def fake_run(info, config, top, target_mhz, build_dir, env, seed, verbose, started):
        seeds.append(seed)
        if seed < limit:
            raise build_module.PlacementError("the ulx3s-85f build failed: ERROR: Unable to "
                                              "find legal placement for all cells")
        return dataclasses.replace(fake_report(), seed=seed)

    monkeypatch.setattr(build_module, "_run", fake_run)
    monkeypatch.setattr(build_module, "_tool_env", lambda family: {})
    limit = 3
    report = build_module.build("ulx3s-85f", config=CONFIG, build_dir=tmp_path / "b",
                                record=tmp_path / "r.json")
    assert seeds == [1, 2, 3] and report.seed == 3
    assert record.entries(tmp_path / "r.json")[0]["seed"] == 3
    assert capsys.readouterr().err == (
        "ulx3s-85f: nextpnr found no legal placement with seed 1; trying seed 2\n"
        "ulx3s-85f: nextpnr found no legal placement with seed 2; trying seed 3\n")
    seeds.clear()
    limit = 99
    with pytest.raises(build_module.PlacementError):
        build_module.build("ulx3s-85f", config=CONFIG, build_dir=tmp_path / "b", seed=5,
                           record=tmp_path / "r.json")
    assert seeds == [5, 6, 7] and len(record.entries(tmp_path / "r.json")) == 1
