"""LISTEN/NOTIFY: what ``db.listen()`` yields."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Notification"]


@dataclass(frozen=True, slots=True)
class Notification:
    """One ``NOTIFY`` received: its channel, its payload (``""`` without one), the sender's server pid."""

    channel: str
    payload: str
    pid: int
