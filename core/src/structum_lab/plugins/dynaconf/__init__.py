"""Dynaconf-based configuration for Structum.

``config/app/<namespace>.toml`` files with Dynaconf environments, a
``config/.secrets.toml`` file and ``STRUCTUM_<NAMESPACE>__<KEY>`` environment
variables, resolved by :class:`DynaconfConfigProvider`.
"""

from ._provider import DynaconfConfigProvider

__all__ = ["DynaconfConfigProvider"]
