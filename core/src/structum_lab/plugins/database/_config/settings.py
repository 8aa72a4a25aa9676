"""Reading a database's settings from the configuration provider.

The provider (``structum_lab.config``) resolves files, secrets and environment
variables; this module turns one namespace into the flat option mapping a backend
takes: the ``[<env>.options]`` table is merged over the top-level keys, every value
keeps its origin for error messages, and a missing URL says exactly where to set it.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from structum_lab.config import ConfigError, ConfigProvider, SupportsSources, get_config_provider

from .._contract.errors import ConfigurationError

__all__ = ["Settings", "load_settings", "resolve_provider"]


@dataclass(frozen=True, slots=True)
class Settings:
    """The options of one namespace, flattened, with where each came from."""

    namespace: str
    values: dict[str, Any]
    sources: dict[str, str] = field(default_factory=dict)
    raw: dict[str, str] = field(default_factory=dict)


def resolve_provider(provider: ConfigProvider | None = None) -> ConfigProvider:
    """The given provider, else the one set with ``set_config_provider``, else one
    discovered from the working directory (``config/app/*.toml``, secrets, env)."""
    if provider is not None:
        return provider
    current = get_config_provider()
    if current is not None:
        return current
    from structum_lab.plugins.dynaconf import DynaconfConfigProvider

    return DynaconfConfigProvider.discover(os.getcwd())


def _env_name(namespace: str, key: str) -> str:
    return f"STRUCTUM_{namespace.upper()}__{key.upper()}"


def load_settings(namespace: str = "database", provider: ConfigProvider | None = None) -> Settings:
    """Flattened options of ``namespace``; ConfigurationError if there is no URL."""
    if not namespace or not namespace.replace("_", "").isalnum():
        raise ConfigurationError(
            f"invalid config namespace {namespace!r}: use letters, digits and underscores (e.g. 'primary_db')"
        )
    source = resolve_provider(provider)
    try:
        tree = source.get_namespace(namespace)
        described = source.describe(namespace) if isinstance(source, SupportsSources) else {}
    except ConfigError as exc:
        raise ConfigurationError(f"cannot read the configuration of namespace {namespace!r}: {exc}") from exc

    options = tree.get("options", {})
    if not isinstance(options, Mapping):
        raise ConfigurationError(
            f"'options' in namespace {namespace!r} must be a table ([default.options]), got {type(options).__name__}"
        )
    values: dict[str, Any] = {k: v for k, v in tree.items() if k != "options"}
    values.update(options)

    sources: dict[str, str] = {}
    raw: dict[str, str] = {}
    for dotted, item in described.items():
        parts = dotted.split(".")
        key = parts[1] if parts[0] == "options" and len(parts) > 1 else parts[0]
        sources.setdefault(key, item.source)
        if item.raw is not None and len(parts) == (2 if parts[0] == "options" else 1):
            raw[key] = item.raw

    if not values.get("url"):
        known = source.namespaces() if isinstance(source, SupportsSources) else []
        if not tree and known:
            close = difflib.get_close_matches(namespace, known, n=1, cutoff=0.6)
            hint = f" Did you mean {close[0]!r}?" if close else f" Configured namespaces: {', '.join(known)}."
        else:
            hint = ""
        raise ConfigurationError(
            f"no database URL configured for namespace {namespace!r}: set 'url' in config/app/{namespace}.toml "
            f"(under [default] or the active environment), or under [{namespace}] in config/.secrets.toml, "
            f"or the environment variable {_env_name(namespace, 'url')}.{hint}"
        )
    return Settings(namespace, values, sources, raw)
