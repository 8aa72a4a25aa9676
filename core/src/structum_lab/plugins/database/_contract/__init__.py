"""The contract: what application code types against and what a backend author implements.

User-facing types (protocols, rows, errors, health results, URLs, options) and the
driver contract (:mod:`.driver`, :mod:`.features`) a backend supplies to the engine.
Nothing here imports the engine, the registry or a driver.
"""
