"""CPU energy's basis: the RAPL reader on a fake powercap tree, the CPU table's lookup."""

import pytest

from zeroskip.app import cpu_energy


def _zone(root, name, energy, max_range, label="package-0"):
    zone = root / name
    zone.mkdir()
    (zone / "energy_uj").write_text(f"{energy}\n")
    (zone / "max_energy_range_uj").write_text(f"{max_range}\n")
    (zone / "name").write_text(f"{label}\n")
    return zone


def test_rapl_reads_packages_only_and_handles_wrap_around(tmp_path):
    zero = _zone(tmp_path, "intel-rapl:0", 1_000_000, 262_143_328_850)
    one = _zone(tmp_path, "intel-rapl:1", 262_143_000_000, 262_143_328_850, "package-1")
    _zone(tmp_path, "intel-rapl:0:0", 5, 100, "core")          # a sub-zone: not counted
    (tmp_path / "intel-rapl-mmio:0").mkdir()                   # no counters: ignored
    assert [name for name, _ in cpu_energy.rapl_zones(tmp_path)] == ["package-0", "package-1"]
    with cpu_energy.measure(tmp_path) as reading:
        (zero / "energy_uj").write_text("3500000\n")            # +2.5 J
        (one / "energy_uj").write_text("671150\n")              # wrapped: +1.0 J
    result = reading.result
    assert result["joules"] == pytest.approx(2.5 + 1.0)
    assert result["zones"] == ["package-0", "package-1"]
    assert result["watts"] == pytest.approx(result["joules"] / result["seconds"])


def test_counter_delta_wraps_at_the_range():
    assert cpu_energy.counter_delta(10, 25, 100) == 15
    assert cpu_energy.counter_delta(90, 5, 100) == 15


def test_unreadable_rapl_gives_no_reading(tmp_path):
    with cpu_energy.measure(tmp_path / "missing") as reading:
        pass
    assert reading.result is None
    zone = _zone(tmp_path, "intel-rapl:0", 1, 100)
    (zone / "energy_uj").write_text("not a number\n")
    assert cpu_energy.rapl_zones(tmp_path) == []
    with cpu_energy.measure(tmp_path) as reading:
        pass
    assert reading.result is None


def test_cpu_model_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\n"
                    "model name\t: AMD EPYC 7763 64-Core Processor\nflags\t: fpu\n\n"
                    "processor\t: 1\nmodel name\t: AMD EPYC 7763 64-Core Processor\n")
    assert cpu_energy.cpu_model(info) == "AMD EPYC 7763 64-Core Processor"
    assert cpu_energy.cpu_model(tmp_path / "none") is None


@pytest.mark.parametrize("model, label, watts", [
    ("AMD EPYC 7763 64-Core Processor", "AMD EPYC 7763", 280 / 64),
    ("Intel(R) Xeon(R) Platinum 8380 CPU @ 2.30GHz", "Intel Xeon Platinum 8380", 270 / 40),
    ("12th Gen Intel(R) Core(TM) i7-12700K", "Intel Core i7-12700K", 125 / 12),
    ("AMD Ryzen 9 5950X 16-Core Processor", "AMD Ryzen 9 5950X", 105 / 16),
])
def test_table_picks_the_cpu(model, label, watts):
    power = cpu_energy.power_basis(None, model=model)
    assert power["source"] == "table" and power["watts"] == pytest.approx(watts)
    assert power["basis"].startswith(f"{label}: TDP ")
    assert "estimate" in power["basis"] and "specifications" in power["basis"]


@pytest.mark.parametrize("model", ["AMD EPYC", "AMD EPYC 7764 64-Core Processor", None])
def test_unknown_cpu_is_a_generic_estimate(model):
    power = cpu_energy.table_power(model)
    assert power["source"] == "generic" and power["estimate"]
    assert power["watts"] == cpu_energy.GENERIC_WATTS_PER_CORE
    assert power["basis"].startswith("generic estimate for a CPU not in")
    assert (model or "model unknown") in power["basis"]


def test_rapl_reading_is_the_basis_when_there_is_one():
    rapl = {"joules": 3.0, "seconds": 0.5, "watts": 6.0, "zones": ["package-0"]}
    power = cpu_energy.power_basis(rapl, model="AMD EPYC 7763")
    assert power == {"watts": 6.0, "estimate": False, "source": "rapl",
                     "basis": "RAPL package energy counters (package-0) read around the timed "
                              "loop: 6.00 W over 0.500 s (whole package: all cores and uncore)"}
    assert cpu_energy.energy_nj(2e-6, 6.0) == pytest.approx(12000.0)
