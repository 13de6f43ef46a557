"""Configuration options of the CLI: messages name the option, files combine with options."""

import json

import pytest

from zeroskip import AcceleratorConfig
from zeroskip.app.cli import build_parser, main
from zeroskip.app.commands.common import config_from_args as _config_from_args
from zeroskip.core.errors import ConfigError


def config_of(*argv):
    return _config_from_args(build_parser().parse_args(["compile", "a.mtx", *map(str, argv)]))


@pytest.mark.parametrize("argv, message", [
    (["--pes", "0"], "--pes must be between 1 and 64, not 0"),
    (["--value-width", "12"], "--value-width must be 8 or 16, not 12"),
    (["--acc-width", "24"], "--acc-width must be 32 with 16-bit values, not 24"),
    (["--value-width", "8", "--acc-width", "12"],
     "--acc-width must be between 16 and 32 with 8-bit values, not 12"),
    (["--x-banks", "3"], "--x-banks must be a power of two, not 3"),
    (["--x-depth", "8"], "--x-depth must be between 16 and 16384, not 8"),
    (["--formats", "csr,ell"],
     "--formats: unknown format 'ell'; known: csr, coo, bitmap, nm, dense, csc"),
])
def test_errors_name_the_option(capsys, argv, message):
    assert main(["compile", "a.mtx", *argv]) == 2
    assert capsys.readouterr().err == f"zeroskip: error: {message}\n"


def test_a_file_error_names_the_file_and_the_field(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"pes": 4, "acc_width": 20}))
    with pytest.raises(ConfigError) as info:
        config_of("--config", path)
    assert str(info.value) == f"{path}: acc_width must be 32 with 16-bit values, not 20"
    # Valid together with an option: the option applies before validation.
    assert config_of("--config", path, "--value-width", "8").acc_width == 20


def test_config_file_and_pes_give_the_same_hardware_as_pes(tmp_path):
    path = tmp_path / "c.json"
    AcceleratorConfig(cluster_lanes=8).save(path)      # x_banks written as 16 (8 lanes share x)
    assert json.loads(path.read_text())["x_banks"] == 16
    assert (config_of("--config", path, "--cluster-lanes", "4")
            == config_of("--cluster-lanes", "4"))
    assert config_of("--cluster-lanes", "4").x_banks == 8
    assert config_of("--config", path, "--pes", "4", "--cluster-lanes", "1").x_banks == 1
    # An x_banks that is not the derived one is kept.
    AcceleratorConfig(x_banks=4).save(path)
    assert config_of("--config", path, "--pes", "2").x_banks == 4
    assert AcceleratorConfig(cluster_lanes=8).replace(cluster_lanes=4) == \
        AcceleratorConfig(cluster_lanes=4)
    assert AcceleratorConfig(pes=4).replace(x_banks=2).x_banks == 2


def test_no_range_reads_between_a_value_and_itself():
    for width in (8, 16):
        for acc in range(1, 40):
            try:
                AcceleratorConfig(value_width=width, acc_width=acc)
            except ConfigError as error:
                assert "between 32 and 32" not in str(error)
