"""The external memory: its configuration, ``LOAD``/``SYNC``, the host's window
and streamed programs on the ISA model."""

import pytest

from zeroskip.core.config import AcceleratorConfig, ConfigError, check_generated

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
])
def test_config_messages(changes, message):
    with pytest.raises(ConfigError) as info:
        AcceleratorConfig(**changes)
    assert str(info.value) == message


def test_generated_hardware_refuses_an_external_memory():
    check_generated(AcceleratorConfig())
    with pytest.raises(ConfigError) as info:
        check_generated(EXT)
    assert str(info.value) == ("ext_words 65536: the generated hardware has no external-memory "
                               "port; only the ISA model runs ext_words > 0")
