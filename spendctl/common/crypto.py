"""Secrets at rest: Fernet encryption for stored credentials, SHA-256 for bearer tokens."""

import hashlib
import secrets

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


def _fernet() -> MultiFernet:
    keys = [k.strip() for k in settings.FIELD_ENCRYPTION_KEY.split(",") if k.strip()]
    return MultiFernet([Fernet(k.encode()) for k in keys])


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    try:
        return _fernet().decrypt(ciphertext.encode()).decode()
    except InvalidToken as exc:  # wrong key or tampered value; never echo the value itself
        raise ValueError(
            "Stored secret cannot be decrypted with the configured FIELD_ENCRYPTION_KEY."
        ) from exc


def rotate(ciphertext: str) -> str:
    """Re-encrypt with the first (newest) key."""
    return _fernet().rotate(ciphertext.encode()).decode()


def hash_token(token: str) -> str:
    # Tokens carry 256 bits of randomness, so a fast unsalted hash is safe and allows an indexed lookup.
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)
