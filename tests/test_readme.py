"""The README's examples run as written, and its set-up text matches ``make setup``.

Every fenced ``sh`` block of README.md is run, in order, one command a line
(``\\`` continues a line, ``#`` starts a comment), in one scratch directory
that has the repository's ``examples/`` beside it, so that a block can use
what an earlier one wrote (``build/verilog/...``). ``zeroskip`` commands run
in this process and must exit 0. A command is skipped, with the reason, when
a rule of :data:`SKIP_RULES` matches it (simulators, boards, long builds; the
tests under tests/system and tests/boards cover those), and a whole block is
skipped when the line before it is an HTML comment
``<!-- readme-test: skip: REASON -->``.
"""

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from zeroskip.app.cli import main

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

#: (pattern, reason): commands matching a pattern are not run.
SKIP_RULES = (
    (r"--backend[ =](pysim|icarus|verilator)\b",
     "runs a simulator (the system tests run every backend)"),
    (r"--backend[ =]board\b|^zeroskip program\b", "needs a connected board"),
    (r"^zeroskip build\b|^zeroskip sweep\b.*--boards\b", "builds bitstreams for minutes"),
    (r"^zeroskip demo\b", "builds the Verilator simulation (make demo, tests/cli)"),
    (r"^zeroskip generate\b.*--pes[ =]([2-9]\d|1[6-9])\b",
     "generates a design of 16 or more PEs (a minute or more)"),
    (r"^make\b", "runs the set-up or the whole test suite"),
    (r"^(?!zeroskip\b)", "not a zeroskip command"),
)
_SKIP_BLOCK = re.compile(r"<!--\s*readme-test:\s*skip:\s*(.*?)\s*-->")
_FENCE = re.compile(r"^```(\w*)\s*$")


def readme_blocks(text):
    """``(line number, language, skip reason or None, lines)`` of each fenced block."""
    blocks = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        fence = _FENCE.match(lines[index])
        if fence is None:
            index += 1
            continue
        start, language = index, fence.group(1)
        end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("```"))
        before = next((lines[i] for i in range(start - 1, -1, -1) if lines[i].strip()), "")
        skip = _SKIP_BLOCK.search(before)
        blocks.append((start + 1, language, skip.group(1) if skip else None,
                       lines[start + 1:end]))
        index = end + 1
    return blocks


def commands(lines):
    """The commands of a shell block: continuations joined, comments and blanks dropped."""
    joined, current = [], ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        joined.append(current + line)
        current = ""
    result = []
    for command in joined:
        words = shlex.split(command, comments=True)
        if words:
            result.append(words)
    return result


def skip_reason(words):
    text = shlex.join(words)
    for pattern, reason in SKIP_RULES:
        if re.search(pattern, text):
            return reason
    return None


SH_BLOCKS = [block for block in readme_blocks(README.read_text())
             if block[1] in ("sh", "bash", "shell")]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    root = tmp_path_factory.mktemp("readme")
    (root / "examples").symlink_to(REPO / "examples")
    return root


@pytest.mark.xdist_group("readme")   # the blocks run in order, in one directory
@pytest.mark.parametrize("block", SH_BLOCKS, ids=[f"README.md:{b[0]}" for b in SH_BLOCKS])
def test_readme_block(block, scratch, monkeypatch, capsys):
    line, _, skip, lines = block
    if skip is not None:
        pytest.skip(skip)
    monkeypatch.chdir(scratch)
    monkeypatch.setenv("ZEROSKIP_PROGRESS", "0")
    ran, skipped = [], []
    for words in commands(lines):
        reason = skip_reason(words)
        if reason is not None:
            skipped.append(f"{shlex.join(words)}: {reason}")
            continue
        status = main(words[1:])
        output = capsys.readouterr()
        assert status == 0, (f"README.md:{line}: {shlex.join(words)} exited {status}:\n"
                             f"{output.out}{output.err}")
        ran.append(words)
    if not ran:
        pytest.skip("; ".join(skipped))


def test_blocks_are_found_and_rules_apply():
    # The parser sees the README's commands, including ones skipped by a rule.
    words = [shlex.join(w) for b in SH_BLOCKS for w in commands(b[3])]
    assert any(w.startswith("zeroskip run ") for w in words)
    assert skip_reason(["zeroskip", "run", "a.mtx", "--backend", "verilator"]) == \
        "runs a simulator (the system tests run every backend)"
    assert skip_reason(["zeroskip", "run", "a.mtx"]) is None
    assert skip_reason(["make", "test"]) == "runs the set-up or the whole test suite"
    assert commands(["zeroskip run a.mtx \\", "  --pes 2  # two lanes", "", "# note"]) == \
        [["zeroskip", "run", "a.mtx", "--pes", "2"]]
    text = "x\n<!-- readme-test: skip: slow -->\n```sh\nzeroskip demo\n```\n```\nout\n```\n"
    assert readme_blocks(text) == [(3, "sh", "slow", ["zeroskip demo"]), (6, "", None, ["out"])]


# Set-up --------------------------------------------------------------------------------------

def makefile_packages():
    found = re.search(r"^SYSTEM_PACKAGES := (.*)$", (REPO / "Makefile").read_text(), re.M)
    return found.group(1).split()


def test_quick_start_names_what_setup_installs():
    quick_start = README.read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    packages = makefile_packages()
    assert packages == ["iverilog", "libusb-1.0-0", "libftdi1-2"]
    for package in packages:
        assert f"`{package}`" in quick_start
    assert "apt-get install -y --no-install-recommends" in quick_start
    assert "sudo apt-get install -y PACKAGES" in quick_start
    assert (REPO / ".ci" / "run").read_text().strip().splitlines()[-1] == "exec make test"


FAKE_TOOLS = {
    # A bare Debian machine: nothing installed; apt-get records what it is asked.
    "dpkg-query": "#!/bin/sh\nexit 1\n",
    "apt-get": "#!/bin/sh\necho \"apt-get $*\" >> \"$FAKE_LOG\"\n"
               "[ \"$1\" = install ] && [ ! -e \"$FAKE_LOG.updated\" ] && exit 100\n"
               "[ \"$1\" = update ] && touch \"$FAKE_LOG.updated\"\nexit 0\n",
}


@pytest.mark.parametrize("uid", [0, 1000])
def test_setup_on_a_bare_machine(tmp_path, uid):
    # `make system-packages` (part of `make setup`) with stand-ins for dpkg-query,
    # apt-get and id on PATH: what a machine without the packages sees.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tools = dict(FAKE_TOOLS, id=f"#!/bin/sh\necho {uid}\n")
    for name, text in tools.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    log = tmp_path / "apt.log"
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", FAKE_LOG=str(log))
    result = subprocess.run(["make", "-s", "--no-print-directory", "system-packages"],
                            cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    packages = " ".join(makefile_packages())
    if uid == 0:
        install = f"apt-get install -y --no-install-recommends {packages}"
        # The stale package lists make the first install fail: update once, then install.
        assert log.read_text().splitlines() == [install, "apt-get update", install]
        assert result.stdout == f"installing system packages: {packages}\n"
    else:
        assert not log.exists()
        assert result.stdout == (f"note: missing system packages: {packages}; the tests that "
                                 f"need them are skipped. Install them with: sudo apt-get "
                                 f"install -y {packages}\n")
