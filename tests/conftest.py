"""Fixtures shared by every test directory."""

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES_DATA = REPO_ROOT / "examples" / "data"


@pytest.fixture(scope="session")
def repo_root():
    """The repository's top directory."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def examples_data():
    """The directory of the sample matrices (examples/data)."""
    return EXAMPLES_DATA


@pytest.fixture(autouse=True)
def _private_build_record(tmp_path, monkeypatch):
    """Every test reads and appends to a record of routed builds of its own, empty at
    the start, not the shipped one (whose entries change with every routed build);
    ``tests/boards/test_record.py`` checks the shipped record by its path."""
    monkeypatch.setenv("ZEROSKIP_BUILD_RECORD", str(tmp_path / "routed.json"))
