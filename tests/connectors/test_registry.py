"""Providers are registered by key; the registry rejects duplicates, non-subclasses and abstract classes."""

from datetime import UTC, datetime

import pytest

from apps.connectors.providers import ProviderClient, Window, registry
from apps.connectors.providers.anthropic import AnthropicClient
from apps.connectors.providers.openai import OpenAIClient
from apps.connectors.providers.openrouter import OpenRouterClient
from apps.connectors.providers.sandbox import SandboxClient


class _Minimal(ProviderClient):
    key = "minimal"
    label = "Minimal"

    def validate_credentials(self):
        return None

    def fetch_usage(self, window, cursor=None):
        return iter(())

    def fetch_costs(self, window, cursor=None):
        return iter(())


def test_importing_the_package_registers_every_provider():
    assert registry.all_providers() == [AnthropicClient, OpenAIClient, OpenRouterClient, SandboxClient]
    assert registry.get("openai") is OpenAIClient
    assert {cls.key for cls in registry.all_providers()} == {"anthropic", "openai", "openrouter", "sandbox"}
    assert all(cls.label for cls in registry.all_providers())


def test_unknown_key_is_a_clear_key_error():
    with pytest.raises(KeyError, match="unknown provider 'bedrock'.*openai"):
        registry.get("bedrock")


def test_duplicate_key_is_rejected():
    class AnotherOpenAI(_Minimal):
        key = "openai"

    with pytest.raises(ValueError, match="already registered"):
        registry.register(AnotherOpenAI)
    assert registry.get("openai") is OpenAIClient


def test_non_subclass_is_rejected():
    class NotAProvider:
        key = "fake"
        label = "Fake"

    with pytest.raises(TypeError, match="not a subclass of ProviderClient"):
        registry.register(NotAProvider)
    with pytest.raises(TypeError):
        registry.register(object())
    assert "fake" not in registry.default_registry


def test_abstract_and_keyless_classes_are_rejected():
    class Half(ProviderClient):
        key = "half"
        label = "Half"

    with pytest.raises(TypeError, match="abstract"):
        registry.register(Half)

    class Keyless(_Minimal):
        key = ""

    with pytest.raises(ValueError, match="key"):
        registry.Registry().register(Keyless)


def test_a_fresh_registry_registers_and_is_idempotent_for_the_same_class():
    reg = registry.Registry()
    assert reg.register(_Minimal) is _Minimal
    assert reg.register(_Minimal) is _Minimal
    assert reg.all_providers() == [_Minimal]


def test_clients_never_show_the_key():
    client = OpenAIClient(api_key="sk-admin-secret-value-123456")
    assert "secret" not in repr(client)


def test_window_is_utc_aware_and_end_exclusive():
    with pytest.raises(ValueError, match="timezone-aware"):
        Window(datetime(2026, 11, 16), datetime(2026, 11, 17))  # noqa: DTZ001
    with pytest.raises(ValueError, match="after"):
        Window(datetime(2026, 11, 17, tzinfo=UTC), datetime(2026, 11, 16, tzinfo=UTC))
    w = Window(datetime(2026, 11, 16, tzinfo=UTC), datetime(2026, 11, 18, tzinfo=UTC))
    assert [d.isoformat() for d in w.days()] == ["2026-11-16", "2026-11-17"]
    assert w.is_day_aligned
