"""Structum configuration: the provider protocol and the process-wide provider.

A provider (such as :class:`structum_lab.plugins.dynaconf.DynaconfConfigProvider`)
resolves namespaced values from files, secrets and environment variables; install
one with :func:`set_config_provider` and every ``from_config()`` uses it.
"""

from ._global import get_config_provider, set_config_provider
from ._provider import ConfigProvider, SupportsSources
from ._values import ConfigError, ConfigValue

__all__ = [
    "ConfigError",
    "ConfigProvider",
    "ConfigValue",
    "SupportsSources",
    "get_config_provider",
    "set_config_provider",
]
