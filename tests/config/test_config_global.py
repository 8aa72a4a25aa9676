"""The process-wide provider and the shared value types."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from structum_lab.config import (
    ConfigError,
    ConfigProvider,
    ConfigValue,
    SupportsSources,
    get_config_provider,
    set_config_provider,
)


class DictProvider:
    """A minimal provider: proof that the protocol is all a consumer needs."""

    def __init__(self, data: dict[str, dict[str, Any]]) -> None:
        self.data = data

    def get(self, key: str, default: Any = None) -> Any:
        namespace, _, rest = key.partition(".")
        return self.data.get(namespace, {}).get(rest, default)

    def has(self, key: str) -> bool:
        return self.get(key, self) is not self

    def get_namespace(self, namespace: str) -> dict[str, Any]:
        return dict(self.data.get(namespace, {}))


@pytest.fixture(autouse=True)
def no_global_provider() -> Iterator[None]:
    set_config_provider(None)
    yield
    set_config_provider(None)


def test_set_get_and_clear() -> None:
    assert get_config_provider() is None
    provider: ConfigProvider = DictProvider({"database": {"url": "sqlite://"}})
    set_config_provider(provider)
    assert get_config_provider() is provider
    assert provider.get("database.url") == "sqlite://"
    set_config_provider(None)
    assert get_config_provider() is None


def test_rejects_objects_that_are_not_providers() -> None:
    with pytest.raises(TypeError, match="get_namespace"):
        set_config_provider(object())  # type: ignore[arg-type]
    assert get_config_provider() is None


def test_sources_capability_is_optional() -> None:
    assert not isinstance(DictProvider({}), SupportsSources)


def test_config_value_is_frozen_and_hides_values_in_repr() -> None:
    item = ConfigValue("123456", "env STRUCTUM_DATABASE__PASSWORD", raw="123456")
    assert item == ConfigValue("123456", "env STRUCTUM_DATABASE__PASSWORD", "123456")
    assert ConfigValue(1, "f").raw is None
    assert "123456" not in repr(item)
    assert "env STRUCTUM_DATABASE__PASSWORD" in repr(item)
    with pytest.raises(dataclasses.FrozenInstanceError):
        item.value = 1  # type: ignore[misc]


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)
