"""Transaction options shared by every backend: isolation levels and read-only mode."""

from __future__ import annotations

from typing import Final, get_args

from .._contract.errors import ConfigurationError
from .._contract.protocols import IsolationLevel

__all__ = ["ISOLATION_SQL", "normalize_isolation"]

#: The SQL spelling of each isolation level (``SET TRANSACTION ISOLATION LEVEL ...``).
ISOLATION_SQL: Final[dict[IsolationLevel, str]] = {
    "read_uncommitted": "READ UNCOMMITTED",
    "read_committed": "READ COMMITTED",
    "repeatable_read": "REPEATABLE READ",
    "serializable": "SERIALIZABLE",
}


def normalize_isolation(value: str | None) -> IsolationLevel | None:
    """``"SERIALIZABLE"``, ``"repeatable read"`` and ``"read_committed"`` all work."""
    if value is None:
        return None
    key = "_".join(str(value).strip().lower().replace("-", " ").split())
    if key in ISOLATION_SQL:
        return key
    choices = ", ".join(repr(v) for v in get_args(IsolationLevel))
    raise ConfigurationError(f"unknown isolation level {value!r}; use one of {choices}")
