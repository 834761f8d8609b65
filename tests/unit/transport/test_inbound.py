"""The inbound guard's pieces: JSON-only payloads, the binary declaration, placeholder rules,
the header peek, and the start-up check on python-socketio's internals."""

from __future__ import annotations

import types

import pytest
from pydantic import TypeAdapter, ValidationError

from dihya_realtime.kernel.payloads import JsonValue
from dihya_realtime.kernel.ratelimit import TokenBucket
from dihya_realtime.kernel.registry import registry
from dihya_realtime.kernel.settings import RateLimit, SettingsError, load_settings
from dihya_realtime.transport.inbound import (
    InboundGuard,
    InternalsMissing,
    attachment_problem,
    check_internals,
    peek,
)

json_value = TypeAdapter(JsonValue)


@pytest.mark.parametrize("value", [b"x", bytearray(b"x"), {"a": [1, {"b": b"\x00"}]},
                                   [memoryview(b"x")], {1: "non-string key"}, {"s": {1, 2}}])
def test_json_value_refuses_bytes_and_other_non_json_values(value):
    with pytest.raises(ValidationError):
        json_value.validate_python(value)


def test_json_value_accepts_every_json_shape():
    value = {"a": [1, 2.5, "x", None, True, {"b": []}], "c": {}}
    assert json_value.validate_python(value) == value


def test_only_the_collab_events_that_carry_bytes_are_declared_binary():
    import dihya_realtime.app  # noqa: F401

    binary = {name for name, spec in registry.events.items() if spec.binary}
    assert binary == {"doc:join", "doc:update", "doc:sync"}


def placeholder(num):
    return {"_placeholder": True, "num": num}


def test_each_attachment_must_be_referenced_exactly_once():
    assert attachment_problem(["doc:update", {"u": placeholder(0), "v": [placeholder(1)]}],
                              2) is None
    assert "more than once" in attachment_problem(["e", [placeholder(0)] * 300], 1)
    assert "never referenced" in attachment_problem(["e", {"u": placeholder(0)}], 2)
    assert "names no attachment" in attachment_problem(["e", placeholder(1)], 1)
    assert "names no attachment" in attachment_problem(["e", placeholder(-1)], 1)
    assert "names no attachment" in attachment_problem(["e", placeholder("0")], 1)
    assert "names no attachment" in attachment_problem(["e", placeholder(True)], 1)


def test_peek_reads_type_namespace_ack_id_and_event_name_from_the_first_bytes():
    assert peek('2["publish",{"x":1}]') == (2, "/", None, "publish")
    assert peek('217["pub\\"lish",' + "x" * 10**6) == (2, "/", 17, 'pub"lish')
    assert peek('53-/admin,9["doc:update",{}]') == (5, "/admin", 9, "doc:update")
    assert peek("garbage") == (None, "/", None, None)


def test_byte_bucket_takes_a_cost_and_names_the_wait():
    bucket = TokenBucket(RateLimit(rate=1000, burst=4000), now=0.0)
    assert bucket.take(0.0, cost=3000) == 0.0
    assert bucket.take(0.0, cost=3000) == pytest.approx(2.0)
    assert bucket.take(2.0, cost=3000) == 0.0


def test_byte_burst_must_hold_one_message():
    with pytest.raises(SettingsError, match="rate_limit_bytes"):
        load_settings(max_payload_bytes=1_000_000,
                      rate_limit_bytes={"rate": 1000, "burst": 65536})


def test_start_up_fails_loudly_when_python_socketio_lacks_an_internal(rt):
    server = rt.socketio.server
    check_internals(server)  # the installed version has them all
    stripped = types.SimpleNamespace(**{name: getattr(server, name) for name in
                                        ("_handle_eio_message", "_send_packet", "packet_class",
                                         "environ", "manager", "eio")})
    with pytest.raises(InternalsMissing, match=r"_binary_packet.*python-socketio<6"):
        check_internals(stripped)
    with pytest.raises(InternalsMissing, match="dihya_realtime.transport.inbound"):
        InboundGuard(rt).install(stripped)


def test_the_guard_is_engineio_s_message_handler(rt):
    server = rt.socketio.server
    handler = server.eio.handlers["message"]
    assert isinstance(handler.__self__, InboundGuard)
    assert server._handle_eio_message == handler


def test_packet_json_replaces_lone_surrogates_and_keeps_valid_pairs():
    from dihya_realtime.transport.packets import PacketJSON

    decoded = PacketJSON.loads('{"\\udfff": ["a\\ud83d", "\\ud83d\\ude00", {"k": "\\udc00"}]}')
    assert decoded == {"\ufffd": ["a\ufffd", "\U0001F600", {"k": "\ufffd"}]}
    assert PacketJSON.loads('"plain"') == "plain"  # orjson's path: nothing to clean
