"""Markers of the board tests."""


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "fpga: builds a bitstream with YoWASP Yosys/nextpnr (about a minute each); "
                   "deselect with -m 'not fpga'")


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _private_build_record(tmp_path, monkeypatch):
    """Builds made by the tests append to a record of their own, not the shipped one."""
    monkeypatch.setenv("ZEROSKIP_BUILD_RECORD", str(tmp_path / "routed.json"))
