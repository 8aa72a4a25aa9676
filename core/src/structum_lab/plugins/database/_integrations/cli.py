"""The ``structum-db`` command: installed backends, health checks, resolved config, demo.

Exit codes: 0 success/healthy, 1 degraded, 2 unhealthy or unreachable, 3 bad
configuration or input, 4 unexpected error (rerun with ``--debug``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from structum_lab.config import ConfigProvider, SupportsSources

from .._config.connect import checked_options, from_config
from .._config.registry import available_backends
from .._config.settings import resolve_provider
from .._contract.errors import ConfigurationError, DatabaseError, OperationalError
from .._contract.health import HealthStatus
from .._contract.url import MASK, SECRET_KEYS, mask_url

__all__ = ["main"]

EXIT_OK, EXIT_DEGRADED, EXIT_UNHEALTHY, EXIT_CONFIG, EXIT_INTERNAL = 0, 1, 2, 3, 4
F = TypeVar("F", bound=Callable[..., Any])


def _fail(ctx: click.Context, exc: BaseException) -> NoReturn:
    if ctx.find_root().params.get("debug"):
        raise exc
    code = EXIT_CONFIG if isinstance(exc, ConfigurationError | ValueError) else EXIT_INTERNAL
    if isinstance(exc, OperationalError):
        code = EXIT_UNHEALTHY
    message = " ".join(str(exc).split()) or type(exc).__name__
    click.echo(f"structum-db: error: {mask_url(message)}", err=True)
    ctx.exit(code)
    raise AssertionError("unreachable")  # pragma: no cover


def _table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=True)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


def _masked(key: str, value: Any) -> Any:
    leaf = key.rsplit(".", 1)[-1].lower()
    if leaf in SECRET_KEYS:
        return MASK
    if isinstance(value, str):
        return mask_url(value)
    if isinstance(value, Mapping):
        return {k: _masked(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):  # replicas = ["postgresql://app:secret@...", ...]
        return [_masked(key, v) for v in value]
    return value


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Project directory holding config/ (default: the current directory).",
)
@click.version_option("0.1.0", prog_name="structum-db")
@click.pass_context
def cli(ctx: click.Context, debug: bool, root: Path | None) -> None:
    """Structum Database: inspect backends, check databases, show configuration."""
    ctx.ensure_object(dict)
    ctx.obj["root"] = root
    # A command owns its logging. Without a handler, Python's last-resort one prints every
    # pool warning (one per failed connection attempt) in between the results. The level is
    # on the handler: drivers set their own loggers' levels (psycopg: WARNING).
    level = logging.DEBUG if debug else logging.ERROR
    handler = logging.StreamHandler()
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])


def _provider(ctx: click.Context) -> ConfigProvider:
    root = ctx.find_root().obj.get("root")
    if root is None:
        return resolve_provider()
    from structum_lab.plugins.dynaconf import DynaconfConfigProvider

    return DynaconfConfigProvider.discover(root)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def backends(ctx: click.Context, as_json: bool) -> None:
    """List installed backends: distribution, version, URL schemes, load status."""
    infos = available_backends()
    records = []
    for info in infos:
        with contextlib.suppress(DatabaseError):  # reported in the status column
            info.load()
        records.append(info.describe())
    if as_json:
        click.echo(json.dumps(records, indent=2))
        return
    if not records:
        click.echo(
            'no backends installed; in a checkout of structum-database: pip install "./core[all]" '
            "./backends/sqlalchemy ./backends/psycopg"
        )
        ctx.exit(EXIT_CONFIG)
    rows = [
        (
            r["name"] + (f" ({', '.join(r['aliases'])})" if r["aliases"] else ""),
            r["distribution"],
            r["version"],
            ", ".join(s + "://" for s in r["schemes"]),
            "loaded" if r["loaded"] else f"error: {r['error']}",
        )
        for r in records
    ]
    click.echo(_table(rows, ["backend", "distribution", "version", "schemes", "status"]))


def _namespaces(ctx: click.Context, provider: ConfigProvider, given: Iterable[str]) -> list[str]:
    chosen = list(given)
    if chosen:
        return chosen
    if isinstance(provider, SupportsSources):
        found = [ns for ns in provider.namespaces() if provider.get_namespace(ns).get("url")]
        if found:
            return found
    _fail(
        ctx,
        ConfigurationError(
            "no database is configured: create config/app/database.toml with a url, "
            "set STRUCTUM_DATABASE__URL, or pass --namespace"
        ),
    )


@cli.command()
@click.option("--namespace", "-n", "namespaces", multiple=True, help="Config namespace (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def check(ctx: click.Context, namespaces: tuple[str, ...], as_json: bool) -> None:
    """Health-check each configured database. Exit 0 healthy, 1 degraded, 2 unhealthy."""
    provider = _provider(ctx)
    results: dict[str, dict[str, Any]] = {}
    worst = EXIT_OK
    for ns in _namespaces(ctx, provider, namespaces):
        try:
            # No SQL echo: it writes to stdout and would break the table and --json output.
            db = from_config(ns, provider=provider, echo=False)
        except DatabaseError as exc:
            _fail(ctx, exc)
        try:
            result = db.health_check()
        finally:
            db.shutdown()
        results[ns] = {"backend": db.backend, "url": db.url, **result.to_dict()}
        if not as_json:
            click.echo(f"checking {ns!r} with the {db.backend} backend ({type(db).__name__})", err=True)
        code = {HealthStatus.HEALTHY: EXIT_OK, HealthStatus.DEGRADED: EXIT_DEGRADED}.get(result.status, EXIT_UNHEALTHY)
        worst = max(worst, code)
    if as_json:
        click.echo(json.dumps(results, indent=2, default=str))
    else:
        rows = [
            (ns, r["status"], f"{r['latency_ms']:.1f} ms", r["backend"], r["url"], r["message"])
            for ns, r in results.items()
        ]
        click.echo(_table(rows, ["namespace", "status", "latency", "backend", "url", "message"]))
    ctx.exit(worst)


@cli.command()
@click.option("--namespace", "-n", "namespaces", multiple=True, help="Config namespace (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def config(ctx: click.Context, namespaces: tuple[str, ...], as_json: bool) -> None:
    """Show the resolved settings and where each value comes from; secrets masked."""
    provider = _provider(ctx)
    if not isinstance(provider, SupportsSources):
        _fail(ctx, ConfigurationError("the active config provider cannot report value sources"))
    output: dict[str, dict[str, dict[str, Any]]] = {}
    problems: list[str] = []
    warnings: list[str] = []
    for ns in _namespaces(ctx, provider, namespaces):
        described = provider.describe(ns)
        if not described:
            known = ", ".join(provider.namespaces()) or "none"
            _fail(ctx, ConfigurationError(f"namespace {ns!r} is not configured (configured: {known})"))
        output[ns] = {key: {"value": _masked(key, v.value), "source": v.source} for key, v in described.items()}
        override = getattr(provider, "url_override", None)
        if callable(override) and (text := override(ns)):
            warnings.append(str(text))
        try:
            info, _ = checked_options(ns, provider)  # the checks check and from_config() run
            output[ns]["backend"] = {"value": info.name, "source": "selected by the url or backend key"}
        except DatabaseError as exc:
            problems.append(mask_url(" ".join(str(exc).split())))
    if as_json:
        click.echo(json.dumps(output, indent=2, default=str))
    else:
        for ns, items in output.items():
            click.echo(f"[{ns}]")
            rows = [(key, json.dumps(item["value"], default=str), item["source"]) for key, item in items.items()]
            click.echo(textwrap.indent(_table(rows, ["key", "value", "source"]), "  "))
    for text in warnings:
        click.echo(f"structum-db: warning: {mask_url(text)}", err=True)
    for text in problems:
        click.echo(f"structum-db: error: {text}", err=True)
    if problems:
        ctx.exit(EXIT_CONFIG)


@cli.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to create the demo project (default: a temporary directory).",
)
@click.pass_context
def demo(ctx: click.Context, directory: Path | None) -> None:
    """Run the Quick Start on an embedded SQLite database, explaining each step."""
    from .demo import run_demo

    try:
        if directory is not None:
            run_demo(directory, click.echo)
        else:
            with tempfile.TemporaryDirectory(prefix="structum-demo-") as tmp:
                run_demo(Path(tmp), click.echo)
    except DatabaseError as exc:
        _fail(ctx, exc)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="structum-db")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
