"""Each adaptation of transport/websocket.py checks, at start-up, that what it patches exists.

A library upgrade that renames an internal must stop the server with an error naming the
adaptation, never silently drop a limit (the frame-size limit once disappeared when the
gevent driver was not recognised). One test per adaptation removes the internal it uses.
"""

from __future__ import annotations

from types import SimpleNamespace

import engineio
import pytest
import simple_websocket
from engineio.async_drivers._websocket_wsgi import SimpleWebSocketWSGI
from engineio.socket import Socket
from gevent import pywsgi
from geventwebsocket.handler import WebSocketHandler
from geventwebsocket.websocket import Header, WebSocket

from dihya_realtime.transport.websocket import (
    TransportAdaptationError,
    _limited_gevent_ws,
    adapt_websocket_driver,
    pings_on_timers,
    pywsgi_handler_class,
)


def gevent_eio() -> engineio.Server:
    return engineio.Server(async_mode="gevent")


def test_every_adaptation_applies_to_the_installed_libraries():
    eio = gevent_eio()
    adapt_websocket_driver(eio, 1000)
    pings_on_timers(eio)
    assert eio._async["websocket"].__name__ == "LimitedGeventWebSocket"
    assert issubclass(pywsgi_handler_class(pywsgi.WSGIHandler), WebSocketHandler)


def test_size_limit_fails_loudly_when_engineio_has_no_websocket_driver():
    with pytest.raises(TransportAdaptationError, match=r"message size limit.*_async"):
        adapt_websocket_driver(SimpleNamespace(_async={}), 1000)


def test_size_limit_fails_loudly_on_a_websocket_driver_it_does_not_know():
    class SomeFutureDriver:
        pass

    with pytest.raises(TransportAdaptationError, match=r"message size limit.*SomeFutureDriver"):
        adapt_websocket_driver(SimpleNamespace(_async={"websocket": SomeFutureDriver}), 1000)


def test_without_gevent_websocket_the_simple_websocket_driver_gets_the_limit():
    """engine.io's gevent driver falls back to a SimpleWebSocketWSGI subclass."""

    class GeventSimpleDriver(SimpleWebSocketWSGI):
        pass

    eio = SimpleNamespace(_async={"websocket": GeventSimpleDriver})
    adapt_websocket_driver(eio, 1234)
    assert eio._async["websocket"](None, None).server_args == {"max_message_size": 1234}


def test_size_limit_fails_loudly_when_simple_websocket_takes_no_max_message_size(monkeypatch):
    class OldServer:
        def __init__(self, environ, subprotocols=None):  # noqa: ANN001
            pass

    monkeypatch.setattr(simple_websocket, "Server", OldServer)
    with pytest.raises(TransportAdaptationError, match=r"message size limit.*max_message_size"):
        adapt_websocket_driver(SimpleNamespace(_async={"websocket": SimpleWebSocketWSGI}), 1)


def test_size_limit_fails_loudly_when_the_gevent_driver_keeps_no_handler(monkeypatch):
    eio = gevent_eio()
    driver = eio._async["websocket"]
    monkeypatch.setattr(driver, "__init__", lambda self, handler, server: None)
    with pytest.raises(TransportAdaptationError, match=r"message size limit.*\.app"):
        adapt_websocket_driver(eio, 1000)


def test_pings_on_timers_fails_loudly_without_socket_send_ping(monkeypatch):
    monkeypatch.delattr(Socket, "_send_ping")
    with pytest.raises(TransportAdaptationError, match=r"pings on timers.*_send_ping"):
        pings_on_timers(gevent_eio())


@pytest.mark.parametrize(("owner", "name"), [(WebSocket, "read_frame"),
                                             (WebSocket, "validate_utf8"),
                                             (Header, "decode_header")])
def test_gevent_websocket_fork_fails_loudly_without_what_it_overrides(monkeypatch, owner, name):
    monkeypatch.delattr(owner, name)
    with pytest.raises(TransportAdaptationError, match=rf"gevent-websocket frame limit.*{name}"):
        _limited_gevent_ws(1000)


def test_gevent_websocket_fork_is_checked_when_the_driver_is_adapted(monkeypatch):
    monkeypatch.delattr(WebSocket, "read_frame")
    with pytest.raises(TransportAdaptationError, match="gevent-websocket frame limit"):
        adapt_websocket_driver(gevent_eio(), 1000)


def test_pywsgi_websocket_handler_fails_loudly_when_it_takes_no_rfile(monkeypatch):
    def old_init(self, sock, address, server):  # noqa: ANN001
        pass

    monkeypatch.setattr(WebSocketHandler, "__init__", old_init)
    with pytest.raises(TransportAdaptationError, match=r"pywsgi WebSocket handler.*rfile"):
        pywsgi_handler_class(pywsgi.WSGIHandler)


def test_event_hooks_fail_loudly_when_python_socketio_lacks_trigger_event(monkeypatch):
    """A hook set on a method the library no longer calls would let every connection in
    unauthenticated: start-up stops instead, naming the adaptation."""
    import socketio

    from dihya_realtime.transport.hooks import HooksMissing, check_hooks

    server = socketio.Server()
    check_hooks(server)  # the installed version has both
    monkeypatch.delattr(socketio.Server, "_trigger_event")
    with pytest.raises(HooksMissing, match=r"transport\.hooks.*_trigger_event is missing"):
        check_hooks(server)


def test_event_hooks_fail_loudly_when_handle_event_internal_changes_shape(monkeypatch):
    import socketio

    from dihya_realtime.transport.hooks import HooksMissing, check_hooks

    def changed(self, server, sid, data, namespace, id):  # no eio_sid any more
        raise AssertionError("never called")

    monkeypatch.setattr(socketio.Server, "_handle_event_internal", changed)
    with pytest.raises(HooksMissing, match="_handle_event_internal"):
        check_hooks(socketio.Server())


def test_broker_listener_fails_loudly_when_redis_py_keeps_no_socket(redis_url):
    """The pub/sub listener selects on redis-py's private Connection._sock: a redis-py without
    it stops the broker with a message naming the adaptation, not a listener that breaks and
    reconnects forever."""
    import redis

    from dihya_realtime.broker.redis_backend import (
        RedisInternalsMissing,
        check_connection_internals,
    )

    conn = redis.Connection.from_url(redis_url) if hasattr(redis.Connection, "from_url") \
        else redis.Redis.from_url(redis_url).connection_pool.make_connection()
    conn.connect()
    try:
        check_connection_internals(conn)  # the installed redis-py has it
    finally:
        conn.disconnect()

    class Unconnected:
        pass

    with pytest.raises(RedisInternalsMissing, match=r"redis_listener.*Connection\._sock"):
        check_connection_internals(Unconnected())

    class OldReader:
        _sock = type("Socket", (), {"fileno": lambda self: 0})()  # has a socket, old reader

        def read_response(self, disable_decoding=False):  # no push_request
            raise AssertionError("never called")

        def can_read(self, timeout=0):
            return False

    with pytest.raises(RedisInternalsMissing, match="push_request"):
        check_connection_internals(OldReader())
