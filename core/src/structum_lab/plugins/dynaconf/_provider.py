"""DynaconfConfigProvider: Structum configuration from files, secrets and the environment."""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from structum_lab.config import ConfigError, ConfigValue

from ._engine import FileLayer, resolve_file
from ._env import scan_environ
from ._files import RESERVED_TABLES, ConfigFile, read_secrets, read_toml
from ._tree import Origin, Resolved, find_key, lookup

__all__ = ["DynaconfConfigProvider"]

logger = logging.getLogger("structum_lab.plugins.dynaconf")

DEFAULT_ENVIRONMENT = "development"


class DynaconfConfigProvider:
    """Namespaced configuration in Dynaconf's file layout.

    ``config/app/<namespace>.toml`` holds ``[default]`` and per-environment tables,
    ``config/.secrets.toml`` holds ``[<namespace>]`` tables, and environment
    variables ``STRUCTUM_<NAMESPACE>__<KEY>`` override both. Precedence, highest
    first: environment variables, secrets, the active environment's table,
    ``[default]``, top-level keys. Tables merge key by key at every depth.

    A secret can be scoped to one environment: ``[database.production]`` in the secrets
    file applies only when ``production`` is active (over the namespace's unscoped
    ``[database]`` secrets). An unscoped secret ``url`` that overrides the url of the
    active environment's own file section is reported once (a development run would
    otherwise connect to the host the secret names): see :meth:`url_override`.
    """

    def __init__(
        self,
        root_path: str | os.PathLike[str] = ".",
        *,
        environment: str | None = None,
        env_var: str = "STRUCTUM_ENV",
        env_prefix: str = "STRUCTUM",
        config_dir: str = "config/app",
        secrets_file: str = "config/.secrets.toml",
    ) -> None:
        root = Path(os.fspath(root_path)).expanduser()
        if not root.is_dir():
            what = "is not a directory" if root.exists() else "does not exist"
            raise ConfigError(f"config root path {str(root)!r} {what}")
        if not env_prefix or "__" in env_prefix:
            raise ValueError(f"env_prefix must be a non-empty name without '__', got {env_prefix!r}")
        self._root = root.resolve()
        self._environment = _normalize_environment(environment) if environment is not None else None
        if environment is not None and not self._environment:
            raise ValueError("environment must be a non-empty name (or None to read it from the environment)")
        self._env_var = env_var
        self._env_prefix = env_prefix
        self._config_dir = config_dir
        self._secrets_file = secrets_file
        self._files: dict[str, list[ConfigFile]] = {}
        self._secrets: dict[str, dict[str, Any]] = {}
        self._secrets_label = secrets_file
        self._layers: dict[tuple[Path, str], FileLayer] = {}
        self._warned_environments: set[str] = set()
        self._warned_overrides: set[tuple[str, str]] = set()

    @classmethod
    def discover(cls, root_path: str | os.PathLike[str] = ".") -> DynaconfConfigProvider:
        """A provider for ``root_path`` with its config directory and secrets file loaded."""
        return cls(root_path).auto_discover()

    # -- loading -----------------------------------------------------------------

    def auto_discover(self) -> DynaconfConfigProvider:
        """Load ``<config_dir>/*.toml`` (file stem = namespace) and the secrets file, if present."""
        directory = self._root / self._config_dir
        if directory.is_dir():
            for path in sorted(directory.glob("*.toml")):
                if path.name.startswith(".") or not path.is_file():
                    continue  # hidden files are not namespaces (a stray .secrets.toml is not config)
                if "." in path.stem:
                    logger.warning("ignoring %s: a namespace cannot contain '.'", self._label(path))
                    continue
                self.load_file(path)
        elif directory.exists():
            raise ConfigError(f"config directory {str(directory)!r} is not a directory")
        else:
            logger.debug("no config directory %s; only environment variables apply", directory)

        secrets = self._root / self._secrets_file
        if secrets.is_file():
            self._secrets_label = self._label(secrets)
            self._secrets = read_secrets(secrets, self._secrets_label)
            logger.debug("loaded secrets file %s (namespaces: %s)", self._secrets_label, ", ".join(self._secrets))
        return self

    def load_file(self, path: str | os.PathLike[str], namespace: str | None = None) -> DynaconfConfigProvider:
        """Load one TOML file into ``namespace`` (default: the file's stem).

        Several files may share a namespace; later ones merge over earlier ones.
        Loading a file again replaces what it loaded before.
        """
        file_path = Path(os.fspath(path)).expanduser()
        if not file_path.is_absolute():
            file_path = self._root / file_path
        if not file_path.is_file():
            what = "is not a file" if file_path.exists() else "does not exist"
            raise ConfigError(f"config file {str(file_path)!r} {what}")
        file_path = file_path.resolve()
        name = (namespace if namespace is not None else file_path.stem).strip().lower()
        if not name or "." in name or any(char.isspace() for char in name):
            raise ConfigError(
                f"invalid namespace {name!r} for {file_path}: use letters, digits and underscores "
                "(pass namespace=... to load_file)"
            )
        label = self._label(file_path)
        text, data = read_toml(file_path, label)
        loaded = ConfigFile(file_path, label, name, text, data)
        for files in self._files.values():
            files[:] = [f for f in files if f.path != file_path]
        self._files.setdefault(name, []).append(loaded)
        self._layers = {key: layer for key, layer in self._layers.items() if key[0] != file_path}
        logger.debug(
            "loaded config file %s as namespace %r (environments: %s)",
            label,
            name,
            ", ".join(sorted(loaded.environments)) or "none",
        )
        return self

    # -- ConfigProvider ----------------------------------------------------------

    @property
    def environment(self) -> str:
        """The active environment: the constructor's, else ``$STRUCTUM_ENV``, else "development"."""
        return self._environment or _normalize_environment(os.environ.get(self._env_var, "")) or DEFAULT_ENVIRONMENT

    def get(self, key: str, default: Any = None) -> Any:
        namespace, *path = key.split(".")
        values = self._resolve(namespace).values
        if not path:
            return values if values else default
        present, value = lookup(values, tuple(path))
        return value if present else default

    def has(self, key: str) -> bool:
        namespace, *path = key.split(".")
        values = self._resolve(namespace).values
        return lookup(values, tuple(path))[0] if path else bool(values)

    def get_namespace(self, namespace: str) -> dict[str, Any]:
        return self._resolve(namespace).values

    # -- SupportsSources ---------------------------------------------------------

    def describe(self, namespace: str) -> dict[str, ConfigValue]:
        return self._resolve(namespace).describe()

    def namespaces(self) -> list[str]:
        known = {name for name, files in self._files.items() if files} | set(self._secrets)
        known |= {item.namespace for item in scan_environ(self._env_prefix, exclude=frozenset({self._env_var}))}
        return sorted(known)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root_path={str(self._root)!r}, environment={self.environment!r}, "
            f"namespaces={self.namespaces()!r})"
        )

    # -- resolution --------------------------------------------------------------

    def _resolve(self, namespace: str) -> Resolved:
        name = namespace.strip().lower()
        environment = self.environment
        self._check_environment(environment)
        resolved = Resolved()
        for config in self._files.get(name, ()):
            layer = self._file_layer(config, environment)
            resolved.apply(layer.values, Origin(config.label), layer.origins)
        if name in self._secrets:
            shared, scoped = self._split_secrets(self._secrets[name], environment)
            override = self._override(name, environment, resolved, shared)
            if override and (name, environment) not in self._warned_overrides:
                self._warned_overrides.add((name, environment))
                logger.warning("%s", override)
            resolved.apply(shared, Origin(f"{self._secrets_label} [{name}]"))
            for part, table in scoped:
                resolved.apply(table, Origin(f"{self._secrets_label} [{name}.{part}]"))
        for item in scan_environ(self._env_prefix, exclude=frozenset({self._env_var})):
            if item.namespace != name:
                continue
            path = _existing_spelling(resolved.values, item.path)
            tree: dict[str, Any] = {path[-1]: item.value}
            for part in reversed(path[:-1]):
                tree = {part: tree}
            # raw is the variable's text only where the leaf is the whole value, not a
            # key inside an inline table given as the value.
            source = f"env {item.name}"
            resolved.apply(tree, Origin(source), {path: Origin(source, item.raw)})
        return resolved

    def url_override(self, namespace: str) -> str | None:
        """Why the secrets file's unscoped ``url`` wins over the active environment's own
        section (and how to scope it), or None when it does not."""
        name = namespace.strip().lower()
        environment = self.environment
        secrets = self._secrets.get(name)
        if not secrets:
            return None
        resolved = Resolved()
        for config in self._files.get(name, ()):
            layer = self._file_layer(config, environment)
            resolved.apply(layer.values, Origin(config.label), layer.origins)
        return self._override(name, environment, resolved, self._split_secrets(secrets, environment)[0])

    def _environment_names(self) -> set[str]:
        return {
            DEFAULT_ENVIRONMENT,
            "production",
            *(e for files in self._files.values() for f in files for e in f.environments),
        }

    def _split_secrets(
        self, table: Mapping[str, Any], environment: str
    ) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
        """The secrets for every environment, and the tables scoped to the active ones, in order."""
        environments = self._environment_names() | set(environment.split(","))
        shared = {k: v for k, v in table.items() if not (isinstance(v, Mapping) and k.lower() in environments)}
        scoped = [
            (part, dict(value))
            for part in environment.split(",")
            for key, value in table.items()
            if key.lower() == part and isinstance(value, Mapping)
        ]
        return shared, scoped

    def _override(self, name: str, environment: str, resolved: Resolved, shared: Mapping[str, Any]) -> str | None:
        origin = resolved.origins.get(("url",))
        if "url" not in shared or origin is None or not origin.source.startswith(tuple(self._file_labels(name))):
            return None
        return (
            f"the url in {self._secrets_label} [{name}] overrides the url of {origin.source} in every environment "
            f"(now {environment!r}); to use it in one environment only, put it under [{name}.production] (or "
            "that environment's name) in the secrets file"
        )

    def _file_labels(self, name: str) -> list[str]:
        return [config.label for config in self._files.get(name, ())]

    def _file_layer(self, config: ConfigFile, environment: str) -> FileLayer:
        key = (config.path, environment)
        layer = self._layers.get(key)
        if layer is None:
            layer = self._layers[key] = resolve_file(config, environment)
        return layer

    def _check_environment(self, environment: str) -> None:
        """Warn once when a chosen environment is defined by no loaded file (likely a typo)."""
        if environment in self._warned_environments:
            return
        # "development" (the implicit choice) and "default" need no table: [default]
        # alone is the normal development setup.
        unusual = [part for part in environment.split(",") if part not in (DEFAULT_ENVIRONMENT, *RESERVED_TABLES)]
        if not unusual:
            return
        defined = sorted(
            set().union(*(f.environments for files in self._files.values() for f in files))
            | {k.lower() for table in self._secrets.values() for k, v in table.items() if isinstance(v, Mapping)}
        )
        missing = [part for part in unusual if part not in defined]
        if not defined or not missing:
            return
        self._warned_environments.add(environment)
        close = difflib.get_close_matches(missing[0], defined, n=1)
        logger.warning(
            "environment %r (from %s) is not defined in any loaded config file; defined: %s.%s "
            "Only [default] values and overrides apply.",
            missing[0],
            "environment=" if self._environment else f"${self._env_var}",
            ", ".join(defined),
            f" Did you mean {close[0]!r}?" if close else "",
        )

    def _label(self, path: Path) -> str:
        try:
            return path.resolve().relative_to(self._root).as_posix()
        except ValueError:
            return path.resolve().as_posix()


def _normalize_environment(name: str) -> str:
    # Dynaconf compares environment names in lower case; "Production , eu" layers two.
    return ",".join(part.strip().lower() for part in name.split(",") if part.strip())


def _existing_spelling(tree: Mapping[str, Any], path: tuple[str, ...]) -> tuple[str, ...]:
    """``path`` spelled as the keys already in ``tree`` (env var names cannot carry case)."""
    spelled: list[str] = []
    node: Any = tree
    for part in path:
        found = find_key(node, part) if isinstance(node, Mapping) else None
        spelled.append(found or part)
        node = node.get(found) if found is not None else None
    return tuple(spelled)
