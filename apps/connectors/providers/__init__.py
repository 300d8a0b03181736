"""Provider clients. Importing this package imports every provider module, so each registers itself.

from apps.connectors.providers import registry
client = registry.get("openai")(api_key=..., base_url=...)
"""

from . import anthropic, openai, openrouter, registry, sandbox
from .base import (
    CostRow,
    MalformedPage,
    Page,
    ProviderAuthError,
    ProviderClient,
    ProviderError,
    ProviderRateLimited,
    ProviderUnavailable,
    UsageRow,
    Window,
)
from .http import Attempt, HttpSettings

__all__ = [
    "Attempt",
    "CostRow",
    "HttpSettings",
    "MalformedPage",
    "Page",
    "ProviderAuthError",
    "ProviderClient",
    "ProviderError",
    "ProviderRateLimited",
    "ProviderUnavailable",
    "UsageRow",
    "Window",
    "anthropic",
    "openai",
    "openrouter",
    "registry",
    "sandbox",
]
