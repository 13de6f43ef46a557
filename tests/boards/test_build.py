"""Board builds: the registry, bad input, PLL settings, and real bitstreams.

The ``fpga`` tests run YoWASP Yosys and nextpnr on small configurations
(about a minute each) and check that the reports parse and are plausible.
"""

import gc
import json
from pathlib import Path

import pytest

from zeroskip import AcceleratorConfig
from zeroskip.boards.build import (
    BOARDS,
    BoardError,
    DoesNotFitError,
    ProgramError,
    TimingError,
    UnknownBoardError,
    build,
    list_boards,
    loader_problem,
    program,
)
from zeroskip.boards.clocking import ecp5_pll, ice40_pll
from zeroskip.boards.targets import get_board
from zeroskip.boards.tops import BoardTop

# Tops built only to check their settings are never elaborated.
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "build" / "test-boards"
SMALL = AcceleratorConfig(pes=1, x_depth=64, nz_depth=128, row_depth=16, imem_depth=8)
#: SMALL as the iCE40UP5K holds it (without the reduce network and the move engine,
#: as the iCEBreaker's default).
SMALL_ICE40 = SMALL.replace(reduce=False, move=False)


def test_registry():
    names = [row[0] for row in list_boards()]
    assert names == ["icebreaker", "ulx3s-12f", "ulx3s-25f", "ulx3s-45f", "ulx3s-85f",
                     "orangecrab"]
    assert get_board("ulx3s") is BOARDS["ulx3s-85f"]
    for board in BOARDS.values():
        top = BoardTop(board)  # every default elaborates its clocking and UART settings
        assert abs(top.clock.frequency / 1e6 - board.default_clock_mhz) < 0.01 * \
            board.default_clock_mhz
    del top
    gc.collect()


def test_unknown_board():
    with pytest.raises(UnknownBoardError, match=r"^unknown board 'arty'; known boards: "
                                                r"icebreaker, ulx3s-12f, ulx3s-25f, ulx3s-45f, "
                                                r"ulx3s-85f, orangecrab, ulx3s$"):
        build("arty")


def test_too_many_pes_is_rejected_before_synthesis():
    config = AcceleratorConfig(pes=64, x_depth=256, nz_depth=256, row_depth=64)
    with pytest.raises(DoesNotFitError, match=r"^64 PEs do not fit the iCEBreaker \(iCE40UP5K\): "
                                              r"each PE needs a DSP multiplier and the iCE40UP5K "
                                              r"has 8; use at most 8 PEs"):
        build("icebreaker", config=config)
    gc.collect()


def test_impossible_clock_and_baud_rate():
    with pytest.raises(BoardError, match=r"^icebreaker: The iCE40 PLL cannot make 300 MHz from "
                                         r"12 MHz; it makes 16 to 275 MHz$"):
        build("icebreaker", config=SMALL, clock_mhz=300)
    with pytest.raises(BoardError, match=r"^ulx3s-85f: Baud rate 2000000 cannot be made from a "
                                         r"25 MHz clock"):
        build("ulx3s", config=SMALL, clock_mhz=25, baudrate=2_000_000)
    gc.collect()


@pytest.mark.parametrize(("fin", "fout", "params"), [
    # Values from icepll and ecppll.
    (12e6, 42e6, {"DIVR": 0, "DIVF": 55, "DIVQ": 4, "FILTER_RANGE": 1}),
])
def test_ice40_pll(fin, fout, params):
    settings = ice40_pll(fin, fout)
    assert {k: settings.params[k] for k in params} == params
    assert settings.output_hz == fout


@pytest.mark.parametrize(("fin", "fout", "params"), [
    (25e6, 100e6, {"CLKI_DIV": 1, "CLKFB_DIV": 4, "CLKOP_DIV": 6, "CLKOP_CPHASE": 2}),
    (25e6, 85e6, {"CLKI_DIV": 5, "CLKFB_DIV": 17, "CLKOP_DIV": 7, "CLKOP_CPHASE": 3}),
    (25e6, 40e6, {"CLKI_DIV": 5, "CLKFB_DIV": 8, "CLKOP_DIV": 15, "CLKOP_CPHASE": 7}),
    (48e6, 60e6, {"CLKI_DIV": 4, "CLKFB_DIV": 5, "CLKOP_DIV": 10, "CLKOP_CPHASE": 4}),
])
def test_ecp5_pll(fin, fout, params):
    settings = ecp5_pll(fin, fout)
    assert {k: settings.params[k] for k in params} == params
    assert settings.output_hz == fout
    assert 400e6 <= settings.vco_hz <= 800e6


def test_program_errors(tmp_path):
    with pytest.raises(ProgramError, match=r"^zeroskip does not program the OrangeCrab r0.2 "
                                           r"\(ECP5 LFE5U-25F\): put it in its DFU bootloader"):
        program("orangecrab", tmp_path / "top.bit")
    with pytest.raises(ProgramError, match=r"^no bitstream at .*missing.bin; build it first "
                                           r"\(zeroskip build --board icebreaker\)$"):
        program("icebreaker", tmp_path / "missing.bin")


FAKE_LOADER = """#!/bin/sh
echo "$0: error while loading shared libraries: {library}: cannot open shared object file: \
No such file or directory" >&2
exit 127
"""


@pytest.mark.parametrize(("library", "packages"), [
    ("libusb-1.0.so.0", "(package libusb-1.0-0): run 'make setup' as root, or: sudo apt-get "
                        "install -y libusb-1.0-0 libftdi1-2"),
    ("libftdi1.so.2", "(package libftdi1-2): run 'make setup' as root, or: sudo apt-get "
                      "install -y libftdi1-2 libusb-1.0-0"),
    ("libhidapi-hidraw.so.0", ": run 'make setup' as root, or: sudo apt-get install -y "
                              "libusb-1.0-0 libftdi1-2"),
])
def test_program_with_a_missing_usb_library(tmp_path, monkeypatch, library, packages):
    # A loader that cannot load a library, as on a machine without libusb/libftdi.
    loader = tmp_path / "openFPGALoader"
    loader.write_text(FAKE_LOADER.format(library=library))
    loader.chmod(0o755)
    monkeypatch.setenv("OPENFPGALOADER", str(loader))
    bitstream = tmp_path / "top.bit"
    bitstream.write_bytes(b"\xff" * 64)
    message = f"openFPGALoader cannot load the system library {library} {packages}".replace(
        f"{library} :", f"{library}:")
    with pytest.raises(ProgramError) as info:
        program("ulx3s", bitstream)
    assert str(info.value) == message
    assert loader_problem() == message


def test_program_without_a_board(tmp_path):
    problem = loader_problem()
    if problem is not None:
        pytest.skip(problem)
    bitstream = tmp_path / "top.bit"
    bitstream.write_bytes(b"\xff" * 64)
    try:
        program("ulx3s", bitstream)
    except ProgramError as error:
        assert str(error) == ("no ULX3S (ECP5 LFE5U-85F) found: is it plugged in over USB, "
                              "and may this user access it (udev rules)?")
    else:  # pragma: no cover - a board is connected
        pytest.skip("a ULX3S is connected")


def test_build_help_shows_the_board_defaults(capsys):
    from zeroskip.app.cli import main
    with pytest.raises(SystemExit):
        main(["build", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--pes N processing elements (lanes), 1 to 64 (default: the board's, below)" in text
    assert "(default 4)" not in text and "(default 16)" not in text
    icebreaker = BOARDS["icebreaker"]
    row = (f"icebreaker {icebreaker.default_clock_mhz:g} MHz {icebreaker.config.pes} "
           f"{icebreaker.config.value_width} {icebreaker.config.acc_width} "
           f"{icebreaker.config.x_depth} {icebreaker.config.x_banks}")
    assert row in text


def test_program_command_reports_a_missing_library(tmp_path, monkeypatch, capsys):
    from zeroskip.app.cli import main
    loader = tmp_path / "openFPGALoader"
    loader.write_text(FAKE_LOADER.format(library="libusb-1.0.so.0"))
    loader.chmod(0o755)
    monkeypatch.setenv("OPENFPGALOADER", str(loader))
    bitstream = tmp_path / "top.bin"
    bitstream.write_bytes(b"\xff" * 64)
    assert main(["program", "--board", "icebreaker", "--bitstream", str(bitstream)]) == 2
    assert capsys.readouterr().err == (
        "zeroskip: error: openFPGALoader cannot load the system library libusb-1.0.so.0 "
        "(package libusb-1.0-0): run 'make setup' as root, or: sudo apt-get install -y "
        "libusb-1.0-0 libftdi1-2\n")


def check_report(report, board, pes):
    assert report.board == board and report.pes == pes
    assert report.bitstream.is_file() and report.bitstream.stat().st_size > 10_000
    used, available = report.resources["LUT"]
    assert 1000 < used < available
    assert report.resources["DSP"][0] == pes
    assert report.resources["BRAM"][0] > 0
    assert 1 < report.fmax_mhz < 500
    assert report.critical_path and report.critical_path_text().startswith("critical path: ")
    json.dumps(report.to_dict())


@pytest.mark.fpga
def test_icebreaker_bitstream_and_missed_clock():
    # 150 MHz is far beyond the iCE40: the build completes and reports why.
    with pytest.raises(TimingError) as info:
        build("icebreaker", config=SMALL_ICE40, clock_mhz=150, build_dir=BUILD / "icebreaker")
    report = info.value.report
    assert str(info.value).startswith(f"icebreaker: 1 PEs reach {report.fmax_mhz:.1f} MHz, "
                                      f"below the requested 150.0 MHz clock")
    assert "critical path:" in str(info.value)
    check_report(report, "icebreaker", 1)
    assert report.resources["PLL"] == (1, 1)
    assert not report.timing_met


@pytest.mark.fpga
def test_icebreaker_too_large_for_nextpnr():
    # Passes the DSP check but not placement: the error names the resources.
    config = AcceleratorConfig(pes=6, value_width=8, acc_width=16, x_depth=64, nz_depth=128,
                               row_depth=16, imem_depth=8)
    with pytest.raises(DoesNotFitError, match=r"^the design does not fit the iCEBreaker "
                                              r"\(iCE40UP5K\) with 6 PEs: .*ICESTORM_LC \d+/5280"):
        build("icebreaker", config=config, build_dir=BUILD / "icebreaker-large")


@pytest.mark.fpga
def test_ulx3s_bitstream():
    report = build("ulx3s", config=SMALL.replace(pes=2), clock_mhz=50,
                   build_dir=BUILD / "ulx3s")
    check_report(report, "ulx3s-85f", 2)
    assert report.device == "LFE5U-85F"
    assert report.timing_met and report.clock_mhz == 50
    assert report.bitstream.suffix == ".bit"


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize(("board", "clock_mhz", "constraints"), [
    ("icebreaker", 42, ["set_io uart_0__rx__io 6", "set_io uart_0__tx__io 9",
                        "set_frequency clock.clk 42.0"]),
    ("icebreaker", 12, ["set_frequency clk12_0__io 12.0"]),
    ("ulx3s", 100, ['LOCATE COMP "uart_0__rx__io" SITE "M1"',
                    'FREQUENCY NET "clock.clk" 100000000']),
    ("orangecrab", 48, ['LOCATE COMP "uart_0__tx__io" SITE "M18"',
                        'FREQUENCY PORT "clk_0__io" 48000000']),
])
def test_tops_elaborate(board, clock_mhz, constraints):
    info = get_board(board)
    top = BoardTop(info, config=SMALL, clock_mhz=clock_mhz)
    plan = info.make_platform().prepare(top, name="top")
    text = plan.files["top.pcf" if info.family == "ice40" else "top.lpf"]
    for line in constraints:
        assert line in text
    rtlil = plan.files["top.il"]
    assert ("SB_PLL40_PAD" in rtlil or "EHXPLLL" in rtlil) == (top.clock.pll is not None)
