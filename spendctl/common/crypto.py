"""Secrets at rest: Fernet encryption for stored credentials, SHA-256 for bearer tokens."""

import hashlib
import secrets
from dataclasses import dataclass, field

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.views.decorators.debug import sensitive_variables


def configured_keys() -> list[str]:
    """FIELD_ENCRYPTION_KEY, comma separated: the first encrypts, every one decrypts (rotation)."""
    return [k.strip() for k in settings.FIELD_ENCRYPTION_KEY.split(",") if k.strip()]


@sensitive_variables()
def _fernet() -> MultiFernet:
    return MultiFernet([Fernet(k.encode()) for k in configured_keys()])


@sensitive_variables()
def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


@sensitive_variables()
def decrypt(ciphertext: str) -> str:
    try:
        return _fernet().decrypt(ciphertext.encode()).decode()
    except InvalidToken as exc:  # wrong key or tampered value; never echo the value itself
        raise ValueError(
            "Stored secret cannot be decrypted with the configured FIELD_ENCRYPTION_KEY."
        ) from exc


def rotate(ciphertext: str) -> str:
    """Re-encrypt with the first (newest) key."""
    try:
        return _fernet().rotate(ciphertext.encode()).decode()
    except InvalidToken as exc:
        raise ValueError(
            "Stored secret cannot be decrypted with the configured FIELD_ENCRYPTION_KEY."
        ) from exc


# Every column that holds a Fernet-encrypted secret ("app_label.Model", field). rotate_field_keys walks these.
ENCRYPTED_FIELDS = [
    ("connectors.ProviderConnection", "key_encrypted"),
    ("budgets.AlertChannel", "secret_encrypted"),
]


@dataclass
class RotationResult:
    rotated: int = 0
    failed: list[str] = field(default_factory=list)  # "Model #pk" of values no configured key can decrypt


def rotate_stored(*, batch_size: int = 500) -> RotationResult:
    """Re-encrypts every stored secret with the first key of FIELD_ENCRYPTION_KEY. Each row is rewritten with a
    conditional UPDATE (only if its ciphertext is still the one read), so a concurrent re-key is never overwritten.
    Safe to run again: a second run just re-encrypts with the same key."""
    from django.apps import apps

    result = RotationResult()
    for label, name in ENCRYPTED_FIELDS:
        model = apps.get_model(label)
        rows = model._base_manager.exclude(**{name: ""}).values_list("pk", name).order_by("pk")
        for pk, ciphertext in rows.iterator(chunk_size=batch_size):
            try:
                fresh = rotate(ciphertext)
            except ValueError:
                result.failed.append(f"{model.__name__} #{pk}")
                continue
            result.rotated += model._base_manager.filter(pk=pk, **{name: ciphertext}).update(**{name: fresh})
    return result


@sensitive_variables()
def hash_token(token: str) -> str:
    # Tokens carry 256 bits of randomness, so a fast unsalted hash is safe and allows an indexed lookup.
    return hashlib.sha256(token.encode()).hexdigest()


@sensitive_variables()
def new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)
