"""The registry and configuration: which backends are installed, which one serves a URL,
and how options are read from configuration files, secrets and environment variables."""
