"""The external memory: its configuration, ``LOAD``/``SYNC``, the host's window
and streamed programs on the ISA model."""

import asyncio
import dataclasses

import numpy as np
import pytest
import scipy.sparse

from zeroskip.core import timing
from zeroskip.core.arith import epilogue, sign_extend
from zeroskip.core.config import AcceleratorConfig, ConfigError, check_generated
from zeroskip.core.errors import CompileError, DeviceError
from zeroskip.core.extmem import EXT_PRESETS, ext_preset
from zeroskip.core.isa import (
    CTRL_CLEAR,
    CTRL_START,
    EXT_BURST,
    ErrorCode,
    Opcode,
    Reg,
    nz_entry_layout,
)
from zeroskip.firmware.asm import assemble, decode, disassemble, encode_load
from zeroskip.firmware.compiler import compile_spmv
from zeroskip.firmware.compiler.stream import half_config
from zeroskip.firmware.model import BusError, Machine
from zeroskip.firmware.program import Program
from zeroskip.sim.backends import run_model
from zeroskip.sim.buses import ModelBus
from zeroskip.sim.driver import Driver

EXT = AcceleratorConfig(pes=4, nz_depth=64, row_depth=16, imem_depth=64, ext_words=1 << 16,
                        ext_latency=10, ext_words_per_cycle=2)


# Configuration.

def test_defaults_keep_the_json_and_fingerprint():
    plain = AcceleratorConfig()
    data = plain.to_dict()
    assert not {"ext_words", "ext_latency", "ext_words_per_cycle"} & set(data)
    assert AcceleratorConfig(ext_words=0).fingerprint == plain.fingerprint
    ext = AcceleratorConfig(ext_words=1 << 20)
    assert ext.to_dict()["ext_words"] == 1 << 20
    assert "ext_latency" not in ext.to_dict()
    assert ext.fingerprint != plain.fingerprint
    assert AcceleratorConfig.from_dict(EXT.to_dict()) == EXT
    assert EXT.ext_addr_width == 16 and plain.ext_addr_width == 0


@pytest.mark.parametrize("changes, message", [
    (dict(ext_words=1000),
     "ext_words must be 0 (none) or a power of two from 1024 to 67108864, not 1000"),
    (dict(ext_words=512),
     "ext_words must be 0 (none) or a power of two from 1024 to 67108864, not 512"),
    (dict(ext_words=1 << 27),
     "ext_words must be 0 (none) or a power of two from 1024 to 67108864, not 134217728"),
    (dict(ext_words=True), "ext_words must be an integer, not True"),
    (dict(ext_words="1k"), "ext_words must be an integer, not '1k'"),
    (dict(ext_words=1024, ext_latency=-1), "ext_latency must be between 0 and 1024, not -1"),
    (dict(ext_words=1024, ext_latency=1025),
     "ext_latency must be between 0 and 1024, not 1025"),
    (dict(ext_words=1024, ext_words_per_cycle=3),
     "ext_words_per_cycle must be 1, 2, 4 or 8, not 3"),
    (dict(ext_latency=3), "ext_latency needs an external memory (ext_words > 0), not 3"),
    (dict(ext_words_per_cycle=2),
     "ext_words_per_cycle needs an external memory (ext_words > 0), not 2"),
    (dict(ext_words=1024, ext_rate_cycles=0), "ext_rate_cycles must be between 1 and 64, not 0"),
    (dict(ext_words=1024, ext_rate_cycles=65),
     "ext_rate_cycles must be between 1 and 64, not 65"),
    (dict(ext_words=1024, ext_rate_cycles=2.5), "ext_rate_cycles must be an integer, not 2.5"),
    (dict(ext_rate_cycles=2),
     "ext_rate_cycles needs an external memory (ext_words > 0), not 2"),
])
def test_config_messages(changes, message):
    with pytest.raises(ConfigError) as info:
        AcceleratorConfig(**changes)
    assert str(info.value) == message


def test_a_rate_below_one_word_per_cycle_keeps_the_other_fingerprints():
    assert "ext_rate_cycles" not in EXT.to_dict()
    slow = EXT.replace(ext_words_per_cycle=8, ext_rate_cycles=17)
    assert slow.to_dict()["ext_rate_cycles"] == 17
    assert AcceleratorConfig.from_dict(slow.to_dict()) == slow
    assert slow.fingerprint != EXT.fingerprint
    # ext_latency + ceil(pes * count * ext_rate_cycles / ext_words_per_cycle)
    assert timing.load_cycles(5, slow) == 10 + -(-4 * 5 * 17 // 8) == 53
    assert timing.load_cycles(5, EXT) == 10 + 10
    assert timing.load_cycles(0, slow) == 0


def test_the_ulx3s_preset_is_two_cycles_and_an_eighth_per_word():
    preset = ext_preset("ulx3s-sdram")
    assert preset is EXT_PRESETS["ulx3s-sdram"]
    config = AcceleratorConfig().replace(**preset.fields())
    assert (config.ext_words, config.ext_latency, config.ext_words_per_cycle,
            config.ext_rate_cycles) == (1 << 23, 10, 8, 17)
    assert preset.cycles_per_word == 2.125
    with pytest.raises(ConfigError) as info:
        ext_preset("ddr5")
    assert str(info.value) == "unknown external memory 'ddr5'; known: ulx3s-sdram"


def test_generated_hardware_refuses_what_its_port_does_not_do():
    check_generated(AcceleratorConfig())
    with pytest.raises(ConfigError) as info:
        check_generated(EXT)
    assert str(info.value) == (
        "ext_words 65536: no board or Verilog simulation attaches the generated hardware's "
        "external-memory port yet; only the ISA model and the Amaranth simulator (pysim) run "
        "ext_words > 0")
    with pytest.raises(ConfigError) as info:
        check_generated(EXT, ext_port=True)
    assert str(info.value) == (
        "ext_words_per_cycle 2: the generated hardware's external-memory port carries one "
        "32-bit word per cycle; only the ISA model runs ext_words_per_cycle > 1")
    with pytest.raises(ConfigError) as info:
        check_generated(dataclasses.replace(EXT, ext_words_per_cycle=1, ext_latency=0),
                        ext_port=True)
    assert str(info.value) == (
        "ext_latency 0: the generated hardware's external-memory port answers a read request "
        "in a later cycle; only the ISA model runs ext_latency 0")
    with pytest.raises(ConfigError) as info:
        check_generated(EXT.replace(ext_words_per_cycle=1, ext_rate_cycles=3), ext_port=True)
    assert str(info.value) == (
        "ext_rate_cycles 3: the generated hardware's simulated external memory delivers one "
        "word every cycle; only the ISA model runs ext_rate_cycles > 1")
    check_generated(dataclasses.replace(EXT, ext_words_per_cycle=1, ext_latency=1),
                    ext_port=True)


def test_driver_writes_the_external_memory_in_bursts():
    m = Machine(EXT)
    driver = Driver(ModelBus(m), EXT)
    words = np.random.default_rng(1).integers(0, 1 << 32, 2 * EXT_BURST + 7, dtype=np.int64)
    asyncio.run(driver.write_ext(5, words))
    assert np.array_equal(m.ext[5:5 + len(words)], words)
    assert m.read_word(Reg.EXT_ADDR) == 5 + len(words)
    m.write_word(Reg.EXT_ADDR, 5 + EXT_BURST)
    assert m.read_words(Reg.EXT_DATA, 3).tolist() == words[EXT_BURST:EXT_BURST + 3].tolist()
    assert m.read_word(Reg.EXT_DATA) == words[EXT_BURST + 3]
    assert m.read_word(Reg.EXT_ADDR) == 5 + EXT_BURST + 4


def test_port_refuses_addresses_past_the_memory():
    m = Machine(EXT)
    with pytest.raises(BusError) as info:
        m.write_word(Reg.EXT_ADDR, EXT.ext_words)
    assert str(info.value) == "EXT_ADDR 65536 is past the external memory (65536 words)"
    m.write_word(Reg.EXT_ADDR, EXT.ext_words - 2)
    with pytest.raises(BusError) as info:
        m.write_words(Reg.EXT_DATA, [1, 2, 3])
    assert str(info.value) == ("EXT_DATA at 0x400: external word 65536 is past the external "
                               "memory (65536 words)")
    driver = Driver(ModelBus(m), EXT)
    with pytest.raises(DeviceError) as info:
        asyncio.run(driver.write_ext(EXT.ext_words, [1]))
    assert str(info.value) == "the accelerator rejected the write of address 0x0000038 (SLVERR)"


def test_port_is_unassigned_without_an_external_memory():
    m = Machine(AcceleratorConfig(pes=4))
    assert m.read_word(Reg.EXT_ADDR) == 0 and m.read_word(Reg.EXT_DATA) == 0
    with pytest.raises(BusError) as info:
        m.write_word(Reg.EXT_ADDR, 0)
    assert str(info.value) == "register at 0x38 is not writable"


# LOAD and SYNC on the ISA model.

def run_code(m, text):
    words = assemble(text)
    for i, word in enumerate(words):
        m.write_word(m.map.imem(i), word & 0xFFFFFFFF)
        m.write_word(m.map.imem(i) + 4, word >> 32)
    m.write_word(Reg.CTRL, CTRL_CLEAR | CTRL_START)
    return m.counters["cycles"]


def filled(config, seed=0):
    m = Machine(config)
    m.ext[:] = np.random.default_rng(seed).integers(0, 1 << 32, config.ext_words,
                                                    dtype=np.uint32)
    return m


def test_load_copies_lane_major_into_every_region():
    m = filled(EXT)
    cycles = run_code(m, "load region=ptr dst=2 count=3 src=100\n"
                         "load region=nz dst=1 count=5 src=200\n"
                         "load region=meta dst=0 count=4 src=300\n"
                         "load region=bias dst=7 count=9 src=400\nhalt")
    assert m.error == ErrorCode.NONE and m.done
    ext = m.ext.astype(np.int64)
    for p in range(EXT.pes):
        assert m.ptr[p, 2:5].tolist() == (ext[100 + 3 * p:103 + 3 * p]
                                          & ((1 << EXT.ptr_width) - 1)).tolist()
        assert m.nz[p, 1:6].tolist() == (ext[200 + 5 * p:205 + 5 * p]
                                         & ((1 << nz_entry_layout(EXT).size) - 1)).tolist()
        assert m.meta[p, 0:4].tolist() == (ext[300 + 4 * p:304 + 4 * p] & 0xFFFF).tolist()
        assert m.bias[p, 7:16].tolist() == sign_extend(ext[400 + 9 * p:409 + 9 * p],
                                                       32).tolist()
        assert not m.ptr[p, :2].any() and not m.nz[p, 0] and not m.bias[p, :7].any()
    # Four loads queue at once (two cycles each to issue), the engine runs them
    # back to back from cycle 2, HALT waits for the last and takes two cycles.
    transfers = [10 + -(-EXT.pes * count // 2) for count in (3, 5, 4, 9)]
    assert cycles == 2 + sum(transfers) + 2
    assert m.counters["insns"] == 5


def test_a_load_hides_behind_compute_until_sync():
    code = "load region=nz dst={dst} count={count} src=0\nspmv\nsync\nhalt"
    spmv = timing.SPMV_OVERHEAD + 40
    for count in (1, 40, 60):
        machine = filled(EXT)
        machine.ptr[:, 0] = 1       # one row per lane, 40 nonzeros (all zero words)
        machine.ptr[:, 1] = 40
        cycles = run_code(machine, code.format(dst=64 - count, count=count))
        transfer = timing.load_cycles(count, EXT)
        assert transfer == 10 + -(-4 * count // 2)
        hidden = max(0, 2 + transfer - (2 + spmv))
        assert cycles == 2 + spmv + hidden + 2 + 2


def test_a_full_queue_waits_for_the_oldest_load():
    m = filled(EXT)
    count = 16
    transfer = timing.load_cycles(count, EXT)
    cycles = run_code(m, "\n".join([f"load region=nz dst=0 count={count} src=0"] * 6
                                   + ["halt"]))
    # F[k] = 2 + (k + 1) * transfer; LOAD 4 issued at 8 waits until F[0], LOAD 5
    # (issued at F[0] + 2) until F[1]; HALT at F[1] + 2 waits until F[5].
    finish = [2 + (k + 1) * transfer for k in range(6)]
    assert timing.LOAD_QUEUE == 4
    assert cycles == finish[5] + 2


def test_sync_without_loads_costs_the_overhead():
    assert run_code(filled(EXT), "sync\nhalt") == 2 * timing.INSN_OVERHEAD


@pytest.mark.parametrize("operands", [
    "region=ptr dst=14 count=3 src=0",        # 14 + 3 > row_depth 16
    "region=bias dst=0 count=17 src=0",
    "region=nz dst=60 count=5 src=0",         # nz_depth 64
    "region=meta dst=65 count=0 src=0",
    f"region=nz dst=0 count=4 src={(1 << 16) - 15}",     # src + 4 * 4 > ext_words
    "region=ptr dst=0 count=0 src=65537",
])
def test_load_descriptor_errors_write_nothing(operands):
    m = filled(EXT)
    before = [a.copy() for a in (m.ptr, m.nz, m.meta, m.bias)]
    run_code(m, f"nop\nload {operands}\nhalt")
    assert m.error == ErrorCode.DESCRIPTOR and m.pc == 1
    assert all(np.array_equal(a, b) for a, b in zip(before, (m.ptr, m.nz, m.meta, m.bias),
                                                    strict=True))
    assert m.counters["cycles"] == 2 * timing.INSN_OVERHEAD


def test_load_limits_are_inclusive():
    m = filled(EXT)
    run_code(m, f"load region=nz dst=48 count=16 src={(1 << 16) - 64}\n"
                "load region=ptr dst=16 count=0 src=65536\nhalt")
    assert m.error == ErrorCode.NONE
    assert m.nz[3, 63] == int(m.ext[-1]) & ((1 << nz_entry_layout(EXT).size) - 1)


@pytest.mark.parametrize("text", ["load region=nz count=1", "sync"])
def test_load_and_sync_are_illegal_without_an_external_memory(text):
    m = Machine(AcceleratorConfig(pes=4))
    assert run_code(m, f"nop\n{text}\nhalt") == 2 * timing.INSN_OVERHEAD
    assert m.error == ErrorCode.ILLEGAL_INSN and m.pc == 1


def test_assembler_round_trips_load():
    rng = np.random.default_rng(3)
    for _ in range(200):
        word = encode_load(region=int(rng.integers(4)), dst_base=int(rng.integers(1 << 16)),
                           count=int(rng.integers(1 << 16)), src=int(rng.integers(1 << 26)))
        (text,) = disassemble([word]).splitlines()
        assert text.startswith("load region=")
        assert assemble(text) == [word]
        assert decode(word)[0] is Opcode.LOAD
    assert assemble(disassemble(assemble("sync"))) == assemble("sync")
    assert decode(assemble("sync")[0]) == (Opcode.SYNC, {})
    assert decode(encode_load(region="bias", dst_base=3, count=4, src=5)) == (
        Opcode.LOAD, {"region": 3, "dst_base": 3, "count": 4, "src": 5})


# Streamed programs.

STREAM = AcceleratorConfig(pes=4, nz_depth=64, row_depth=16, imem_depth=64, x_depth=256,
                           ext_words=1 << 16, ext_latency=10, ext_words_per_cycle=2)


def int_matrix(rows, cols, density, seed):
    rng = np.random.default_rng(seed)
    a = scipy.sparse.random(rows, cols, density=density, random_state=seed, format="csr")
    a.data = rng.integers(-100, 100, a.nnz).astype(np.float64)
    a.eliminate_zeros()
    return a.astype(np.int64), rng.integers(-100, 100, cols)


def rule_cycles(program, half_program, config):
    """The streamed program's cycles counted from the load rule: each tile's compute
    (its cycles in the unstreamed program, ``HALT`` aside), 2 cycles per ``LOAD``,
    the transfers back to back (``ext_latency`` 10, 2 words per cycle) and each
    ``SYNC``/``HALT`` waiting for the last transfer, then 2 cycles."""
    total, at = 0, 0
    for run in program.tiles:
        t, finish, computing, queued = 0, 0, False, 0
        for word in run.code.tolist():
            opcode, args = decode(word)
            if opcode is Opcode.LOAD:
                assert queued < 4                  # never waits for the queue
                queued += 1
                t += 2
                finish = max(t, finish) + 10 + -(-config.pes * args["count"] // 2)
            elif opcode in (Opcode.SYNC, Opcode.HALT):
                t = max(t, finish) + 2
                computing, queued = False, 0
            elif not computing:
                t += half_program.tile_cycles(half_program.tiles[at]) - 2
                at += 1
                computing = True
        total += t
    assert at == len(half_program.tiles)
    return total


@pytest.mark.parametrize("options", [{}, dict(bias=True, shift=3, relu=True)])
def test_a_matrix_larger_than_the_lanes_streams_bit_exact(options):
    a, x = int_matrix(120, 200, 0.08, seed=1)
    assert a.nnz > 4 * STREAM.pes * STREAM.nz_depth    # four times what the lanes hold
    if options.get("bias"):
        options = dict(options, bias=np.random.default_rng(2).integers(-999, 999, 120))
    program = compile_spmv(a, STREAM, stream=True, **options)
    half = compile_spmv(a, half_config(STREAM), **options)
    assert len(program.tiles) < len(half.tiles) and program.report["stream"]["runs"] > 1
    result = run_model(program, x)
    expected = a @ x
    if "shift" in options:
        expected = epilogue(expected + options["bias"], shift=3, relu=True,
                            clamp_lo=STREAM.value_min, clamp_hi=STREAM.value_max,
                            value_width=STREAM.value_width)
    assert np.array_equal(result.y_raw, expected)
    assert result.counters["cycles"] == program.predicted_cycles(x) == \
        rule_cycles(program, half, STREAM)
    assert result.counters["macs"] == np.count_nonzero(a.data)
    assert program.lane_balance()["lane_work"] == half.lane_balance()["lane_work"]
    # The loads hide behind compute: far fewer cycles than loading each tile after another.
    serial = sum(half.tile_cycles(t) for t in half.tiles) + sum(
        timing.load_cycles(int(args["count"]), STREAM) for tile in program.tiles
        for opcode, args in map(decode, tile.code.tolist()) if opcode is Opcode.LOAD)
    assert result.counters["cycles"] < serial


def test_streaming_is_off_by_default_and_needs_an_external_memory():
    a, _ = int_matrix(40, 30, 0.2, seed=3)
    program = compile_spmv(a, STREAM)
    assert program.ext is None
    assert not any(decode(int(w))[0] is Opcode.LOAD for t in program.tiles for w in t.code)
    with pytest.raises(CompileError) as info:
        compile_spmv(a, AcceleratorConfig(pes=4), stream=True)
    assert str(info.value) == "stream=True needs an external memory (ext_words > 0)"


@pytest.mark.parametrize("options", [{}, dict(bias=True, shift=2, relu=True)])
def test_column_tiles_stream_each_in_a_run_of_its_own(options):
    a, x = int_matrix(80, 700, 0.03, seed=1)
    a = a.tolil()
    a[:26, 300:] = 0                 # these rows' blocks need one column tile only
    a = a.tocsr()
    if options:
        options = dict(options, bias=np.random.default_rng(2).integers(-50, 50, 80))
    program = compile_spmv(a, STREAM, stream=True, **options)
    half = compile_spmv(a, half_config(STREAM), **options)
    accumulating = sum(args["accumulate"] for tile in half.tiles for args in tile.spmvs())
    assert accumulating and program.report["stream"]["runs"] == len(half.tiles)
    result = run_model(program, x)
    expected = a @ x
    if options:
        expected = epilogue(expected + options["bias"], shift=2, relu=True,
                            clamp_lo=STREAM.value_min, clamp_hi=STREAM.value_max,
                            value_width=STREAM.value_width)
    assert np.array_equal(result.y_raw, expected)
    assert result.counters["cycles"] == program.predicted_cycles(x) == \
        rule_cycles(program, half, STREAM)


def test_a_streamed_program_saves_and_loads(tmp_path):
    a, x = int_matrix(60, 100, 0.1, seed=5)
    program = compile_spmv(a, STREAM, stream=True)
    program.save(tmp_path / "p.npz")
    loaded = Program.load(tmp_path / "p.npz")
    assert np.array_equal(loaded.ext, program.ext)
    assert np.array_equal(run_model(loaded, x).y_raw, a @ x)


def test_split_rows_stream_with_their_routes_encoded_for_the_whole_memory():
    config = STREAM.replace(nz_depth=128)
    a, x = int_matrix(60, 200, 0.02, seed=1)
    a = a.tolil()
    a[[3, 17, 40], :45] = 7
    a = a.tocsr()
    bias = np.random.default_rng(6).integers(-50, 50, 60)
    program = compile_spmv(a, config, stream=True, split_rows=True, bias=bias, shift=2)
    assert any(decode(int(w))[0] is Opcode.REDUCE for t in program.tiles for w in t.code)
    result = run_model(program, x)
    expected = epilogue(a @ x + bias, shift=2, relu=False, clamp_lo=config.value_min,
                        clamp_hi=config.value_max, value_width=config.value_width)
    assert np.array_equal(result.y_raw, expected)
    assert result.counters["cycles"] == program.predicted_cycles(x)


def test_a_streamed_program_sends_its_weights_once_through_the_port():
    from zeroskip.app.transfers import count_program
    a, _ = int_matrix(120, 200, 0.08, seed=1)
    program = compile_spmv(a, STREAM, stream=True)
    plain = compile_spmv(a, STREAM)
    transfers = count_program(program)
    assert transfers.words("weights") == len(program.ext)
    assert transfers.words("code") == 2 * sum(len(t.code) for t in program.tiles)
    assert count_program(plain).words("weights") == sum(
        len(image) for t in plain.tiles for image in t.ptr + t.nz)


@pytest.mark.parametrize("text, message", [
    ("load region=foo", "line 1: field 'region' = 'foo' is not a region; regions: ptr, nz, "
                        "meta, bias"),
    ("load region=4", "line 1: field 'region' = 4 is not a region; regions: ptr, nz, meta, "
                      "bias"),
    ("load src=67108864", "line 1: field 'src' = 67108864 does not fit 26 bits"),
    ("load count=65536", "line 1: field 'count' = 65536 does not fit 16 bits"),
    ("load fmt=csr", "line 1: load has no field 'fmt'; fields: region, dst, count, src"),
    ("sync 1", "line 1: sync takes no fields"),
])
def test_assembler_refuses_bad_load_operands(text, message):
    with pytest.raises(CompileError) as info:
        assemble(text)
    assert str(info.value) == message


def test_a_bad_load_stops_the_run_through_the_driver():
    a, x = int_matrix(60, 100, 0.1, seed=5)
    program = compile_spmv(a, STREAM, stream=True)
    code = program.tiles[0].code.copy()
    code[0] = encode_load(region="nz", dst_base=0, count=16, src=STREAM.ext_words - 63)
    program.tiles[0].code = code
    with pytest.raises(DeviceError) as info:
        run_model(program, x)
    assert str(info.value) == "the accelerator stopped with DESCRIPTOR at instruction 0 (tile 0)"
    assert info.value.code == ErrorCode.DESCRIPTOR and info.value.pc == 0
