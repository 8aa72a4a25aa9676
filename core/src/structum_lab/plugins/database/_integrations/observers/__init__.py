"""The first-party observers, enabled per database by name (the ``observers`` option):
``logging`` (stdlib logging), ``prometheus`` (prometheus-client) and ``opentelemetry``
(opentelemetry-api). Each is an entry point of the ``structum_database.plugins`` group."""
