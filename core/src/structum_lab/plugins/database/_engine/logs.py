"""The loggers of the engine, and ``echo=True``."""

from __future__ import annotations

import logging
import sys
from typing import Final

__all__ = ["SQL_LOG", "enable_echo", "log"]

log: Final = logging.getLogger("structum_lab.plugins.database")
#: Where ``echo=True`` logs statements (unless the driver logs them itself).
SQL_LOG: Final = logging.getLogger("structum_lab.plugins.database.sql")


def enable_echo() -> None:
    """``echo=True`` logs every statement to stdout, as SQLAlchemy's ``echo`` does."""
    if SQL_LOG.level == logging.NOTSET or SQL_LOG.level > logging.INFO:
        SQL_LOG.setLevel(logging.INFO)
    if not SQL_LOG.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        SQL_LOG.addHandler(handler)
