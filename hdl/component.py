"""The base of every block generated from an :class:`AcceleratorConfig`."""

from amaranth.lib import wiring

from zeroskip.core.config import AcceleratorConfig

__all__ = ["ConfigComponent", "check_config"]


def check_config(config):
    """``config``, if it is an :class:`AcceleratorConfig`; else :exc:`TypeError`."""
    if not isinstance(config, AcceleratorConfig):
        raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
    return config


class ConfigComponent(wiring.Component):
    """A :class:`wiring.Component` built for one accelerator configuration.

    Parameters
    ----------
    config : AcceleratorConfig
    signature : dict or wiring.Signature
        The component's members.

    Raises
    ------
    TypeError
        If ``config`` is not an :class:`AcceleratorConfig`.
    """

    def __init__(self, config, signature):
        self._config = check_config(config)
        super().__init__(signature)

    @property
    def config(self):
        """The :class:`AcceleratorConfig` the block is generated for."""
        return self._config
