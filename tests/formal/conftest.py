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
        except formal.FormalError as error:
            message = str(error)
        else:
            print(result.summary())
            return result
        pytest.fail(message, pytrace=False)
    return run


@pytest.fixture
def refute(formal_root):
    """``refute(dut, properties, expect=..., name=..., ...)``: the proof of a
    mutant must fail, on an assertion whose message contains ``expect``."""
    def run(dut, properties, *, expect, **kwargs):
        try:
            formal.prove(dut, properties, root=formal_root, **kwargs)
        except formal.ProofFailed as error:
            failed = error
        except formal.FormalToolError as error:
            failed = str(error)
        else:
            failed = f"{kwargs['name']}: the proof passed on a mutant"
        if isinstance(failed, str):
            pytest.fail(failed, pytrace=False)
        assert any(expect in failure for failure in failed.failures), str(failed)
        assert failed.trace is not None and failed.trace.exists(), str(failed)
        print(f"{kwargs['name']}: fails as it must: {failed}")
        return failed
    return run
