"""FastAPI integration: a lifespan that opens databases, dependencies, a health router.

Install FastAPI beside the package (``pip install "fastapi>=0.121"``; see docs/fastapi.md)::

    from typing import Annotated
    from fastapi import FastAPI
    from structum_lab.plugins.database import Connection
    from structum_lab.plugins.database.fastapi import DBTransaction, Transaction, database_lifespan, health_router

    app = FastAPI(lifespan=database_lifespan("primary_db", "replica_db"))
    app.include_router(health_router())

The implementation lives in ``_integrations/fastapi.py``.
"""

from ._integrations.fastapi import (
    DB,
    AsyncDB,
    AsyncDBTransaction,
    AsyncTransaction,
    DBTransaction,
    Transaction,
    async_database_dependency,
    async_db_transaction,
    async_transaction_dependency,
    database_dependency,
    database_lifespan,
    db_transaction,
    get_async_db,
    get_db,
    health_router,
    transaction_dependency,
)

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
