"""Resolving one config file for one environment with Dynaconf.

Dynaconf reads the file's environment tables ([default], the active environment,
[global]) and deep-merges them. It runs in isolation: Dynaconf reads dozens of
``*_FOR_DYNACONF`` variables, ``DYNACONF_*`` values and a ``.env`` file from the
process environment, and any of them would silently change what a Structum file
means (``ENVIRONMENTS_FOR_DYNACONF=false`` turns [production] into a key,
``NESTED_SEPARATOR_FOR_DYNACONF=_`` splits ``pool_size`` in two). So every option
that shapes loading is passed explicitly, and the settings object sees an empty
environment. Structum's own environment variables are applied later, by us.

Some Dynaconf behaviours are corrected from the tomllib parse of the same file:
top-level keys outside any table (Dynaconf ignores them; here they are the lowest
layer), lists (Dynaconf's merge concatenates [default] and [production] lists;
here the higher layer replaces them, as secrets and env vars do), first-level keys
Dynaconf reserves for itself (``project_root``, ``settings_module``: it drops them),
and first-level key case (Dynaconf upper-cases it; here those keys are lower case).
"""

from __future__ import annotations

import copy
import functools
import threading
from dataclasses import dataclass, field
from typing import Any

from structum_lab.config import ConfigError

from ._files import ConfigFile
from ._tree import Origin, Path, deep_merge, find_key, leaves, lookup

__all__ = ["FileLayer", "resolve_file"]

# Creating Dynaconf settings reloads the module ``dynaconf.default_settings``, which
# is process-global; one resolution at a time.
_lock = threading.Lock()

# Where a settings object loads nothing by itself: an environment variable no one sets.
_NO_SETTINGS_FILE_VAR = "STRUCTUM_DYNACONF_SETTINGS_FILE_UNUSED"


@dataclass(frozen=True, slots=True)
class FileLayer:
    """A file's values for one environment, and the layer (table) that wrote each leaf."""

    values: dict[str, Any]
    origins: dict[Path, Origin] = field(default_factory=dict)


@functools.cache
def _isolated_settings_class() -> type[Any]:
    # Imported here: Dynaconf takes ~100 ms to import, and only resolving a file needs it.
    from dynaconf.base import Settings

    class IsolatedSettings(Settings):  # type: ignore[misc]  # Dynaconf ships no type hints
        """Settings that see an empty process environment."""

        @property
        def environ(self) -> dict[str, str]:
            return {}

    return IsolatedSettings


def _dynaconf_options(environment: str, root: str) -> dict[str, Any]:
    return {
        "_wrapper_class": _isolated_settings_class(),
        "environments": True,
        "env": environment,
        "force_env": environment,
        "default_env": "DEFAULT",
        # build_env_list() adds the lower-cased prefix as a legacy alias of [default]
        # ([dynaconf]); naming it "default" keeps default and global the only special tables.
        "envvar_prefix": "DEFAULT",
        "merge_enabled": True,
        "settings_files": [],
        "envvar": _NO_SETTINGS_FILE_VAR,
        "root_path": root,
        "core_loaders": ["TOML"],
        "loaders": [],  # no env loader (ours reads STRUCTUM_*), no Redis, no Vault
        "redis_enabled": False,
        "vault_enabled": False,
        "includes": [],
        "preload": [],
        "secrets": [],
        "load_dotenv": False,
        # File values are taken as written: no "@format {env[...]}" or "@int" tokens,
        # no splitting of keys on "." or "__".
        "auto_cast": False,
        "dotted_lookup": False,
        "nested_separator": False,
        "index_separator": None,
        "fresh_vars": [],
        "sysenv_fallback": False,
        "validate_on_update": False,
        "silent_errors": True,
    }


def resolve_file(config: ConfigFile, environment: str) -> FileLayer:
    """``config`` resolved for ``environment`` (Dynaconf-style, maybe "a,b" for layered envs)."""
    tables = {k.lower(): v for k, v in config.data.items()}
    with _lock:
        from dynaconf import Dynaconf  # lazy, see _isolated_settings_class
        from dynaconf.loaders import toml_loader
        from dynaconf.utils import build_env_list

        settings = Dynaconf(**_dynaconf_options(environment, str(config.path.parent)))
        layer_names = [str(name).lower() for name in build_env_list(settings, environment)]
        for name in layer_names:
            if name in tables and not isinstance(tables[name], dict):
                raise ConfigError(
                    f"{config.path}: top-level key {name!r} names an environment, so it must be a table [{name}]"
                )
        # The text, not the path: loading by path also runs any dynaconf_hooks.py found
        # next to the file and picks up <name>.local.toml files.
        toml_loader.load(settings, env=environment.upper(), filename=config.text + "\n", silent=True)
        merged = settings.as_dict()

    # The layers in Dynaconf's order; the last one holding a path wrote it.
    layers = [(config.label, config.base)]
    layers += [(f"{config.label} [{name}]", tables[name]) for name in layer_names if name in tables]

    # Only keys the file wrote: as_dict() also holds Dynaconf's own (LOAD_DOTENV).
    written = {str(key).lower() for name in layer_names for key in tables.get(name, {})}
    values: dict[str, Any] = copy.deepcopy(config.base)
    values.update({str(k).lower(): v for k, v in merged.items() if str(k).lower() in written})
    # Dynaconf keeps some first-level names for itself and leaves them out of
    # as_dict() (project_root, settings_module, *_for_dynaconf); a Structum file
    # may use them. dynaconf_merge and friends are Dynaconf directives, not values.
    dropped = {key for key in written - values.keys() if not key.startswith("dynaconf_")}
    for _, table in layers[1:]:
        values = deep_merge(values, {k.lower(): v for k, v in table.items() if k.lower() in dropped})

    origins: dict[Path, Origin] = {}
    winners: dict[Path, Any] = {}
    for label, table in layers:
        for path, value in leaves({str(k).lower(): v for k, v in table.items()}):
            origins[path] = Origin(label)
            winners[path] = value

    for path, value in winners.items():
        present, current = lookup(values, path)
        if present and isinstance(current, list):
            _set(values, path, copy.deepcopy(value))
    return FileLayer(values, origins)


def _set(tree: dict[str, Any], path: Path, value: Any) -> None:
    # Dynaconf's merge matches nested keys ignoring case, so the spelling may differ.
    node = tree
    for part in path[:-1]:
        node = node[find_key(node, part) or part]
    node[find_key(node, path[-1]) or path[-1]] = value
