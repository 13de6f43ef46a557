"""Fixtures of the formal proofs: run one proof, expect one to fail."""

import pytest

from zeroskip.sim import formal

FORMAL_ROOT = formal.FORMAL_DIR


@pytest.fixture(scope="session")
def formal_root(repo_root):
    return repo_root / FORMAL_ROOT


@pytest.fixture
def run_proof(formal_root):
    """``run_proof(dut, properties, name=..., mode=..., depth=...)``: the proof
    must pass; a missing tool fails the test with its one-line message."""
    def run(dut, properties, **kwargs):
        try:
            result = formal.prove(dut, properties, root=formal_root, **kwargs)
        except formal.FormalToolError as error:
            pytest.fail(str(error), pytrace=False)
        except formal.ProofFailed as error:
            pytest.fail(str(error), pytrace=False)
        print(result.summary())
        return result
    return run


@pytest.fixture
def refute(formal_root):
    """``refute(dut, properties, expect=..., name=..., ...)``: the proof of a
    mutant must fail, on an assertion whose message contains ``expect``."""
    def run(dut, properties, *, expect, **kwargs):
        try:
            formal.prove(dut, properties, root=formal_root, **kwargs)
        except formal.FormalToolError as error:
            pytest.fail(str(error), pytrace=False)
        except formal.ProofFailed as error:
            assert any(expect in failure for failure in error.failures), str(error)
            assert error.trace is not None and error.trace.exists(), str(error)
            print(f"{kwargs['name']}: fails as it must: {error}")
            return error
        pytest.fail(f"{kwargs['name']}: the proof passed on a mutant", pytrace=False)
    return run
