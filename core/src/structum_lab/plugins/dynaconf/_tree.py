"""Nested value trees: deep merge, leaves, lookup, and the origin of every leaf."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from structum_lab.config import ConfigValue

__all__ = ["Origin", "Path", "Resolved", "deep_merge", "find_key", "leaves", "lookup"]

Path = tuple[str, ...]


class Origin(NamedTuple):
    source: str
    raw: str | None = None


def deep_merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """A new tree: tables merge key by key at every depth; anything else in ``overlay`` replaces.

    Lists are replaced, not concatenated: a production host list must not silently
    keep the development hosts.
    """
    merged = {key: copy.deepcopy(value) for key, value in base.items()}
    for key, value in overlay.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = deep_merge(current, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def leaves(tree: Mapping[str, Any], prefix: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Every non-table value with its path; an empty table counts as a leaf so it is not lost."""
    for key, value in tree.items():
        path = (*prefix, str(key))
        if isinstance(value, Mapping) and value:
            yield from leaves(value, path)
        else:
            yield path, value


def find_key(node: Mapping[str, Any], key: str) -> str | None:
    """The key of ``node`` that ``key`` names: exact spelling first, then ignoring case.

    Environment variable names are upper case by convention, so they cannot spell a
    file's ``sslMode``; Dynaconf compares first-level keys without case as well.
    """
    if key in node:
        return key
    folded = key.lower()
    return next((k for k in node if isinstance(k, str) and k.lower() == folded), None)


def lookup(tree: Mapping[str, Any], path: Path) -> tuple[bool, Any]:
    """``(True, value)`` at ``path`` in ``tree``, ``(False, None)`` when it is absent."""
    node: Any = tree
    for part in path:
        if not isinstance(node, Mapping):
            return False, None
        found = find_key(node, part)
        if found is None:
            return False, None
        node = node[found]
    return True, node


@dataclass
class Resolved:
    """Layers merged in order of precedence, remembering which layer wrote each leaf."""

    values: dict[str, Any] = field(default_factory=dict)
    origins: dict[Path, Origin] = field(default_factory=dict)

    def apply(self, tree: Mapping[str, Any], default: Origin, origins: Mapping[Path, Origin] | None = None) -> None:
        """Merge ``tree`` over the values; its leaves come from ``origins[path]``, else ``default``."""
        self.values = deep_merge(self.values, tree)
        # The last layer writing a path is its origin. Paths a later layer shadowed
        # (a table replaced by a scalar, or the reverse) are no longer leaves of
        # ``values`` and are dropped by describe().
        for path, _ in leaves(tree):
            self.origins[path] = origins.get(path, default) if origins else default

    def describe(self) -> dict[str, ConfigValue]:
        described: dict[str, ConfigValue] = {}
        for path, value in leaves(self.values):
            origin = self.origins.get(path, Origin("unknown"))
            described[".".join(path)] = ConfigValue(copy.deepcopy(value), origin.source, origin.raw)
        return described
