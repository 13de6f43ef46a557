"""Markers of the board tests."""


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "fpga: builds a bitstream with YoWASP Yosys/nextpnr (about a minute each); "
                   "deselect with -m 'not fpga'")

