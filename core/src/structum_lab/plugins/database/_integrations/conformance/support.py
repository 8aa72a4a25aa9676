"""What the kit's sync and asyncio test classes share: capability marks, the database
opener, ``raises`` for ``async with``, and stand-ins for unreachable servers."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

import pytest

from ..._contract.errors import ConfigurationError
from ..._contract.features import Features
from ..._contract.url import DatabaseURL

__all__ = [
    "SECRET",
    "Opener",
    "async_fixture",
    "closed_port",
    "raises",
    "required_features",
    "requires",
    "silent_server",
    "unique_name",
    "url_at",
]

#: The password the kit puts into URLs of unreachable servers; it must never be shown.
SECRET = "s3cr3t-kit-pw"
_REQUIRES = "__structum_requires__"
_FLAGS = frozenset(f.name for f in dataclasses.fields(Features))

T = TypeVar("T")
E = TypeVar("E", bound=BaseException)

if TYPE_CHECKING:
    async_fixture = pytest.fixture
else:
    # The asyncio kit's fixtures are async: pytest-asyncio runs them (in its strict mode too).
    try:
        from pytest_asyncio import fixture as async_fixture
    except ImportError:  # the sync kit needs no pytest-asyncio
        async_fixture = pytest.fixture


def requires(*flags: str) -> Callable[[T], T]:
    """Mark a kit test as needing ``db.features.<flag>`` (e.g. ``"savepoints"``, ``"copy"``);
    where the backend's database says False (or an empty set), the test is skipped."""
    unknown = sorted(set(flags) - _FLAGS)
    if unknown:
        raise ConfigurationError(f"requires(): no Features flag named {', '.join(map(repr, unknown))}")

    def mark(test: T) -> T:
        setattr(test, _REQUIRES, (*getattr(test, _REQUIRES, ()), *flags))
        return test

    return mark


def required_features(test: object) -> tuple[str, ...]:
    """The flags :func:`requires` put on ``test``."""
    found: tuple[str, ...] = getattr(test, _REQUIRES, ())
    return found


class _HasFeatures(Protocol):
    @property
    def backend(self) -> str: ...
    @property
    def features(self) -> Features: ...


DB = TypeVar("DB", bound=_HasFeatures)


class Opener(Generic[DB]):
    """Opens databases through the backend's factory and remembers them, for shutdown.

    ``opener(**options)`` opens one at the test's URL, ``opener(url, **options)`` at another.
    The first database opened decides, from its ``features``, whether the test runs.
    """

    def __init__(self, factory: Callable[..., DB], url: str, requirements: tuple[str, ...]) -> None:
        self.url = url
        self.opened: list[DB] = []
        self._factory = factory
        self._requirements: tuple[str, ...] | None = requirements

    def __call__(self, url: str | None = None, /, **options: object) -> DB:
        db = self._factory(url or self.url, **options)
        self.opened.append(db)
        requirements, self._requirements = self._requirements, None
        missing = [flag for flag in requirements or () if not getattr(db.features, flag)]
        if missing:
            pytest.skip(f"the {db.backend} backend does not declare db.features.{missing[0]} on this database")
        return db


def url_at(
    base: str, port: int, *, user: str = "app", password: str = SECRET, database: str = "nowhere", hint: str = ""
) -> str:
    """A URL of ``base``'s scheme for a server of the test's own on 127.0.0.1; skips the test
    when ``base`` names no server (a file database), with ``hint`` on what to do about it."""
    parsed = DatabaseURL.parse(base)
    if parsed.host is None or parsed.is_conninfo:
        pytest.skip(f"the database URL names no server, and this test needs one{hint}")
    return f"{parsed.scheme}://{user}:{password}@127.0.0.1:{port}/{database}"


def closed_port() -> int:
    """A local TCP port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A listener that accepts connections and never answers (a hung host); yields its port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield int(sock.getsockname()[1])


def unique_name(prefix: str = "t") -> str:
    """A table name no other test uses."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


class raises(Generic[E]):
    """``pytest.raises`` that an ``async with`` statement can hold too, so that the asyncio
    source and its generated sync module both write one ``with`` statement."""

    def __init__(self, expected: type[E] | tuple[type[E], ...], *, match: str | None = None) -> None:
        self._context: AbstractContextManager[pytest.ExceptionInfo[E], bool] = pytest.raises(expected, match=match)

    def __enter__(self) -> pytest.ExceptionInfo[E]:
        return self._context.__enter__()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> bool:
        return self._context.__exit__(kind, exc, tb)

    async def __aenter__(self) -> pytest.ExceptionInfo[E]:
        return self.__enter__()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        return self.__exit__(kind, exc, tb)
