"""pytest plugin: a test database, per-test rollback isolation, and schema set-up.

Registered through the ``pytest11`` entry point; the option hook and the fixtures are
defined in ``_integrations/pytest_plugin.py`` (see docs/testing.md).
"""

from ._integrations.pytest_plugin import *  # noqa: F403 - pytest finds the hook and fixtures by name
from ._integrations.pytest_plugin import __all__  # noqa: F401 - re-exported: the names pytest imports
