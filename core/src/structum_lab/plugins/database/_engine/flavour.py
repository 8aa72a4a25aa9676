"""Which flavour of the code is running: the asyncio source, or the sync code generated from it.

``if ASYNC:  # ASYNC`` marks what only the asyncio source does; ``tools/sync_from_async.py``
keeps the ``else:`` branch (or nothing) in the sync module. A plain ``bool``, not a
literal, so that type checkers see both branches as reachable.
"""

from __future__ import annotations

__all__ = ["ASYNC"]

ASYNC: bool = True
