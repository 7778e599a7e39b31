"""The ID-number vault (gateway/care_store.py): AES-GCM bound to the elder, a keyed blind index."""

from __future__ import annotations

import base64

import pytest
from pydantic import SecretStr

from gateway.care_store import IdVault, generate_data_key

NUMBER = "11010519460308012X"


def vault(key: str | None = None) -> IdVault:
    v = IdVault.from_secret(SecretStr(key or generate_data_key()))
    assert v is not None
    return v


def test_round_trip_and_no_plain_text() -> None:
    v = vault()
    sealed = v.encrypt(NUMBER, "el_1")
    assert NUMBER not in sealed and "19460308" not in sealed
    raw = base64.urlsafe_b64decode(sealed.split(".", 1)[1])
    assert NUMBER.encode() not in raw
    assert v.decrypt(sealed, "el_1") == NUMBER
    assert v.encrypt(NUMBER, "el_1") != sealed  # a fresh nonce every time


def test_a_ciphertext_moved_to_another_elder_or_key_does_not_open() -> None:
    key = generate_data_key()
    sealed = vault(key).encrypt(NUMBER, "el_1")
    with pytest.raises(ValueError):
        vault(key).decrypt(sealed, "el_2")
    with pytest.raises(ValueError):
        vault().decrypt(sealed, "el_1")


def test_blind_index_is_keyed_and_normalized() -> None:
    key = generate_data_key()
    a, b = vault(key), vault(key)
    assert a.blind_index(NUMBER) == b.blind_index(NUMBER.lower().replace("X", "x"))
    assert a.blind_index("１１０１０５１９４６０３０８０１２Ｘ") == a.blind_index(
        NUMBER
    )  # full-width
    assert vault().blind_index(NUMBER) != a.blind_index(NUMBER)
    assert len(a.blind_index(NUMBER)) == 64


def test_no_key_no_vault() -> None:
    assert IdVault.from_secret(None) is None
    with pytest.raises(ValueError):
        IdVault(b"short")


def test_a_malformed_data_key_is_refused_at_start() -> None:
    from pydantic import ValidationError

    from gateway.settings import Settings

    with pytest.raises(ValidationError, match="SHOUWANG_DATA_KEY"):
        Settings(_env_file=None, data_key="not-32-bytes")
    assert Settings(_env_file=None, data_key=generate_data_key()).data_key is not None
