"""Error envelopes become RealtimeError with every field; junk never passes as success."""

from __future__ import annotations

import pytest

from dihya_realtime.client import RealtimeError
from dihya_realtime.client.errors import unwrap


def test_a_success_envelope_gives_its_data():
    assert unwrap("whoami", {"ok": True, "data": {"user_id": "7"}}) == {"user_id": "7"}


def test_an_error_envelope_raises_with_code_message_details_and_retry_after():
    with pytest.raises(RealtimeError) as exc:
        unwrap("publish", {"ok": False, "error": {
            "code": "rate_limited", "message": "slow down", "details": {"limit": 50},
            "retry_after": 0.25}})
    assert (exc.value.code, exc.value.message) == ("rate_limited", "slow down")
    assert exc.value.details == {"limit": 50}
    assert exc.value.retry_after == 0.25
    assert "rate_limited" in str(exc.value)


def test_an_unknown_code_is_kept_as_sent():
    with pytest.raises(RealtimeError) as exc:
        unwrap("x", {"ok": False, "error": {"code": "brand_new_code", "message": "m"}})
    assert exc.value.code == "brand_new_code" and exc.value.retry_after is None


@pytest.mark.parametrize("reply", [None, "ok", {"data": 1}, {"ok": "yes"}, [1, 2],
                                   {"ok": False, "error": "boom"}])
def test_anything_but_an_envelope_is_an_internal_error(reply):
    with pytest.raises(RealtimeError) as exc:
        unwrap("x", reply)
    assert exc.value.code == "internal"


def test_a_non_numeric_retry_after_is_dropped():
    err = RealtimeError.from_error({"code": "rate_limited", "message": "m", "retry_after": "x"})
    assert err.retry_after is None
