"""What a configuration provider offers to the rest of Structum."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from ._values import ConfigValue

__all__ = ["ConfigProvider", "SupportsSources"]


class ConfigProvider(Protocol):
    """Namespaced configuration, read with dotted keys.

    The first segment of a key is the namespace (``"database.pool_size"`` reads
    ``pool_size`` from the ``database`` namespace).
    """

    def get(self, key: str, default: Any = None) -> Any:
        """The value at the dotted ``key``, or ``default`` when it is not configured."""
        ...

    def has(self, key: str) -> bool:
        """Whether the dotted ``key`` is configured."""
        ...

    def get_namespace(self, namespace: str) -> dict[str, Any]:
        """The resolved values of ``namespace`` as a nested plain dict; ``{}`` when none."""
        ...


@runtime_checkable
class SupportsSources(Protocol):
    """Optional capability: say where every value came from."""

    def describe(self, namespace: str) -> dict[str, ConfigValue]:
        """Flattened dotted leaf keys of ``namespace`` mapped to their value and origin."""
        ...

    def namespaces(self) -> list[str]:
        """Every namespace known to the provider, sorted."""
        ...
