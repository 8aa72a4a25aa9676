"""The exception hierarchy every backend raises.

Backends never let a bare driver exception reach user code: :func:`translate_error`
maps it onto this hierarchy once, in core, and keeps the original as ``__cause__``.
The hierarchy follows PEP 249's split (operational vs. query errors) so that
``except OperationalError`` means "the database or the network failed" and
``except QueryError`` means "this statement was wrong for this data".
"""

from __future__ import annotations

__all__ = [
    "BackendConflictError",
    "BackendLoadError",
    "BackendNotFoundError",
    "BackendNotInstalledError",
    "ConfigurationError",
    "ConnectionFailedError",
    "ConnectionLostError",
    "DataError",
    "DatabaseError",
    "DeadlockError",
    "IntegrityError",
    "MultipleResultsFound",
    "NoResultFound",
    "NotSupportedError",
    "OperationalError",
    "ParameterError",
    "PoolTimeoutError",
    "ProgrammingError",
    "QueryError",
    "SerializationError",
    "StatementTimeoutError",
    "TransactionError",
    "TransientError",
]


class DatabaseError(Exception):
    """Base class of every error raised by Structum Database.

    ``sqlstate`` is the five-character SQLSTATE (or MySQL error number as text)
    reported by the server when there was one; ``backend`` names the backend
    that raised it.
    """

    sqlstate: str | None = None
    backend: str | None = None

    def __init__(self, message: str, *, sqlstate: str | None = None, backend: str | None = None) -> None:
        super().__init__(message)
        if sqlstate is not None:
            self.sqlstate = sqlstate
        if backend is not None:
            self.backend = backend

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


# --- configuration and plugin loading -------------------------------------------------


class ConfigurationError(DatabaseError, ValueError):
    """The configuration or the arguments given are wrong; the message says how to fix it."""


class BackendNotFoundError(ConfigurationError, LookupError):
    """No installed backend has the requested name or accepts the URL scheme."""


class BackendNotInstalledError(BackendNotFoundError):
    """A first-party backend was asked for but its distribution is not installed."""

    def __init__(self, message: str, *, install: str) -> None:
        super().__init__(message)
        self.install = install


class BackendLoadError(ConfigurationError):
    """An installed backend failed to import (``__cause__`` holds the original error), or was
    built for another major version of the backend contract."""

    def __init__(self, message: str, *, backend_name: str, distribution: str) -> None:
        super().__init__(message, backend=backend_name)
        self.distribution = distribution


class BackendConflictError(ConfigurationError):
    """Two different distributions register the same backend name."""


class ParameterError(DatabaseError, TypeError):
    """The query parameters do not match the placeholders in the SQL."""


# --- runtime errors -------------------------------------------------------------------


class OperationalError(DatabaseError):
    """The database, the network or the pool failed, not the statement itself."""


class ConnectionFailedError(OperationalError):
    """A new connection could not be opened (server down, unreachable, bad credentials)."""


class ConnectionLostError(OperationalError):
    """An open connection died while in use; its transaction was not committed."""


class PoolTimeoutError(OperationalError, TimeoutError):
    """No pooled connection became free within the pool timeout."""


class StatementTimeoutError(OperationalError, TimeoutError):
    """The server cancelled a statement that ran past its timeout."""


class TransientError(OperationalError):
    """A conflict that may succeed if the whole transaction is retried.

    :func:`structum_lab.plugins.database.retry_transaction` retries these.
    """


class SerializationError(TransientError):
    """A serializable/repeatable-read transaction lost a conflict (SQLSTATE 40001)."""


class DeadlockError(TransientError):
    """The server broke a deadlock by aborting this transaction (40P01, MySQL 1213)."""


class QueryError(DatabaseError):
    """The statement failed for reasons of schema, syntax or data."""


class IntegrityError(QueryError):
    """A constraint was violated (unique, foreign key, not null, check)."""


class ProgrammingError(QueryError):
    """The SQL is invalid: syntax error, unknown table or column, wrong privileges."""


class NotSupportedError(ProgrammingError):
    """The backend, its driver or the database cannot do what was asked (e.g. COPY on SQLite)."""


class DataError(QueryError):
    """A value is invalid for its type (out of range, bad format, division by zero)."""


class TransactionError(DatabaseError):
    """The API was used out of order: a connection used after its block ended, or closed."""


class NoResultFound(DatabaseError):
    """``one()`` or ``scalar_one()`` found no row."""


class MultipleResultsFound(DatabaseError):
    """``one()``, ``one_or_none()`` or a ``scalar_one*()`` found more than one row."""
