"""FastAPI integration: a lifespan that opens databases, dependencies, a health router.

Needs FastAPI: ``pip install "fastapi>=0.121"`` (the ``fastapi`` extra; docs/install.md)::

    from typing import Annotated
    from fastapi import FastAPI
    from structum_lab.plugins.database import Connection
    from structum_lab.plugins.database.fastapi import DBTransaction, Transaction, database_lifespan, health_router

    app = FastAPI(lifespan=database_lifespan("primary_db", "replica_db"))
    app.include_router(health_router())

    @app.post("/users")
    def create_user(conn: DBTransaction) -> dict[str, int]:        # primary_db (the default)
        return {"id": conn.execute("INSERT INTO users ... RETURNING id").scalar()}

    @app.get("/users")
    def list_users(conn: Annotated[Connection, Transaction("replica_db")]) -> list[dict[str, object]]:
        return conn.execute("SELECT * FROM users").fetchall()

Sync databases go with sync (``def``) handlers and dependencies, which FastAPI runs
in its threadpool; async databases with ``async def`` ones. See docs/fastapi.md.
"""

from __future__ import annotations

import inspect
import logging
import threading
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal, TypeVar, cast

try:
    import anyio
    import anyio.to_thread
    import fastapi
    from fastapi import APIRouter, Depends, params
    from fastapi.responses import JSONResponse
except ModuleNotFoundError as exc:  # pragma: no cover - exercised in a subprocess test
    if exc.name is not None and exc.name.partition(".")[0] in {"fastapi", "starlette", "anyio", "pydantic"}:
        raise ImportError(
            "structum_lab.plugins.database.fastapi needs FastAPI, which is not installed; "
            'install it with: pip install "fastapi>=0.121" (the fastapi extra, see docs/install.md)',
            name=exc.name,
        ) from exc
    raise

from structum_lab.config import ConfigProvider

from .._config.instances import DEFAULT_NAME, get_async_database, get_database
from .._contract.errors import ConfigurationError
from .._contract.protocols import AsyncConnection, AsyncDatabaseInterface, Connection, DatabaseInterface
from .fastapi_health import HEALTH_JSON, HealthMedia, check_databases, is_async_database, render_health, select_targets
from .fastapi_lifespan import AppDatabases, LifespanFactory, as_lifespan

__all__ = [
    "DB",
    "AsyncDB",
    "AsyncDBTransaction",
    "AsyncTransaction",
    "DBTransaction",
    "Transaction",
    "async_database_dependency",
    "async_db_transaction",
    "async_transaction_dependency",
    "database_dependency",
    "database_lifespan",
    "db_transaction",
    "get_async_db",
    "get_db",
    "health_router",
    "transaction_dependency",
]

log = logging.getLogger("structum_lab.plugins.database")

_T = TypeVar("_T")

# ``Depends(..., scope="function")`` (FastAPI >= 0.121) ends a yield dependency before the
# response is sent, so a failed commit becomes a 500. Older FastAPI has no ``scope``.
_HAS_SCOPE = "scope" in inspect.signature(Depends).parameters
if not _HAS_SCOPE and tuple(int(p) for p in fastapi.__version__.split(".")[:2]) >= (0, 118):  # pragma: no cover
    # 0.106-0.117 ended yield dependencies before sending the response; 0.118-0.120 after it.
    warnings.warn(
        f"FastAPI {fastapi.__version__} runs the end of yield dependencies after the response is sent and "
        "has no Depends(scope='function'): a commit that fails in Transaction() cannot turn the response "
        "into a 500. Upgrade to FastAPI >= 0.121.",
        RuntimeWarning,
        stacklevel=2,
    )


# -- lifespan ----------------------------------------------------------------------------


def database_lifespan(
    *namespaces: str,
    default: str | Literal[False] | None = None,
    async_: bool = False,
    lifespan: Callable[[Any], Any] | None = None,
    provider: ConfigProvider | None = None,
) -> LifespanFactory:
    """A lifespan for ``FastAPI(lifespan=...)`` that opens databases from configuration.

    At startup each namespace (``"database"`` when none is given) is opened with
    :func:`~structum_lab.plugins.database.from_config` (``from_config_async`` when
    ``async_=True``) and registered with ``set_database(db, namespace)``. One of them is
    also registered as the default (what ``get_database()`` and :func:`get_db` return):
    ``default`` names which, the first namespace when omitted, none when ``False``.

    If one fails to open, those already opened are shut down and the error is raised
    with a note naming the namespace. At shutdown every database is shut down (sync
    ones in a worker thread, async ones awaited) and its registration removed (a
    registration it replaced is put back).

    ``lifespan`` is your own lifespan (async context manager factory, async generator
    or generator function, as FastAPI accepts); it runs inside, with the databases
    open, and the state it yields is the app's lifespan state. Lifespans nest the same
    way, e.g. to mix sync and async databases::

        database_lifespan("analytics", async_=True, default=False, lifespan=database_lifespan("primary_db"))
    """
    names = namespaces or ("database",)
    if len(set(names)) != len(names):
        raise ConfigurationError(f"database_lifespan(): namespace listed twice in {names!r}")
    if default is None:
        default_name: str | None = names[0]
    elif default is False:
        default_name = None
    elif default in names:
        default_name = default
    else:
        raise ConfigurationError(
            f"database_lifespan(default={default!r}): not one of the namespaces {', '.join(map(repr, names))}"
        )
    inner = as_lifespan(lifespan) if lifespan is not None else None

    @asynccontextmanager
    async def structum_database_lifespan(app: Any) -> AsyncIterator[Any]:
        databases = AppDatabases(names, default_name, async_=async_, provider=provider)
        await databases.open()
        try:
            if inner is None:
                yield None
            else:
                async with inner(app) as state:
                    yield state
        finally:
            await databases.close()

    return structum_database_lifespan


# -- dependencies ------------------------------------------------------------------------


async def get_db() -> DatabaseInterface:
    """The default database: ``db: DatabaseInterface = Depends(get_db)``.

    A registry lookup (no I/O), so it is ``async`` and costs no threadpool hop; it
    returns whatever is registered, sync or async. Use :func:`get_async_db` for the
    async-typed twin and :func:`database_dependency` for a named database.
    """
    return get_database()


async def get_async_db() -> AsyncDatabaseInterface:
    """The default database typed as asyncio: ``db: AsyncDatabaseInterface = Depends(get_async_db)``."""
    return get_async_database()


_made: dict[tuple[Callable[[str], Any], str], Any] = {}
_made_lock = threading.Lock()


def _once(make: Callable[[str], _T], name: str) -> _T:
    """One dependency callable per name, so FastAPI's per-request cache shares it."""
    with _made_lock:
        key = (make, name)
        if key not in _made:
            _made[key] = make(name)
        return cast("_T", _made[key])


def database_dependency(name: str = DEFAULT_NAME) -> Callable[[], Awaitable[DatabaseInterface]]:
    """A dependency returning the database registered under ``name``:
    ``db: DatabaseInterface = Depends(database_dependency("replica_db"))``.

    Cached: the same ``name`` gives the same callable.
    """
    return _once(_make_database_dependency, name)


def _make_database_dependency(name: str) -> Callable[[], Awaitable[DatabaseInterface]]:
    async def get_named_db() -> DatabaseInterface:
        return get_database(name)

    get_named_db.__qualname__ = f"database_dependency({name!r})"
    return get_named_db


def async_database_dependency(name: str = DEFAULT_NAME) -> Callable[[], Awaitable[AsyncDatabaseInterface]]:
    """The async-typed twin of :func:`database_dependency`."""
    return _once(_make_async_database_dependency, name)


def _make_async_database_dependency(name: str) -> Callable[[], Awaitable[AsyncDatabaseInterface]]:
    async def get_named_async_db() -> AsyncDatabaseInterface:
        return get_async_database(name)

    get_named_async_db.__qualname__ = f"async_database_dependency({name!r})"
    return get_named_async_db


def _sync_database(name: str) -> DatabaseInterface:
    db = get_database(name)
    if is_async_database(db):
        raise ConfigurationError(
            f"database {name!r} is asynchronous ({type(db).__name__}); use AsyncTransaction({name!r}) "
            "or async_transaction_dependency() with an async def handler"
        )
    return db


def _async_database(name: str) -> AsyncDatabaseInterface:
    db = get_async_database(name)
    if not is_async_database(db):
        raise ConfigurationError(
            f"database {name!r} is synchronous ({type(db).__name__}); use Transaction({name!r}) "
            "or transaction_dependency() (a sync dependency FastAPI runs in its threadpool)"
        )
    return db


def transaction_dependency(name: str = DEFAULT_NAME) -> Callable[[], Iterator[Connection]]:
    """A per-request transaction on the sync database ``name``, as a FastAPI ``yield`` dependency.

    Commits after the handler returns, rolls back if anything raised. Declare it with
    ``Depends(..., scope="function")`` (or use :func:`Transaction`, which does) so that
    the commit happens before the response is sent: a failed commit then answers 500.

    A plain ``def``: FastAPI runs its setup and its teardown in threadpool workers,
    possibly two different threads, so it manages the connection explicitly
    (``get_connection``/``commit``/``rollback``/``close``) rather than spanning the
    ``yield`` with ``db.transaction()``, whose nesting is tracked per thread.
    Cached: the same ``name`` gives the same callable (one connection per request).
    """
    return _once(_make_transaction_dependency, name)


def _make_transaction_dependency(name: str) -> Callable[[], Iterator[Connection]]:
    def db_transaction() -> Iterator[Connection]:
        conn = _sync_database(name).get_connection()
        try:
            yield conn
        except BaseException:
            try:
                conn.rollback()
            except Exception:
                log.debug("rollback of the request transaction on %r failed", name, exc_info=True)
            raise
        else:
            conn.commit()
        finally:
            conn.close()

    db_transaction.__qualname__ = f"transaction_dependency({name!r})"
    return db_transaction


def async_transaction_dependency(name: str = DEFAULT_NAME) -> Callable[[], AsyncIterator[AsyncConnection]]:
    """The asyncio twin of :func:`transaction_dependency`, for ``async def`` handlers."""
    return _once(_make_async_transaction_dependency, name)


def _make_async_transaction_dependency(name: str) -> Callable[[], AsyncIterator[AsyncConnection]]:
    async def async_db_transaction() -> AsyncIterator[AsyncConnection]:
        conn = await _async_database(name).get_connection()
        try:
            yield conn
        except BaseException:
            with anyio.CancelScope(shield=True):
                try:
                    await conn.rollback()
                except Exception:
                    log.debug("rollback of the request transaction on %r failed", name, exc_info=True)
            raise
        else:
            await conn.commit()
        finally:
            with anyio.CancelScope(shield=True):
                await conn.close()

    async_db_transaction.__qualname__ = f"async_transaction_dependency({name!r})"
    return async_db_transaction


def _function_scoped(dependency: Callable[..., Any]) -> params.Depends:
    if _HAS_SCOPE:
        return cast("params.Depends", Depends(dependency, scope="function"))
    return cast("params.Depends", Depends(dependency))  # pragma: no cover - FastAPI < 0.121


def Transaction(name: str = DEFAULT_NAME) -> params.Depends:
    """``Depends`` on a per-request transaction of the sync database ``name``, function-scoped:
    ``conn: Annotated[Connection, Transaction("replica_db")]``."""
    return _function_scoped(transaction_dependency(name))


def AsyncTransaction(name: str = DEFAULT_NAME) -> params.Depends:
    """The asyncio twin of :func:`Transaction`: ``conn: Annotated[AsyncConnection, AsyncTransaction()]``."""
    return _function_scoped(async_transaction_dependency(name))


#: The default database's request transaction as plain dependency callables.
db_transaction = transaction_dependency(DEFAULT_NAME)
async_db_transaction = async_transaction_dependency(DEFAULT_NAME)

#: Ready-made parameter types: ``def handler(db: DB)``, ``def handler(conn: DBTransaction)``.
DB = Annotated[DatabaseInterface, Depends(get_db)]
AsyncDB = Annotated[AsyncDatabaseInterface, Depends(get_async_db)]
DBTransaction = Annotated[Connection, Transaction()]
AsyncDBTransaction = Annotated[AsyncConnection, AsyncTransaction()]


# -- health ------------------------------------------------------------------------------


def health_router(
    path: str = "/health",
    *,
    names: Sequence[str] | None = None,
    media: HealthMedia = "json",
    tags: Sequence[str] | None = ("health",),
    include_in_schema: bool = True,
) -> APIRouter:
    """An ``APIRouter`` with ``GET <path>``: the health of the registered databases.

    ``names`` limits the report to those registrations (each one that is missing is
    reported unhealthy); by default every registered database is checked once, under
    its own name. All are checked concurrently: async ones awaited, sync ones in
    worker threads. HTTP 200 when all are healthy or some degraded, 503 when any is
    unhealthy (or none is registered).

    ``media="json"`` answers the spec's shape, ``{"status": "healthy", "databases":
    {name: {"status", "latency_ms", "message"}}}`` plus ``"database"`` when there is
    exactly one. ``media="health+json"`` answers ``application/health+json``
    (draft-inadarei-api-health-check): ``status`` pass/warn/fail and one
    ``"<name>:responseTime"`` check per database with the latency in ms.
    """
    if media not in ("json", "health+json"):
        raise ConfigurationError(f"health_router(media={media!r}): use 'json' or 'health+json'")
    selected = tuple(names) if names is not None else None
    media_type = HEALTH_JSON if media == "health+json" else "application/json"
    router = APIRouter()

    @router.get(
        path,
        summary="Database health",
        tags=list(tags) if tags else None,
        include_in_schema=include_in_schema,
        response_class=JSONResponse,
        responses={200: {"content": {media_type: {}}}, 503: {"description": "A database is unhealthy"}},
    )
    async def database_health() -> JSONResponse:
        results = await check_databases(select_targets(selected))
        body, status_code = render_health(results, media)
        return JSONResponse(body, status_code=status_code, media_type=media_type, headers={"Cache-Control": "no-store"})

    return router
