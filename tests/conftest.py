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
