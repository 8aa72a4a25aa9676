"""The version of the backend contract: the hooks, the driver verbs and their meaning.

A backend's plugin module declares the contract it was written for, as a literal::

    STRUCTUM_DATABASE_CONTRACT = "1.0"

(never by importing :data:`CONTRACT_VERSION`: that would always agree with core, and the
check would prove nothing). The policy, in docs/backends/authoring.md:

* the **major** version changes when something a backend relies on changes or goes (a verb's
  meaning, a hook's signature): core refuses to load a backend built for another major;
* the **minor** version changes when something is added that old backends can ignore (a
  verb with a default, a ``Features`` flag with a default): a backend built for an older
  minor loads; one built for a newer minor loads with a warning, since it may count on
  additions this core lacks;
* a plugin module that declares nothing was written before versions were declared, and is
  taken as built for 1.0.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["CONTRACT_ATTRIBUTE", "CONTRACT_VERSION", "ContractMismatch", "check_contract", "parse_contract"]

#: The contract this core implements.
CONTRACT_VERSION: Final = "1.0"
#: The plugin-module attribute where a backend declares the contract it was built for.
CONTRACT_ATTRIBUTE: Final = "STRUCTUM_DATABASE_CONTRACT"
#: What a plugin module that declares nothing is taken to be built for.
UNDECLARED: Final = "1.0"

_VERSION = re.compile(r"^(?P<major>\d+)\.(?P<minor>\d+)$")


class ContractMismatch(ValueError):
    """The declared contract cannot work with this core (the message says why)."""


def parse_contract(version: object) -> tuple[int, int]:
    """``"1.0"`` -> ``(1, 0)``; anything else is a :class:`ContractMismatch`."""
    m = _VERSION.match(version) if isinstance(version, str) else None
    if m is None:
        raise ContractMismatch(
            f"declares {CONTRACT_ATTRIBUTE} = {version!r}, which is not a contract version: "
            f"write it as the string 'MAJOR.MINOR', such as {CONTRACT_VERSION!r}"
        )
    return int(m["major"]), int(m["minor"])


def check_contract(declared: object | None) -> str | None:
    """Raise :class:`ContractMismatch` for a backend this core cannot load; return a warning
    for one built for a newer minor version, else ``None``. ``declared=None``: nothing declared."""
    major, minor = parse_contract(UNDECLARED if declared is None else declared)
    core_major, core_minor = parse_contract(CONTRACT_VERSION)
    if major != core_major:
        raise ContractMismatch(
            f"was built for backend contract {declared}, but this structum-database implements contract "
            f"{CONTRACT_VERSION}; a backend built for another major version cannot work with it. Install a release "
            f"of the backend built for contract {core_major}.x, or a structum-database that implements {major}.x"
        )
    if minor > core_minor:
        return (
            f"was built for backend contract {declared}, newer than the {CONTRACT_VERSION} this structum-database "
            "implements; what it added since may not work: upgrade structum-database"
        )
    return None
