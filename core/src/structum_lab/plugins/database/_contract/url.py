"""Database URLs: parsing the scheme that selects a backend, and masking secrets.

Core does not depend on SQLAlchemy, so it has its own small parser for the RFC 3986
shape ``dialect+driver://user:password@host:port/database?key=value``. libpq
key/value strings (``host=db user=app password=...``) are accepted too, since psycopg
users write them; they have no scheme and are treated as ``postgresql``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from .errors import ConfigurationError

__all__ = ["SECRET_KEYS", "DatabaseURL", "mask_url"]

#: Query-string and connect-argument keys whose values are secrets.
SECRET_KEYS = frozenset(
    {"password", "passwd", "pwd", "pass", "secret", "sslpassword", "token", "api_key", "apikey", "access_token"}
)

MASK = "***"

_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://")
_CONNINFO = re.compile(r"^\s*[A-Za-z_]+\s*=")
_CONNINFO_SECRET = re.compile(
    r"(?P<key>\b(?:" + "|".join(sorted(SECRET_KEYS)) + r")\s*=\s*)(?P<val>'(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE
)
_URL_IN_TEXT = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@'\"]*:)(?P<pw>[^\s@'\"]*)(?P<at>@)")
_QUERY_SECRET = re.compile(
    r"(?P<key>[?&](?:" + "|".join(sorted(SECRET_KEYS)) + r")=)(?P<val>[^&#\s'\"]*)", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class DatabaseURL:
    """A parsed database URL. ``repr()`` and ``str()`` never show secrets.

    Use :meth:`render` with ``hide_password=False`` to get the connectable string.
    """

    _raw: str = field(repr=False)
    scheme: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    host: str | None = None
    port: int | None = None
    database: str | None = None
    query: tuple[tuple[str, str], ...] = ()
    is_conninfo: bool = False
    #: Every (host, port) of a libpq multi-host URL (``h1:5432,h2:5432``); empty for one host.
    #: ``host`` then lists the names joined by commas and ``port`` is None.
    hosts: tuple[tuple[str, int | None], ...] = ()

    @classmethod
    def parse(cls, url: str | DatabaseURL) -> DatabaseURL:
        if isinstance(url, DatabaseURL):
            return url
        if not isinstance(url, str):
            raise ConfigurationError(
                f"a database URL must be a string such as 'postgresql://user@host/db', got {type(url).__name__}"
            )
        text = url.strip()
        if not text:
            raise ConfigurationError(
                "the database URL is empty; set it like 'sqlite:///app.db' or 'postgresql://user@host:5432/db'"
            )
        m = _SCHEME.match(text)
        if m is None:
            if _CONNINFO.match(text):
                return cls._parse_conninfo(text)
            raise ConfigurationError(
                f"{_shown(text)!r} is not a database URL: it has no scheme; "
                "write it as 'dialect[+driver]://user:password@host:port/database', "
                "for example 'postgresql://app@127.0.0.1:5432/app' or 'sqlite:///app.db'"
            )
        scheme = m.group("scheme").lower()
        try:
            # No fragments: libpq reads '#' as part of a value (a password), and so do we.
            parts = urlsplit(text, allow_fragments=False)
            hosts = _host_list(parts.netloc.rpartition("@")[2])
            port = None if hosts else parts.port
        except ValueError as exc:
            raise ConfigurationError(f"cannot parse database URL {_shown(text)!r}: {_safe_reason(exc)}") from None
        if parts.netloc.count("@") > 1:
            # Python splits at the last '@', libpq at the first: the drivers would disagree on
            # where the password ends (and echo the rest as a host name in their errors).
            shown = f"{scheme}://***@{parts.netloc.rpartition('@')[2]}/..."  # nothing of the user part
            raise ConfigurationError(
                f"cannot parse database URL {shown!r}: the user name or password contains '@'; percent-encode it as %40"
            )
        path = parts.path
        if scheme.startswith("sqlite"):
            # sqlite:///relative.db, sqlite:////abs/path.db, sqlite:// (memory)
            database = unquote(path[1:]) if path.startswith("/") else unquote(path) or None
        else:
            database = unquote(path.lstrip("/")) or None
        return cls(
            _raw=text,
            scheme=scheme,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            host=",".join(h for h, _ in hosts) if hosts else parts.hostname,
            port=port,
            database=database,
            query=tuple(parse_qsl(parts.query, keep_blank_values=True)),
            hosts=hosts,
        )

    @classmethod
    def _parse_conninfo(cls, text: str) -> DatabaseURL:
        values: dict[str, str] = {}
        for m in re.finditer(r"(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", text):
            val = m.group(2)
            if val.startswith("'"):
                val = re.sub(r"\\(.)", r"\1", val[1:-1])
            values[m.group(1).lower()] = val
        port = values.get("port")
        host = values.get("host") or values.get("hostaddr")
        hosts: tuple[tuple[str, int | None], ...] = ()
        if host and "," in host:
            ports = (port or "").split(",")
            names = host.split(",")
            ports = ports if len(ports) == len(names) else [ports[0]] * len(names)
            hosts = tuple((h, int(p) if p.isdigit() else None) for h, p in zip(names, ports, strict=True))
        return cls(
            _raw=text,
            scheme="postgresql",
            username=values.get("user"),
            password=values.get("password"),
            host=host,
            port=int(port) if port and port.isdigit() else None,
            database=values.get("dbname"),
            query=tuple((k, v) for k, v in values.items() if k not in {"user", "password", "host", "port", "dbname"}),
            is_conninfo=True,
            hosts=hosts,
        )

    # -- derived ------------------------------------------------------------------------

    @property
    def dialect(self) -> str:
        """``postgresql`` for ``postgresql+psycopg://...``."""
        return self.scheme.partition("+")[0]

    @property
    def driver(self) -> str | None:
        """``psycopg`` for ``postgresql+psycopg://...``, ``None`` for a bare dialect."""
        return self.scheme.partition("+")[2] or None

    def query_dict(self) -> dict[str, str]:
        return dict(self.query)

    def secrets(self) -> tuple[str, ...]:
        """Every secret value the URL carries (password, ``?password=``, ...), decoded and as
        written (drivers echo either form in their errors)."""
        found = [self.password] if self.password else []
        found += [v for k, v in self.query if k.lower() in SECRET_KEYS and v]
        if not self.is_conninfo:
            found += [raw for raw in _raw_secret_spans(self._raw) if raw]
        return tuple(dict.fromkeys(found))

    def render(self, *, hide_password: bool = True) -> str:
        if not hide_password:
            return self._raw
        if self.is_conninfo:
            return mask_url(self._raw)
        # By structure, not only by pattern: a password with quotes, spaces or '%' escapes
        # defeats a regular expression, never the split at '@' that the parser itself made.
        return _mask_positions(self._raw)

    def with_scheme(self, scheme: str) -> DatabaseURL:
        """The same URL under another scheme (e.g. to pick a SQLAlchemy driver)."""
        if self.is_conninfo:
            raise ConfigurationError("a libpq key=value string cannot be given a driver; write it as a URL")
        rest = self._raw.split("://", 1)[1]
        return DatabaseURL.parse(f"{scheme}://{rest}")

    def without_query_keys(self, *keys: str) -> DatabaseURL:
        """The same URL with the given query parameters removed."""
        if not self.query or self.is_conninfo:
            return self
        drop = {k.lower() for k in keys}
        head, _, _ = self._raw.partition("?")
        kept = [(k, v) for k, v in self.query if k.lower() not in drop]
        query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in kept)
        return DatabaseURL.parse(f"{head}?{query}" if query else head)

    def with_query(self, key: str, value: str) -> DatabaseURL:
        """The same URL with the query parameter (libpq: the keyword) ``key`` set to ``value``."""
        if self.is_conninfo:
            kept = re.sub(rf"(?:^|\s){re.escape(key)}\s*=\s*(?:'(?:[^'\\]|\\.)*'|\S+)", "", self._raw)
            return DatabaseURL.parse(f"{kept.strip()} {key}={value}")
        head = self.without_query_keys(key)._raw
        joiner = "&" if "?" in head else "?"
        return DatabaseURL.parse(f"{head}{joiner}{quote(key, safe='')}={quote(value, safe='')}")

    def with_hosts_in_query(self) -> DatabaseURL:
        """libpq's multi-host form ``h1:5432,h2:5433`` moved into the query as
        ``?host=h1:5432&host=h2:5433``, the form SQLAlchemy's PostgreSQL dialects read
        (the same URL for one host)."""
        if not self.hosts or self.is_conninfo:
            return self
        head, _, rest = self._raw.partition("://")
        cut = min((i for i in (rest.find("/"), rest.find("?")) if i != -1), default=len(rest))
        userinfo, at, _ = rest[:cut].rpartition("@")
        path, mark, query = rest[cut:].partition("?")
        extra = "&".join(f"host={h}:{p}" if p else f"host={h}" for h, p in self.hosts)
        query = f"{query}&{extra}" if mark and query else extra
        return DatabaseURL.parse(f"{head}://{userinfo}{at}{path or '/'}?{query}")

    def __str__(self) -> str:
        return self.render()

    def __repr__(self) -> str:
        return f"DatabaseURL({self.render()!r})"


def _host_list(hostport: str) -> tuple[tuple[str, int | None], ...]:
    """The hosts of libpq's multi-host form ``h1:5432,[::1]:5433,h3`` (empty for one host)."""
    if "," not in hostport:
        return ()
    hosts: list[tuple[str, int | None]] = []
    for item in hostport.split(","):
        if item.startswith("["):
            name, _, rest = item[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else ""
        else:
            name, _, port = item.partition(":")
        if port and not port.isdigit():
            raise ValueError("Port could not be cast to integer value")
        hosts.append((name, int(port) if port else None))
    return tuple(hosts)


def _secret_positions(url: str) -> list[tuple[int, int]]:
    """(start, end) of the password and of each secret query value as written in ``url``."""
    start = url.find("://") + 3
    rest = url[start:]
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i != -1), default=len(rest))
    netloc = rest[:cut]
    spans = []
    userinfo, at, _ = netloc.rpartition("@")
    if at and ":" in userinfo:
        spans.append((start + userinfo.index(":") + 1, start + len(userinfo)))
    query_at = url.find("?", start + cut)
    if query_at != -1:
        offset = query_at + 1
        for part in url[offset:].split("&"):
            key, eq, _ = part.partition("=")
            if eq and unquote(key).lower() in SECRET_KEYS:
                spans.append((offset + len(key) + 1, offset + len(part)))
            offset += len(part) + 1
    return spans


def _raw_secret_spans(url: str) -> list[str]:
    """The password and secret query values exactly as written in ``url`` (still encoded)."""
    return [url[a:b] for a, b in _secret_positions(url)]


def _mask_positions(url: str) -> str:
    """``url`` with its password and secret query values replaced in place by ``***``."""
    for a, b in sorted(_secret_positions(url), reverse=True):
        url = url[:a] + MASK + url[b:]
    return url


def _shown(text: str) -> str:
    """``text`` for an error about a URL that could not be parsed: everything before the last
    '@' is hidden, since where the password ends is exactly what is in doubt."""
    head, sep, rest = text.partition("://")
    if not sep:
        head, rest = "", text
    if "@" in rest:
        rest = "***@" + rest.rpartition("@")[2]
    return mask_url(f"{head}{sep}{rest}")


def _safe_reason(exc: ValueError) -> str:
    """Why urlsplit failed, without its echo of the text (which may hold the password)."""
    text = str(exc)
    if text.startswith("Port could not be cast"):
        return "the port is not a number; if the password contains '/', '?' or '@', percent-encode them (%2F, %3F, %40)"
    if text.startswith("netloc"):
        return "the host part contains characters that are not allowed"
    return text  # "Port out of range 0-65535", "Invalid IPv6 URL": nothing of the input


def mask_url(text: str) -> str:
    """Replace every password in ``text`` (URLs, query strings, libpq strings) by ``***``."""
    text = _URL_IN_TEXT.sub(lambda m: m.group("head") + MASK + m.group("at"), text)
    text = _QUERY_SECRET.sub(lambda m: m.group("key") + MASK, text)
    return _CONNINFO_SECRET.sub(lambda m: m.group("key") + MASK, text)
