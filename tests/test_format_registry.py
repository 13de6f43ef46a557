"""The format registry: every storage format is specified once and every list of
formats derives from it; no production module spells a format name itself."""

import ast
import re
from pathlib import Path

import pytest

from zeroskip.app.api import FORMATS
from zeroskip.core import formatspec
from zeroskip.core.config import AcceleratorConfig
from zeroskip.core.errors import CompileError, ConfigError
from zeroskip.core.isa import Format
from zeroskip.firmware import formats
from zeroskip.firmware.compiler import FORMAT_CHOICES
from zeroskip.firmware.formats.registry import FormatCodec, register
from zeroskip.hdl import formats as hdl_formats

ROOT = Path(__file__).resolve().parent.parent
#: Where production code lives (the package root and its sub-packages).
PRODUCTION = ("zeroskip", "core", "hdl", "firmware", "sim", "boards", "app")
#: The registry: the specs, and each format's own module (which names its spec once).
REGISTRY = {"core/formatspec.py"} | {f"firmware/formats/{spec.name}.py"
                                        for spec in formatspec.SPECS}
#: String constants equal to a format name that are not format names, each with
#: its reason. Add one only with the reason; everything else names a format
#: through the registry (``formatspec.NM.name``, ``formatspec.NAMES``).
ALLOWED = {
    # The header of the "dense" cycles column (dense mode's cycles) of the
    # network report table, not a format.
    ("app/nn/cli.py", "dense"),
}


def _docstrings(tree):
    """The string constants that are docstrings (and bare string statements)."""
    return {id(node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}


def _keys(tree):
    """String constants used as keys: dict keys, subscripts and ``.get``/``.pop``
    keys (``report["nm"]`` is the N:M setting, not the format)."""
    keys = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            keys |= {id(key) for key in node.keys if key is not None}
        elif isinstance(node, ast.Subscript):
            keys.add(id(node.slice))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr in ("get", "pop", "setdefault") and node.args:
            keys.add(id(node.args[0]))
    return keys


def format_literals(source, names=formatspec.NAMES):
    """``(line, value)`` of every string constant in ``source`` that spells a format
    name, docstrings and keys aside."""
    tree = ast.parse(source)
    skip = _docstrings(tree) | _keys(tree)
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and node.value in names and id(node) not in skip]


def _production_files():
    for top in PRODUCTION:
        for path in sorted((ROOT / top).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), path


def test_no_format_name_outside_the_registry():
    found = []
    for relative, path in _production_files():
        if relative in REGISTRY:
            continue
        for line, value in format_literals(path.read_text()):
            if (relative, value) not in ALLOWED:
                found.append(f"{relative}:{line}: {value!r}")
    assert found == [], ("format names spelled outside the registry "
                         "(use zeroskip.core.formatspec):\n"
                         + "\n".join(found))


def test_every_allowed_exception_is_still_needed():
    for relative, value in ALLOWED:
        values = [v for _, v in format_literals((ROOT / relative).read_text())]
        assert value in values, f"{relative}: {value!r} is allowed but no longer written"


def test_the_scan_finds_a_format_name():
    source = ('"""Docstring naming csr."""\n'
              'def f(report, fmt="bitmap"):\n'
              '    """fmt="nm" in a docstring is fine."""\n'
              '    x = report["nm"], report.get("dense"), {"csc": 1}\n'
              '    return fmt in ("coo", "auto")\n')
    assert format_literals(source) == [(2, "bitmap"), (5, "coo")]
    # The registry itself spells every name, once, which the scan sees.
    spelled = [value for _, value in format_literals((ROOT / "core/formatspec.py")
                                                     .read_text())]
    assert set(spelled) == set(formatspec.NAMES)


def test_specs_are_the_formats():
    assert formatspec.NAMES == ("csr", "coo", "bitmap", "nm", "dense", "csc")
    assert [(f.name, f.value) for f in Format] == \
        [(spec.member, spec.code) for spec in formatspec.SPECS]
    assert [codec.spec for codec in formats.codecs()] == list(formatspec.SPECS)
    for codec in formats.codecs():
        assert codec.fmt is Format[codec.spec.member]
        assert formats.get(codec.spec.name) is formats.get(codec.fmt) is \
            formats.get(codec.spec.code) is codec
    assert [s.name for s in formatspec.SPECS if s.column_mode] == ["csc"]
    assert sorted(formatspec.SPECS, key=lambda s: s.preference) == \
        [formatspec.CSR, formatspec.COO, formatspec.NM, formatspec.BITMAP, formatspec.CSC,
         formatspec.DENSE]


def test_unknown_formats_are_refused_by_name_and_by_code():
    message = "unknown format 'ell'; known: csr, coo, bitmap, nm, dense, csc"
    for lookup in (formatspec.get, formats.get):
        with pytest.raises(formatspec.UnknownFormat, match=f"^{message}$") as caught:
            lookup("ell")
        assert isinstance(caught.value, ConfigError) and isinstance(caught.value, CompileError)
    with pytest.raises(formatspec.UnknownFormat,
                       match=r"^unknown format code 7; known: 0 \(csr\), 1 \(coo\), "
                             r"2 \(bitmap\), 3 \(nm\), 4 \(dense\), 5 \(csc\)$"):
        formats.get(7)
    with pytest.raises(ConfigError, match=f"^formats: {message}$"):
        AcceleratorConfig(formats=("csr", "ell"))
    assert formatspec.get("NM") is formatspec.NM


def test_a_codec_needs_a_spec_and_registers_once():
    class Ell(FormatCodec):
        name = "ell"

    with pytest.raises(formatspec.UnknownFormat, match="^unknown format 'ell'; known: "):
        register(Ell)

    class Twice(FormatCodec):
        name = "csr"

    with pytest.raises(ValueError, match="^format 'csr' is registered twice$"):
        register(Twice)


def test_every_list_of_formats_derives_from_the_registry():
    assert FORMATS == FORMAT_CHOICES == ("auto",) + formatspec.NAMES
    config = AcceleratorConfig(formats=formatspec.NAMES)
    assert hdl_formats.enabled_formats(config) == frozenset(Format)
    assert hdl_formats.row_formats(config) == frozenset(Format) - {Format.CSC}
    assert hdl_formats.column_mode(config) and hdl_formats.uses_meta(config)
    assert not hdl_formats.uses_meta(AcceleratorConfig(formats=("csr", "nm", "dense")))
    assert not hdl_formats.column_mode(AcceleratorConfig())
    assert AcceleratorConfig().formats == formatspec.DEFAULT_FORMATS == ("csr",)
    # The N:M descriptor word widens ptr words (row_depth 4: 11 bits without it).
    small = dict(row_depth=4, nz_depth=1024, reduce=False)
    assert AcceleratorConfig(**small).ptr_width == 11
    assert AcceleratorConfig(formats=("csr", "nm"), **small).ptr_width == \
        formatspec.NM_WORD_BITS == 12


def test_cli_format_choices_come_from_the_registry(capsys):
    from zeroskip.app.cli import main
    with pytest.raises(SystemExit) as caught:
        main(["compile", "missing.mtx", "--format", "ell"])
    assert caught.value.code == 2
    choices = ", ".join(repr(name) for name in FORMATS)
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"zeroskip compile: error: argument --format: invalid choice: 'ell' "
        f"(choose from {choices})")
    assert choices == "'auto', 'csr', 'coo', 'bitmap', 'nm', 'dense', 'csc'"


def test_readme_names_the_files_a_new_format_touches():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Adding a storage format", 1)[1].split("\n## ", 1)[0]
    files = re.findall(r"^\d+\. `([^`]+)`", section, flags=re.MULTILINE)
    assert 1 <= len(files) <= 5, files
    for name in files:
        path = name.replace("NAME", "csr")
        assert (ROOT / path).is_file(), f"README names {name}, which does not exist"
