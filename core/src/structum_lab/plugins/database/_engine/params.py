"""Placeholder translation between the SQL users write and the paramstyle a driver accepts.

Every backend accepts ``:name`` placeholders with a mapping; the psycopg backend also takes
psycopg's ``%s`` / ``%(name)s`` and PostgreSQL's ``$1``. A :class:`Translator` rewrites each
distinct SQL string once, caches the result as a :class:`Statement`, and on every call only
checks and reshapes the parameters with :meth:`Statement.bind`.

Rules:

* Placeholders count only outside string literals, quoted identifiers, comments and
  dollar-quoted bodies; a :class:`SQLDialect` says which of those the SQL text can contain.
* ``:name`` (``[A-Za-z_][A-Za-z0-9_]*``) needs a ``:`` not preceded by ``:`` or an identifier
  character: ``a::int``, ``x:y`` and ``arr[1:2]`` are untouched, ``:a::int`` is ``:a`` + a cast.
* ``$1`` needs a ``$`` not preceded by an identifier character (``a$1`` is an identifier), and
  the numbers must run from ``$1`` without gaps.
* In ``%s`` / ``%(name)s`` input ``%%`` is a literal ``%`` (psycopg semantics); a ``%`` that
  starts neither is kept as a literal ``%`` and ``%s`` inside a literal stays text.
* One statement uses one style; mixing styles raises :class:`ParameterError`.
* Drivers that parse ``%`` whenever they get parameters (psycopg, pymysql) get every literal
  ``%`` doubled, inside literals and comments too, because they parse the whole text.
* SQL without placeholders is sent untouched and binds to ``None``: the backend then calls
  the driver without parameters, so no ``%`` is parsed at all.
* Missing names and wrong counts are errors whose messages name parameters and counts,
  never values (they may be secrets). Extra names in a mapping are ignored, as SQLAlchemy's
  ``text()``, psycopg and Django do (so one dict can serve several statements); a
  ``strict`` translator (the ``strict_params`` option) refuses them.
"""

from __future__ import annotations

import difflib
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from operator import itemgetter
from typing import Any, Literal, NoReturn, TypeAlias, cast

from .._contract.errors import ParameterError
from .sql_lexer import GENERIC, MYSQL, POSTGRESQL, SQLITE, SQLDialect, scan

__all__ = ["ASYNCPG", "GENERIC", "MYSQL", "POSTGRESQL", "PSYCOPG", "PSYCOPG_POSITIONAL", "PYMYSQL", "SQLITE", "SQLITE3"]
__all__ += ["Bound", "ParamTarget", "SQLDialect", "Statement", "Translator"]

Style: TypeAlias = Literal["none", "named", "pyformat", "format", "numeric_dollar"]
Bound: TypeAlias = Mapping[str, object] | Sequence[object] | None


@dataclass(frozen=True, slots=True)
class ParamTarget:
    """The paramstyles a DB-API driver accepts."""

    name: str
    named: Literal["pyformat", "named"] | None
    positional: Literal["format", "qmark", "numeric_dollar"]
    percent_escape: bool


PSYCOPG = ParamTarget("psycopg", "pyformat", "format", True)
#: psycopg with named placeholders sent as %s: psycopg reorders a dict into a tuple in
#: Python on every execution (+2.2 us per row of an executemany, measured), a cached
#: itemgetter does it in C. What the psycopg backend uses.
PSYCOPG_POSITIONAL = ParamTarget("psycopg", None, "format", True)
PYMYSQL = ParamTarget("pymysql", "pyformat", "format", True)
SQLITE3 = ParamTarget("sqlite3", "named", "qmark", False)
ASYNCPG = ParamTarget("asyncpg", None, "numeric_dollar", False)

_LABEL = {"named": ":name", "pyformat": "%(name)s", "format": "%s", "numeric_dollar": "$n"}
_POSITIONAL_MARK = {"format": "%s", "qmark": "?"}


class Statement:
    """One SQL string translated for one driver; build it with :meth:`Translator.prepare`.

    ``sql`` is what to send, ``style`` the placeholder style found in the input and ``names``
    the distinct parameter names in order of first appearance (named styles only).
    """

    __slots__ = ("names", "sql", "strict", "style")

    sql: str
    style: Style
    names: tuple[str, ...]
    #: Extra names in a parameter mapping are an error (else they are ignored).
    strict: bool

    def __init__(self, sql: str, style: Style, names: tuple[str, ...] = (), *, strict: bool = False) -> None:
        _init(self, sql=sql, style=style, names=names, strict=strict)

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"Statement is immutable; cannot set {name!r}")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"Statement is immutable; cannot delete {name!r}")

    def __repr__(self) -> str:
        return f"Statement(style={self.style!r}, names={self.names!r}, sql={self.sql!r})"

    def bind(self, params: object) -> Bound:
        """Check ``params`` against the placeholders and return what to pass to the driver."""
        raise NotImplementedError

    def bind_many(self, seq: Iterable[object]) -> list[Bound]:
        """:meth:`bind` every parameter set of an ``executemany``; errors say which one failed."""
        if isinstance(seq, str | bytes | bytearray | Mapping) or not isinstance(seq, Iterable):
            raise ParameterError(f"bind_many needs an iterable of parameter sets, got {type(seq).__name__}")
        bind = self.bind
        out: list[Bound] = []
        for index, params in enumerate(seq):
            try:
                out.append(bind(params))
            except ParameterError as exc:
                raise ParameterError(f"parameter set {index}: {exc.message}") from None
        return out


def _init(obj: Statement, **attrs: object) -> None:
    for key, value in attrs.items():
        object.__setattr__(obj, key, value)


class _NoParams(Statement):
    __slots__ = ()

    def bind(self, params: object) -> None:
        if params is None:
            return None
        if isinstance(params, Mapping | list | tuple):
            if not params or (isinstance(params, Mapping) and not self.strict):
                return None
            given = "keys " + ", ".join(map(repr, params)) if isinstance(params, Mapping) else f"{len(params)} values"
        else:
            given = f"a {type(params).__name__}"
        raise ParameterError(f"the SQL has no placeholders but parameters were given: {given}")


class _Named(Statement):
    """Mapping in, the same mapping out (the driver takes named parameters)."""

    __slots__ = ("_keys",)
    _keys: frozenset[str]

    def __init__(self, sql: str, style: Style, names: tuple[str, ...], *, strict: bool = False) -> None:
        super().__init__(sql, style, names, strict=strict)
        _init(self, _keys=frozenset(names))

    def bind(self, params: object) -> Bound:
        # The hot path: one type test and one set comparison.
        if type(params) is dict and params.keys() == self._keys:
            return params
        return self._check(params)

    def _check(self, params: object) -> Mapping[str, Any]:
        shown = [self._show(n) for n in self.names]
        if params is None:
            raise ParameterError(f"missing parameter{_s(len(shown))} {', '.join(shown)}: none were given; pass a dict")
        if not isinstance(params, Mapping):
            keys = ", ".join(repr(n) for n in self.names)
            raise ParameterError(
                f"parameters for {_LABEL[self.style]} placeholders must be a mapping such as a dict, "
                f"got {type(params).__name__}; pass a dict with keys {keys}"
            )
        given = params.keys()
        missing = [n for n in self.names if n not in given]
        unknown = [k for k in given if k not in self._keys] if self.strict or missing else []
        extra = unknown if self.strict else []
        if missing or extra:
            problems = []
            if missing:
                candidates = [str(k) for k in unknown]
                parts = []
                for name in missing:
                    close = difflib.get_close_matches(name, candidates, n=1)
                    parts.append(self._show(name) + (f" (did you mean {close[0]!r}?)" if close else ""))
                problems.append(f"missing parameter{_s(len(missing))} {', '.join(parts)}")
            if extra:
                problems.append(
                    f"unexpected parameter{_s(len(extra))} {', '.join(map(repr, extra))}"
                    " (no such placeholder in the SQL)"
                )
            raise ParameterError("; ".join(problems))
        if len(given) != len(self._keys):  # extra names, ignored: the driver gets exactly its own
            return {name: params[name] for name in self.names}
        # pymysql only takes a real dict for %(name)s, so other mappings are copied once.
        return params if isinstance(params, dict) else dict(params)

    def _show(self, name: str) -> str:
        return f"%({name})s" if self.style == "pyformat" else f":{name}"


class _NamedToPositional(_Named):
    """Mapping in, tuple out, for drivers without named parameters (asyncpg)."""

    __slots__ = ("_pick",)
    _pick: Callable[[Any], tuple[Any, ...]]

    def __init__(
        self, sql: str, style: Style, names: tuple[str, ...], order: Sequence[str], *, strict: bool = False
    ) -> None:
        super().__init__(sql, style, names, strict=strict)
        _init(self, _pick=_picker(order))

    def bind(self, params: object) -> Bound:
        if type(params) is dict and params.keys() == self._keys:
            return self._pick(params)
        return self._pick(self._check(params))


class _Positional(Statement):
    """Sequence in, the same sequence out."""

    __slots__ = ("_count",)
    _count: int

    def __init__(self, sql: str, style: Style, count: int) -> None:
        super().__init__(sql, style)
        _init(self, _count=count)

    def bind(self, params: object) -> Bound:
        if (type(params) is tuple or type(params) is list) and len(params) == self._count:
            return params
        return self._check(params)

    def _check(self, params: object) -> Sequence[Any]:
        label = _LABEL[self.style]
        if params is None:
            raise ParameterError(
                f"missing parameters: expected {self._count} value{_s(self._count)} for {label} placeholders, "
                "got none; pass a tuple or list"
            )
        if isinstance(params, list | tuple):
            if len(params) != self._count:
                raise ParameterError(
                    f"expected {self._count} parameter{_s(self._count)} for {label} placeholders, got {len(params)}"
                )
            return params
        hint = "for one value write (value,)"
        if isinstance(params, Mapping):
            hint = "a mapping needs named placeholders such as :name"
        raise ParameterError(
            f"parameters for {label} placeholders must be a tuple or list, got {type(params).__name__}; {hint}"
        )


class _Reordered(_Positional):
    """Sequence in, tuple out, when ``$n`` order differs from the driver's left-to-right order."""

    __slots__ = ("_pick",)
    _pick: Callable[[Any], tuple[Any, ...]]

    def __init__(self, sql: str, style: Style, count: int, order: Sequence[int]) -> None:
        super().__init__(sql, style, count)
        _init(self, _pick=_picker(order))

    def bind(self, params: object) -> Bound:
        if (type(params) is tuple or type(params) is list) and len(params) == self._count:
            return self._pick(params)
        return self._pick(self._check(params))


def _s(count: int) -> str:
    return "" if count == 1 else "s"


def _picker(keys: Sequence[Any]) -> Callable[[Any], tuple[Any, ...]]:
    if len(keys) == 1:
        key = keys[0]
        return lambda p: (p[key],)
    # itemgetter of two or more keys returns a tuple and runs in C.
    return itemgetter(*keys)


# --- translation ---------------------------------------------------------------------------


def _compile(sql: str, dialect: SQLDialect, target: ParamTarget, strict: bool = False) -> Statement:
    texts, holders = scan(sql, dialect)
    if not holders:
        return _NoParams(sql, "none", strict=strict)
    kinds = {kind for kind, _ in holders}
    if len(kinds) > 1:
        found = " and ".join(_LABEL[k] for k in ("named", "pyformat", "format", "numeric_dollar") if k in kinds)
        raise ParameterError(f"the SQL mixes placeholder styles {found}; use one style per statement")
    style = cast("Style", holders[0][0])

    # psycopg/pymysql read %% as % once they have parameters; others take % literally.
    if style in ("pyformat", "format"):
        texts = [t.replace("%%", "%") for t in texts]
    if target.percent_escape:
        texts = [t.replace("%", "%%") for t in texts]

    marks: list[str]
    if style in ("named", "pyformat"):
        index: dict[str, int] = {}
        occurrence = [index.setdefault(name, len(index)) for _, name in holders]
        names = tuple(index)
        if target.named is not None:
            marks = [f"%({n})s" if target.named == "pyformat" else f":{n}" for _, n in holders]
            stmt: Statement = _Named(_render(sql, texts, marks), style, names, strict=strict)
        elif target.positional == "numeric_dollar":
            marks = [f"${i + 1}" for i in occurrence]
            stmt = _NamedToPositional(_render(sql, texts, marks), style, names, names, strict=strict)
        else:
            marks = [_POSITIONAL_MARK[target.positional]] * len(holders)
            picks = [names[i] for i in occurrence]
            stmt = _NamedToPositional(_render(sql, texts, marks), style, names, picks, strict=strict)
        return stmt

    if style == "format":
        occurrence = list(range(len(holders)))
    else:
        occurrence = [int(num) - 1 for _, num in holders]
        if min(occurrence) < 0:
            raise ParameterError("$0 is not a valid placeholder; numbering starts at $1")
    count = max(occurrence) + 1
    if len(set(occurrence)) != count:
        absent = sorted(set(range(1, min(count, 1000) + 1)) - {i + 1 for i in occurrence})
        raise ParameterError(
            f"$n placeholders must be numbered from $1 without gaps; missing {', '.join(f'${i}' for i in absent[:10])}"
        )
    if target.positional == "numeric_dollar":
        marks = [f"${i + 1}" for i in occurrence]
        order = list(range(count))
    else:
        marks = [_POSITIONAL_MARK[target.positional]] * len(holders)
        order = occurrence
    out = _render(sql, texts, marks)
    if order == list(range(count)):
        return _Positional(out, style, count)
    return _Reordered(out, style, count, order)


def _render(sql: str, texts: list[str], marks: list[str]) -> str:
    parts = [texts[0]]
    for mark, text in zip(marks, texts[1:], strict=True):
        parts += (mark, text)
    out = "".join(parts)
    # Handing back the caller's own object keeps "nothing changed" visible as identity.
    return sql if out == sql else out


class Translator:
    """Translates SQL for one dialect and one driver, caching a :class:`Statement` per SQL string."""

    __slots__ = ("_cache", "_lock", "_lookup", "cache_size", "dialect", "strict", "target")

    def __init__(
        self, dialect: SQLDialect, target: ParamTarget, *, cache_size: int = 2048, strict: bool = False
    ) -> None:
        if cache_size < 1:
            raise ValueError(f"cache_size must be at least 1, got {cache_size}")
        self.dialect = dialect
        self.target = target
        self.cache_size = cache_size
        #: Extra names in parameter mappings are errors (``strict_params``).
        self.strict = strict
        self._cache: dict[str, Statement] = {}
        # Bound once: eviction deletes in place, so this stays the live cache's get.
        self._lookup = self._cache.get
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Translator({self.dialect.name!r} -> {self.target.name!r}, {len(self._cache)} cached)"

    def strict_twin(self) -> Translator:
        """The same translation, refusing extra names in parameter mappings (its own cache)."""
        return Translator(self.dialect, self.target, cache_size=self.cache_size, strict=True)

    def prepare(self, sql: str) -> Statement:
        """The cached :class:`Statement` for ``sql``, translating it on first use."""
        try:
            stmt = self._lookup(sql)
        except TypeError:  # unhashable: _miss reports the wrong type
            stmt = None
        return self._miss(sql) if stmt is None else stmt

    def __call__(self, sql: str, params: object = None) -> tuple[str, Bound]:
        """``(sql, params)`` ready for the driver's ``execute``."""
        try:
            stmt = self._lookup(sql)
        except TypeError:
            stmt = None
        if stmt is None:
            stmt = self._miss(sql)
        return stmt.sql, stmt.bind(params)

    def _miss(self, sql: object) -> Statement:
        if not isinstance(sql, str):
            raise ParameterError(f"SQL must be a str, got {type(sql).__name__}")
        stmt = _compile(sql, self.dialect, self.target, self.strict)
        with self._lock:
            cache = self._cache
            if len(cache) >= self.cache_size:
                # Dropping the older half (dicts keep insertion order) amortises eviction;
                # readers never lock, and a concurrent get at worst misses and recompiles.
                for key in list(islice(cache, max(1, len(cache) // 2))):
                    del cache[key]
            cache[sql] = stmt
        return stmt
