"""The process-wide configuration provider."""

from __future__ import annotations

from ._provider import ConfigProvider

__all__ = ["get_config_provider", "set_config_provider"]

_current: ConfigProvider | None = None


def set_config_provider(provider: ConfigProvider | None) -> None:
    """Install ``provider`` for the whole process; ``None`` removes it."""
    global _current  # noqa: PLW0603 - the process-wide provider is the point of this module
    if provider is not None:
        # ConfigProvider is a static Protocol; without this check a wrong object would
        # only fail later, far from the call that installed it.
        missing = [name for name in ("get", "has", "get_namespace") if not callable(getattr(provider, name, None))]
        if missing:
            raise TypeError(
                f"set_config_provider() needs a ConfigProvider; {type(provider).__name__} lacks {', '.join(missing)}"
            )
    _current = provider


def get_config_provider() -> ConfigProvider | None:
    """The provider installed with :func:`set_config_provider`, or ``None``."""
    return _current
