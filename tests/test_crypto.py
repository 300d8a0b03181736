"""FIELD_ENCRYPTION_KEY rotation: new key first, old keys still decrypt, rotate_field_keys re-encrypts everything
with the new key, then the old key can go."""

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

from apps.budgets.models import AlertChannel
from apps.budgets.services import channel_create
from apps.connectors.models import ProviderConnection
from apps.connectors.services import connection_create
from spendctl.common import crypto

pytestmark = pytest.mark.django_db
OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def _stored():
    return {
        "connection": ProviderConnection.objects.get().key_encrypted,
        "channel": AlertChannel.objects.get(kind="webhook").secret_encrypted,
    }


def test_rotating_the_field_key_re_encrypts_every_stored_secret(org, settings, capsys):
    settings.FIELD_ENCRYPTION_KEY = OLD
    connection_create(org=org, provider="sandbox", label="S", api_key="provider-key-1234")
    _, secret = channel_create(org=org, kind="webhook", name="H", url="https://example.test/h")
    AlertChannel.objects.create(org=org, kind="email", name="no secret")  # empty values are left alone
    before = _stored()

    settings.FIELD_ENCRYPTION_KEY = f"{NEW},{OLD}"  # step 1: new key first, old key still decrypts
    assert crypto.decrypt(before["connection"]) == "provider-key-1234"
    call_command("rotate_field_keys")  # step 2
    assert "Re-encrypted 2 stored secret(s) with the first of 2 configured key(s)." in capsys.readouterr().out
    after = _stored()
    assert after["connection"] != before["connection"] and after["channel"] != before["channel"]

    settings.FIELD_ENCRYPTION_KEY = NEW  # step 3: the old key is dropped and everything still decrypts
    assert crypto.decrypt(after["connection"]) == "provider-key-1234"
    assert crypto.decrypt(after["channel"]) == secret
    with pytest.raises(ValueError, match="cannot be decrypted"):
        crypto.decrypt(before["connection"])
    assert AlertChannel.objects.get(name="no secret").secret_encrypted == ""
    call_command("rotate_field_keys")  # running it again is harmless
    assert crypto.decrypt(_stored()["connection"]) == "provider-key-1234"


def test_a_value_no_configured_key_decrypts_is_reported_and_the_rest_rotated(org, settings):
    settings.FIELD_ENCRYPTION_KEY = OLD
    connection_create(org=org, provider="sandbox", label="Lost", api_key="lost-key")
    settings.FIELD_ENCRYPTION_KEY = NEW
    connection_create(org=org, provider="sandbox", label="Kept", api_key="kept-key")
    lost_before = ProviderConnection.objects.get(label="Lost").key_encrypted
    settings.FIELD_ENCRYPTION_KEY = f"{Fernet.generate_key().decode()},{NEW}"
    with pytest.raises(CommandError, match=r"1 value\(s\) could not be decrypted.*ProviderConnection #"):
        call_command("rotate_field_keys")
    assert ProviderConnection.objects.get(label="Lost").key_encrypted == lost_before
    assert crypto.decrypt(ProviderConnection.objects.get(label="Kept").key_encrypted) == "kept-key"


def test_every_encrypted_column_is_rotated():
    """A new *_encrypted column must be added to crypto.ENCRYPTED_FIELDS, or a key rotation would strand it."""
    from django.apps import apps

    found = {
        (model._meta.label, f.name)
        for model in apps.get_models()
        for f in model._meta.get_fields()
        if f.name.endswith("_encrypted")
    }
    assert found == set(crypto.ENCRYPTED_FIELDS)
