"""Small rules of identity: password length in bytes, email shape, cursors."""

from __future__ import annotations

import asyncio
import uuid

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiaas.auth.schemas import KeyCreate, UserCreate
from aiaas.auth.service import check_password_rules, normalize_email, verify_password
from aiaas.kernel.errors import ValidationFailed
from aiaas.kernel.pagination import decode_cursor, encode_cursor, is_uuid


class TestPasswords:
    def test_72_bytes_is_the_limit(self) -> None:
        assert check_password_rules("a" * 72) == b"a" * 72
        with pytest.raises(ValidationFailed):
            check_password_rules("a" * 73)
        with pytest.raises(ValidationFailed):  # 36 two-byte characters fit; 37 do not
            check_password_rules("é" * 37)
        with pytest.raises(ValidationFailed):
            check_password_rules("short")

    def test_too_long_password_never_matches(self) -> None:
        assert asyncio.run(verify_password("a" * 100, None, rounds=12)) is False


class TestSchemas:
    @pytest.mark.parametrize("email", ["a@b.co", "First.Last+tag@example.org", "x@sub.domain.io"])
    def test_good_emails(self, email: str) -> None:
        msgspec.convert({"email": email, "password": "x" * 12}, UserCreate)

    @pytest.mark.parametrize("email", ["", "plain", "a@b", "@b.co", "a@@b.co", "a b@c.co", "a@-b.co",
                                       "a@b.co\n", "x" * 65 + "@b.co", "a@" + "b" * 64 + ".co"])
    def test_bad_emails(self, email: str) -> None:
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert({"email": email, "password": "x" * 12}, UserCreate)

    def test_key_defaults_and_limits(self) -> None:
        k = msgspec.convert({"name": "k"}, KeyCreate)
        assert [str(s) for s in k.scopes] == ["inference"]
        for bad in ({"name": ""}, {"name": "x" * 201}, {"name": "k", "scopes": ["root"]},
                    {"name": "k", "rpm_limit": 0}, {"name": "k", "scopes": []}):
            with pytest.raises(msgspec.ValidationError):
                msgspec.convert(bad, KeyCreate)

    def test_emails_normalise(self) -> None:
        assert normalize_email("  Admin@Example.COM ") == "admin@example.com"


class TestCursors:
    @given(st.uuids())
    def test_round_trip(self, u: uuid.UUID) -> None:
        assert decode_cursor(encode_cursor(str(u))) == str(u)

    @given(st.text(max_size=64))
    def test_garbage_is_a_validation_error(self, text: str) -> None:
        try:
            out = decode_cursor(text)
        except ValidationFailed:
            return
        assert out is None or is_uuid(out)

    def test_is_uuid(self) -> None:
        assert is_uuid(str(uuid.uuid4()))
        assert not is_uuid("nope") and not is_uuid("") and not is_uuid("1" * 32 + "x")
