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

from ._integrations.fastapi import *  # noqa: F403 - this module is the public path of the integration
from ._integrations.fastapi import __all__  # noqa: F401 - re-exported
