"""Provider classes by key (validated registration, in the spirit of Sentry's IntegrationManager).

    @register
    class OpenAIClient(ProviderClient):
        key = "openai"

    get("openai")        # → OpenAIClient, KeyError for an unknown key
    all_providers()      # → every registered class, ordered by key

`apps.connectors.providers` imports every provider module, so importing the package fills the registry.
"""

from __future__ import annotations

import inspect
from typing import TypeVar

from .base import ProviderClient

P = TypeVar("P", bound=type[ProviderClient])


class Registry:
    def __init__(self) -> None:
        self._classes: dict[str, type[ProviderClient]] = {}

    def register(self, cls: P) -> P:
        if not (isinstance(cls, type) and issubclass(cls, ProviderClient)):
            raise TypeError(f"{cls!r} is not a subclass of ProviderClient")
        if inspect.isabstract(cls):
            raise TypeError(f"{cls.__name__} leaves abstract methods unimplemented")
        key = getattr(cls, "key", None)
        if not isinstance(key, str) or not key.strip():
            raise ValueError(f"{cls.__name__} must define a non-empty string `key`")
        if not isinstance(getattr(cls, "label", None), str):
            raise ValueError(f"{cls.__name__} must define a string `label`")
        existing = self._classes.get(key)
        if existing is not None and existing is not cls:
            raise ValueError(
                f"provider key {key!r} is already registered by {existing.__module__}.{existing.__qualname__}"
            )
        self._classes[key] = cls
        return cls

    def get(self, key: str) -> type[ProviderClient]:
        try:
            return self._classes[key]
        except KeyError:
            known = ", ".join(sorted(self._classes)) or "none"
            raise KeyError(f"unknown provider {key!r} (registered: {known})") from None

    def all_providers(self) -> list[type[ProviderClient]]:
        return [self._classes[k] for k in sorted(self._classes)]

    def __contains__(self, key: object) -> bool:
        return key in self._classes


default_registry = Registry()
register = default_registry.register
get = default_registry.get
all_providers = default_registry.all_providers
