"""The plugin contract: pluggy hook specifications (see ``_contract/hookspecs.py``)."""

from ._contract.hookspecs import PROJECT_NAME, DatabaseBackendSpec, DatabaseEventSpec, hookimpl, hookspec

__all__ = ["PROJECT_NAME", "DatabaseBackendSpec", "DatabaseEventSpec", "hookimpl", "hookspec"]
