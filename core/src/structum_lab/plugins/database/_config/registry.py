"""The backend registry: which backends are installed, and which one serves a URL.

The table is built from entry point metadata (groups ``structum_database.backends``
and ``structum_database.schemes``) on first use, without importing any backend.
Only the backend that is selected gets imported. Selection:

1. an explicit ``backend`` name (or alias) wins;
2. otherwise the URL scheme: an exact scheme claim beats a ``dialect+*`` claim;
   among equals, first-party backends in :data:`KNOWN_BACKENDS` order, then
   third-party ones; two third-party backends tied for a scheme is an error
   asking for ``backend=``, since installing a package must not silently
   reroute an existing URL.
"""

from __future__ import annotations

import difflib
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from .._contract.errors import (
    BackendConflictError,
    BackendLoadError,
    BackendNotFoundError,
    BackendNotInstalledError,
    ConfigurationError,
)
from .._contract.url import DatabaseURL
from .._contract.version import CONTRACT_ATTRIBUTE, ContractMismatch, check_contract
from .known import KNOWN_BACKENDS, first_party_rank, known_backend, known_for_scheme, scheme_matches
from .manager import get_plugin_manager

__all__ = ["BACKEND_GROUP", "SCHEME_GROUP", "BackendInfo", "Registry", "available_backends", "get_registry"]

BACKEND_GROUP = "structum_database.backends"
SCHEME_GROUP = "structum_database.schemes"

log = logging.getLogger("structum_lab.plugins.database")


@dataclass(eq=False)
class BackendInfo:
    """An installed backend, as its distribution's metadata declares it.

    ``load()`` imports it (once) and registers it with the plugin manager;
    ``load_error`` is set when that failed.
    """

    name: str
    distribution: str
    version: str
    schemes: tuple[str, ...]
    aliases: tuple[str, ...] = ()
    entry_point: EntryPoint | None = field(default=None, repr=False)
    conflicts: tuple[str, ...] = ()
    load_error: BackendLoadError | None = field(default=None, repr=False)
    _plugin: object | None = field(default=None, repr=False)

    @property
    def first_party(self) -> bool:
        known = known_backend(self.name)
        return known is not None and known.distribution == self.distribution

    @property
    def loaded(self) -> bool:
        return self._plugin is not None

    def accepts(self, scheme: str) -> int | None:
        matches = [m for p in self.schemes if (m := scheme_matches(p, scheme)) is not None]
        return min(matches) if matches else None

    def load(self) -> object:
        """Import the backend's plugin object; raises :class:`BackendLoadError`."""
        if self._plugin is not None:
            return self._plugin
        if self.conflicts:
            raise BackendConflictError(
                f"backend name {self.name!r} is registered by several distributions: "
                f"{', '.join(sorted({self.distribution, *self.conflicts}))}; uninstall all but one"
            )
        if self.load_error is not None:
            raise self.load_error
        if self.entry_point is None:  # pragma: no cover - BackendInfo built by hand
            raise BackendLoadError(
                f"backend {self.name!r} has no entry point to load",
                backend_name=self.name,
                distribution=self.distribution,
            )
        try:
            plugin = self.entry_point.load()
        except Exception as exc:
            error = BackendLoadError(
                f"backend {self.name!r} from distribution {self.distribution} {self.version} failed to import "
                f"({self.entry_point.value}): {type(exc).__name__}: {exc}; reinstall it or check its dependencies",
                backend_name=self.name,
                distribution=self.distribution,
            )
            error.__cause__ = exc
            self.load_error = error
            raise error from exc
        self._check_contract(plugin)
        get_plugin_manager().register_backend(self.name, plugin, distribution=self.distribution)
        self._plugin = plugin
        return plugin

    def _check_contract(self, plugin: object) -> None:
        """Refuse a backend built for another major version of the backend contract."""
        try:
            warning = check_contract(getattr(plugin, CONTRACT_ATTRIBUTE, None))
        except ContractMismatch as exc:
            self.load_error = BackendLoadError(
                f"backend {self.name!r} from distribution {self.distribution} {self.version} {exc}",
                backend_name=self.name,
                distribution=self.distribution,
            )
            raise self.load_error from None
        if warning is not None:
            log.warning("backend %r from distribution %s %s %s", self.name, self.distribution, self.version, warning)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "aliases": list(self.aliases),
            "distribution": self.distribution,
            "version": self.version,
            "schemes": list(self.schemes),
            "first_party": self.first_party,
            "loaded": self.loaded,
            "error": str(self.load_error) if self.load_error else None,
        }


def _canonical_name(distribution: str, names: list[str]) -> str:
    """The canonical name among a backend's entry point names (the others are aliases).

    Entry point files are written sorted, so order cannot say which is meant: a
    first-party backend uses its name from the known table; otherwise the name the
    distribution's name ends with (``acme-structum-cockroach`` -> ``cockroach``) wins,
    else the alphabetically first.
    """
    for name in names:
        known = known_backend(name)
        if known is not None and known.distribution == distribution and known.name in names:
            return known.name
    normalized = distribution.lower().replace("_", "-")
    suffixed = [n for n in names if normalized.endswith("-" + n.lower().replace("_", "-"))]
    return sorted(suffixed or names)[0]


def _ordered_schemes(info: BackendInfo) -> tuple[str, ...]:
    """First-party schemes in the known table's order; others exact before wildcard, sorted."""
    known = known_backend(info.name)
    if known is not None and known.distribution == info.distribution:
        order = {scheme: i for i, scheme in enumerate(known.schemes)}
        return tuple(sorted(info.schemes, key=lambda s: (order.get(s, len(order)), s)))
    return tuple(sorted(info.schemes, key=lambda s: (s.endswith("*"), s)))


def _dist_of(ep: EntryPoint) -> tuple[str, str]:
    dist = ep.dist
    if dist is None:  # pragma: no cover - only for entry points built by hand
        return "<unknown>", "?"
    return dist.metadata["Name"] or dist.name, dist.version


class Registry:
    """The table of installed backends, read lazily from entry point metadata."""

    def __init__(self, entry_point_source: Iterable[EntryPoint] | None = None) -> None:
        self._source = entry_point_source
        self._table: dict[str, BackendInfo] | None = None
        self._lock = threading.Lock()

    def refresh(self) -> None:
        """Forget the table; the next call reads entry point metadata again."""
        with self._lock:
            self._table = None

    def _entry_points(self) -> tuple[list[EntryPoint], list[EntryPoint]]:
        if self._source is not None:
            eps = list(self._source)
            return [e for e in eps if e.group == BACKEND_GROUP], [e for e in eps if e.group == SCHEME_GROUP]
        # One metadata scan for both groups: entry_points() is not cached and costs ms.
        found = entry_points()
        return list(found.select(group=BACKEND_GROUP)), list(found.select(group=SCHEME_GROUP))

    def _build(self) -> dict[str, BackendInfo]:
        backend_eps, scheme_eps = self._entry_points()
        # Group entry points by target: several names for one target are aliases.
        groups: dict[tuple[str, str], list[EntryPoint]] = {}
        versions: dict[str, str] = {}
        for ep in backend_eps:
            dist, version = _dist_of(ep)
            versions[dist] = version
            group = groups.setdefault((dist, ep.value), [])
            if ep.name not in {e.name for e in group}:  # the same install seen twice is one
                group.append(ep)
        infos: dict[tuple[str, str], BackendInfo] = {}
        for (dist, value), eps in groups.items():
            canonical = _canonical_name(dist, [e.name for e in eps])
            aliases = tuple(sorted(e.name for e in eps if e.name != canonical))
            first = next(e for e in eps if e.name == canonical)
            infos[(dist, value)] = BackendInfo(canonical, dist, versions[dist], (), aliases, entry_point=first)
        names: dict[str, BackendInfo] = {}
        for info in infos.values():
            for name in (info.name, *info.aliases):
                other = names.setdefault(name, info)
                if other is not info and other.distribution != info.distribution:
                    other.conflicts += (info.distribution,)
                    info.conflicts += (other.distribution,)
        for ep in scheme_eps:
            dist, _ = _dist_of(ep)
            target = infos.get((dist, ep.value))
            if target is None:
                log.debug("scheme %r from %s points at no backend entry point (%s)", ep.name, dist, ep.value)
                continue
            if ep.name.lower() not in target.schemes:
                target.schemes += (ep.name.lower(),)
        for info in infos.values():
            info.schemes = _ordered_schemes(info)
        return names

    def table(self) -> dict[str, BackendInfo]:
        if self._table is None:
            with self._lock:
                if self._table is None:
                    self._table = self._build()
        return self._table

    def backends(self) -> list[BackendInfo]:
        unique = {id(i): i for i in self.table().values()}
        return sorted(unique.values(), key=lambda i: (first_party_rank(i.name), i.name))

    # -- selection ---------------------------------------------------------------------

    def _installed_summary(self) -> str:
        items = [f"{i.name} ({', '.join(s + '://' for s in i.schemes) or 'no schemes'})" for i in self.backends()]
        return "installed backends: " + ("; ".join(items) if items else "none")

    def get(self, name: str) -> BackendInfo:
        """The backend registered as ``name`` (or alias); explains what to do if absent."""
        key = name.strip().lower()
        table = self.table()
        info = table.get(key)
        if info is not None:
            return info
        known = known_backend(key)
        if known is not None:
            raise BackendNotInstalledError(
                f"backend {name!r} ({known.description}) is not installed; install it with: {known.install}",
                install=known.install,
            )
        choices = sorted(set(table) | {k.name for k in KNOWN_BACKENDS} | {a for k in KNOWN_BACKENDS for a in k.aliases})
        close = difflib.get_close_matches(key, choices, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise BackendNotFoundError(f"unknown backend {name!r}{hint}; {self._installed_summary()}")

    def select(self, url: DatabaseURL, backend: str | None = None) -> BackendInfo:
        """The backend for ``url``: the named one, else the best claim on its scheme."""
        if backend:
            info = self.get(backend)
            if info.accepts(url.scheme) is None:
                raise ConfigurationError(
                    f"backend {info.name!r} does not accept {url.scheme}:// URLs; it accepts "
                    f"{', '.join(s + '://' for s in info.schemes)}. Change the URL or the backend key."
                )
            return info
        scheme = url.scheme
        ranked: list[tuple[int, int, str, BackendInfo]] = []
        for info in self.backends():
            match = info.accepts(scheme)
            if match is not None:
                ranked.append((match, first_party_rank(info.name), info.name, info))
        if ranked:
            ranked.sort(key=lambda r: r[:3])
            best = ranked[0]
            tied = [r[3].name for r in ranked if r[:2] == best[:2]]
            if len(tied) > 1:
                raise ConfigurationError(
                    f"several backends accept {scheme}:// URLs: {', '.join(tied)}; "
                    "choose one with backend=... (or the 'backend' config key)"
                )
            return best[3]
        known = known_for_scheme(scheme)
        if known:
            first = known[0]
            raise BackendNotInstalledError(
                f"no installed backend accepts {scheme}:// URLs; the {first.name} backend does. "
                f"Install it with: {first.install}",
                install=first.install,
            )
        all_schemes = {s for i in self.backends() for s in i.schemes if not s.endswith("*")}
        all_schemes |= {s for k in KNOWN_BACKENDS for s in k.schemes if not s.endswith("*")}
        close = difflib.get_close_matches(url.dialect, sorted(all_schemes), n=1, cutoff=0.6)
        hint = ""
        if close:
            owner = known_for_scheme(close[0])
            served = any(i.accepts(close[0]) is not None for i in self.backends())
            pip = f" ({owner[0].install})" if owner and not served else ""
            hint = f"; did you mean {close[0]}://{pip}?"
        raise BackendNotFoundError(f"unknown URL scheme {scheme!r} in {url}{hint}; {self._installed_summary()}")


_registry = Registry()


def get_registry() -> Registry:
    return _registry


def available_backends() -> list[BackendInfo]:
    """Installed backends (name, distribution, version, URL schemes), without importing them."""
    return _registry.backends()
