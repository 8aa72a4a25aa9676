"""Mapping driver exceptions onto the core hierarchy, once for every backend.

The decision uses, in order: the SQLSTATE (PostgreSQL, via psycopg or asyncpg), the
MySQL/MariaDB error number, the SQLite result code, and finally the PEP 249 class the
driver raised. A backend only says what it knows and the generic rules cannot: that
the error happened while connecting, or that the connection is now dead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from .._contract import errors as e
from .secrets import Secrets

__all__ = ["REPLACEABLE_ERRORS", "driver_error_code", "error_classes", "translate_error"]

#: The engine's own errors a driver may have raised as subclasses (its ``error_classes``).
REPLACEABLE_ERRORS: Final = (e.PoolTimeoutError, e.NoResultFound, e.MultipleResultsFound)

_SQLSTATE_EXACT: Final[dict[str, type[e.DatabaseError]]] = {
    "40001": e.SerializationError,
    "40P01": e.DeadlockError,
    "55P03": e.TransientError,  # lock_not_available (NOWAIT / lock_timeout)
    "57014": e.StatementTimeoutError,  # query_canceled: statement_timeout
    "57P01": e.ConnectionLostError,  # admin_shutdown, pg_terminate_backend
    "57P02": e.ConnectionLostError,  # crash_shutdown
    "57P05": e.ConnectionLostError,  # idle_session_timeout: the server closed an idle connection
    "25P03": e.ConnectionLostError,  # idle_in_transaction_session_timeout: closed, transaction lost
    "57P03": e.ConnectionFailedError,  # cannot_connect_now (starting up)
    "3D000": e.ConnectionFailedError,  # database does not exist
    "53300": e.ConnectionFailedError,  # too_many_connections
    "25006": e.ProgrammingError,  # read_only_sql_transaction
    "25P02": e.TransactionError,  # in_failed_sql_transaction
}
_SQLSTATE_CLASS: Final[dict[str, type[e.DatabaseError]]] = {
    "08": e.ConnectionLostError,
    "22": e.DataError,
    "23": e.IntegrityError,
    "28": e.ConnectionFailedError,  # invalid authorization
    "40": e.TransientError,
    "42": e.ProgrammingError,
    "0A": e.ProgrammingError,
    "53": e.OperationalError,
}
_MYSQL: Final[dict[int, type[e.DatabaseError]]] = {
    1062: e.IntegrityError,
    1048: e.IntegrityError,
    1451: e.IntegrityError,
    1452: e.IntegrityError,
    1216: e.IntegrityError,
    1217: e.IntegrityError,
    1364: e.IntegrityError,
    3819: e.IntegrityError,
    4025: e.IntegrityError,
    1213: e.DeadlockError,
    1205: e.TransientError,
    1020: e.SerializationError,
    2006: e.ConnectionLostError,
    2013: e.ConnectionLostError,
    2055: e.ConnectionLostError,
    4031: e.ConnectionLostError,
    1927: e.ConnectionLostError,
    1053: e.ConnectionLostError,
    2003: e.ConnectionFailedError,
    2005: e.ConnectionFailedError,
    1045: e.ConnectionFailedError,
    1049: e.ConnectionFailedError,
    1040: e.ConnectionFailedError,
    1064: e.ProgrammingError,
    1146: e.ProgrammingError,
    1054: e.ProgrammingError,
    1149: e.ProgrammingError,
    1142: e.ProgrammingError,
    1792: e.ProgrammingError,
    1264: e.DataError,
    1265: e.DataError,
    1366: e.DataError,
    1406: e.DataError,
    1292: e.DataError,
    1365: e.DataError,
    3024: e.StatementTimeoutError,
    1969: e.StatementTimeoutError,
}
_SQLITE: Final[dict[str, type[e.DatabaseError]]] = {
    "SQLITE_BUSY": e.TransientError,
    "SQLITE_LOCKED": e.TransientError,
    "SQLITE_CANTOPEN": e.ConnectionFailedError,
    "SQLITE_READONLY": e.ProgrammingError,
    "SQLITE_ERROR": e.ProgrammingError,
    "SQLITE_MISMATCH": e.DataError,
    "SQLITE_TOOBIG": e.DataError,
    "SQLITE_RANGE": e.ParameterError,
}
_PEP249: Final[dict[str, type[e.DatabaseError]]] = {
    "IntegrityError": e.IntegrityError,
    "DataError": e.DataError,
    "ProgrammingError": e.ProgrammingError,
    "NotSupportedError": e.NotSupportedError,
    "OperationalError": e.OperationalError,
    "InternalError": e.OperationalError,
    "InterfaceError": e.OperationalError,
}


def _codes(exc: BaseException) -> tuple[str | None, str | None, int | None]:
    """(SQLSTATE, SQLite code name, MySQL error number) as far as the driver tells."""
    sqlstate = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    sqlite_name = getattr(exc, "sqlite_errorname", None)
    args = getattr(exc, "args", ())
    errno = args[0] if args and isinstance(args[0], int) and not isinstance(args[0], bool) else None
    if isinstance(exc, OSError):
        errno = None  # an operating system errno (111: connection refused), not a server error number
    return (
        sqlstate if isinstance(sqlstate, str) and sqlstate else None,
        sqlite_name if isinstance(sqlite_name, str) else None,
        errno,
    )


def error_classes(*subclasses: type[e.DatabaseError]) -> Mapping[type[e.DatabaseError], type[e.DatabaseError]]:
    """A driver's ``error_classes``: each subclass is raised instead of the engine's error it
    derives from (one of :data:`REPLACEABLE_ERRORS`), e.g. to make it catchable as the driver
    library's own too: ``class MyPoolTimeout(PoolTimeoutError, mylib.TimeoutError)``."""
    found: dict[type[e.DatabaseError], type[e.DatabaseError]] = {}
    for cls in subclasses:
        bases = [base for base in REPLACEABLE_ERRORS if issubclass(cls, base)]
        if not bases:
            raise TypeError(f"{cls.__name__} derives from none of {', '.join(b.__name__ for b in REPLACEABLE_ERRORS)}")
        found[bases[0]] = cls
    return found


def driver_error_code(exc: BaseException) -> str | None:
    """The server's error code as text: SQLSTATE, SQLite code name or MySQL error number."""
    sqlstate, sqlite_name, errno = _codes(exc)
    if errno is not None and (sqlstate is None or sqlstate.startswith("HY")):
        return str(errno)  # MySQL: HY000 means "some error"; the number says which
    return sqlstate or sqlite_name or (str(errno) if errno is not None else None)


def _classify(exc: BaseException) -> type[e.DatabaseError] | None:
    sqlstate, sqlite_name, errno = _codes(exc)
    found: type[e.DatabaseError] | None = None
    if sqlstate and len(sqlstate) == 5:
        found = _SQLSTATE_EXACT.get(sqlstate) or _SQLSTATE_CLASS.get(sqlstate[:2])
    if found is None and sqlite_name:
        if sqlite_name.startswith("SQLITE_CONSTRAINT"):
            return e.IntegrityError
        # Extended codes (SQLITE_BUSY_SNAPSHOT) share the primary code's meaning.
        found = _SQLITE.get(sqlite_name) or _SQLITE.get("_".join(sqlite_name.split("_")[:2]))
    if found is None and errno is not None:
        found = _MYSQL.get(errno)
    if found:
        return found
    for klass in type(exc).__mro__:
        found = _PEP249.get(klass.__name__)
        if found:
            return found
    return None


def translate_error(
    exc: BaseException,
    *,
    backend: str,
    secrets: Secrets | None = None,
    connecting: bool = False,
    lost: bool = False,
    context: str = "",
    sql: str | None = None,
    params: object = None,
) -> e.DatabaseError:
    """The core error for a driver exception, message scrubbed of secrets.

    ``connecting``: the error happened while opening a connection.
    ``lost``: the backend saw the connection die (e.g. SQLAlchemy's
    ``connection_invalidated``); this wins over the code-based guess.
    ``sql`` and ``params``: the statement as the user wrote it, and its parameters: the
    message shows that SQL rather than the driver's translation of it, and names the
    parameter whose value could not be sent.
    The caller raises the result ``from exc`` so the driver error stays the cause.
    """
    if isinstance(exc, e.DatabaseError):
        return exc
    code = driver_error_code(exc)
    klass = _classify(exc)
    if lost:
        klass = e.ConnectionLostError
    elif connecting and (klass is None or not issubclass(klass, e.ConnectionFailedError)):
        klass = e.ConnectionFailedError
    elif klass is None:
        klass = e.OperationalError
    args: tuple[Any, ...] = getattr(exc, "args", ())
    # PyMySQL-style errors carry (errno, message); show the message, not the tuple.
    text = str(args[1]) if len(args) == 2 and isinstance(args[0], int) else str(exc)
    detail = " ".join(text.split()) or type(exc).__name__
    if sql is not None:
        detail = _with_statement(detail, sql, params)
    if klass is e.ConnectionLostError:
        prefix = "the database connection was lost; the transaction was not committed"
    elif klass is e.ConnectionFailedError:
        prefix = "could not connect to the database"
    else:
        prefix = ""
    message = f"{prefix}: {detail}" if prefix else detail
    if context:
        message = f"{context}: {message}"
    if code and code not in message:
        message += f" (code {code})"
    if secrets is not None:
        message = secrets.scrub(message)
        secrets.scrub_exception(exc)
    return klass(message, sqlstate=code, backend=backend)


#: libpq's echo of the statement it received (the translated SQL), with its caret line.
_SERVER_ECHO = re.compile(r"\s*LINE \d+: .*?\^")
#: Drivers' words for a value they cannot send: psycopg's, sqlite3's.
_CANNOT_SEND = re.compile(r"cannot adapt type '(?P<a>[^']+)'|binding parameter \S+: type '(?P<b>[^']+)'")
_SQL_SHOWN = 300


def _with_statement(detail: str, sql: str, params: object) -> str:
    text = _SERVER_ECHO.sub("", detail)
    m = _CANNOT_SEND.search(text)
    if m:
        name = _parameter_of_type(params, m.group("a") or m.group("b"))
        if name:
            text += f" (parameter {name})"
    shown = " ".join(str(sql).split())
    if len(shown) > _SQL_SHOWN:
        shown = shown[: _SQL_SHOWN - 3] + "..."
    return f"{text}; SQL: {shown}"


def _parameter_of_type(params: object, type_name: str) -> str | None:
    """``:name`` (or ``#n``) of the one parameter whose value is of ``type_name``, if just one is."""
    if isinstance(params, Mapping):
        found = [f":{key}" for key, value in params.items() if type(value).__name__ == type_name]
    elif isinstance(params, list | tuple):
        found = [f"#{i}" for i, value in enumerate(params, 1) if type(value).__name__ == type_name]
    else:
        return None
    return found[0] if len(found) == 1 else None
